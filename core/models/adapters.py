"""Adapters on disk: reading the project's adapters/ folder and applying an adapter to its base model.

adapters/<id>/adapter.json              manifest, written last: an adapter exists only once this file does
adapters/<id>/adapter_config.json ...   PEFT methods: a folder PeftModel.from_pretrained (and vLLM) can load
adapters/<id>/weights.safetensors       full / partial / BitFit: the tensors that changed, applied on the base

Training writes adapters (core.finetune.adapters.register); loading a model with one only needs this module, so
core.models never depends on core.finetune.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.errors import TrainingError
from core.i18n import Msg
from core.models.source import ModelSource
from core.workspace import Project

MANIFEST = "adapter.json"
WEIGHTS = "weights.safetensors"
EXPORT_MANIFEST = "studio-export.json"  # which adapter a merged folder came from (for export parity)


def merged_with_adapter(source: ModelSource) -> bool:
    """Whether the model is one of the studio's merged exports of an adapter (its folder, or its GGUF's folder, says
    so): it has learned what the adapter learned."""
    if source.kind not in ("local", "gguf"):
        return False
    folder = Path(source.location).expanduser()
    manifest = (folder.parent if source.kind == "gguf" else folder) / EXPORT_MANIFEST
    try:
        return bool(json.loads(manifest.read_text(encoding="utf-8")).get("adapter"))
    except (OSError, ValueError, AttributeError):
        return False
ADAPTER = Msg("adapter")


def folder_fingerprint(folder: Path) -> str:
    """Identifies base weights from their folder: config, weight file sizes and the first MiB of each file.
    Cheap, independent of how the model is loaded later (fp32, bf16 or 4-bit)."""
    folder = Path(folder)
    digest = hashlib.sha256()
    config = json.loads((folder / "config.json").read_text(encoding="utf-8"))
    for volatile in ("_name_or_path", "transformers_version", "torch_dtype", "dtype", "use_cache"):
        config.pop(volatile, None)
    digest.update(json.dumps(config, sort_keys=True).encode())
    for weights in sorted(folder.glob("*.safetensors")) + sorted(folder.glob("*.bin")):
        digest.update(f"{weights.name}:{weights.stat().st_size}".encode())
        with open(weights, "rb") as handle:
            digest.update(handle.read(1 << 20))
    return digest.hexdigest()[:16]


def source_folder(source: ModelSource) -> Path:
    """The local Hugging Face folder behind a model source (the one training and adapters start from)."""
    from core.models import convert, local

    if not source.trainable:
        raise TrainingError(Msg("Models behind an endpoint cannot be fine-tuned here; pick the embedded model, a "
                                "local folder, a GGUF file or a hub id on the Model page."))
    if source.kind == "embedded":
        return convert.ensure_embedded()
    if source.kind == "local":
        return Path(source.location).expanduser()
    if source.kind == "gguf":
        path = Path(source.location).expanduser()
        folder = convert.gguf_cache_folder(path)
        return folder if convert.is_converted(folder) else convert.convert_gguf(path, folder)
    return local.resolve_hub_id(source.location)


@dataclass(frozen=True)
class AdapterInfo:
    """A registered adapter; its training config is core.finetune.adapters.train_config(info)."""
    id: str
    folder: Path
    manifest: dict

    @property
    def method(self) -> str:
        return self.manifest["config"]["method"]

    @property
    def is_peft(self) -> bool:
        return self.manifest.get("format") == "peft"

    @property
    def objective(self) -> str:
        return self.manifest["config"].get("objective", "sft")

    @property
    def is_reward(self) -> bool:
        """A reward model scores answers (reward.score_answers); it cannot be attached to a recipe."""
        return self.objective == "reward"

    @property
    def base(self) -> ModelSource:
        return ModelSource.from_dict(self.manifest["base_model"])

    @property
    def metrics(self) -> dict:
        return self.manifest.get("metrics", {})

    @property
    def label(self) -> str:
        return self.manifest.get("name") or self.id


def read_adapter(folder: Path) -> AdapterInfo:
    """The adapter in `folder` (registered or not), named after the folder."""
    folder = Path(folder)
    return AdapterInfo(folder.name, folder, atomic.read_json(folder / MANIFEST))


class AdapterRegistry:
    def __init__(self, project: Project):
        self.project = project
        self.folder = project.subdir("adapters")

    def list(self) -> list[AdapterInfo]:
        # A leading dot is a folder being written or replaced (core.finetune.adapters.register), not an adapter.
        found = [self.get(p.name) for p in sorted(self.folder.iterdir())
                 if not p.name.startswith(".") and (p / MANIFEST).exists()] if self.folder.exists() else []
        return sorted(found, key=lambda a: a.manifest.get("created", 0), reverse=True)

    def path(self, adapter_id: str) -> Path:
        """The folder of adapter `adapter_id` (which may not exist); a name like '../x' is refused."""
        return self.project.child("adapters", adapter_id, ADAPTER)

    def exists(self, adapter_id: str) -> bool:
        return (self.path(adapter_id) / MANIFEST).exists()

    def get(self, adapter_id: str) -> AdapterInfo:
        path = self.path(adapter_id) / MANIFEST
        if not path.exists():
            raise TrainingError(Msg("Adapter '{name}' not found; it may have been deleted.", name=adapter_id))
        return AdapterInfo(adapter_id, path.parent, atomic.read_json(path))

    def rename(self, adapter_id: str, name: str) -> None:
        info = self.get(adapter_id)
        atomic.write_json(info.folder / MANIFEST, {**info.manifest, "name": name.strip()[:80]})

    def delete(self, adapter_id: str) -> None:
        info = self.get(adapter_id)
        (info.folder / MANIFEST).unlink()  # unregistered first, so a half-deleted folder is never listed
        shutil.rmtree(info.folder, ignore_errors=True)


def check_base(info: AdapterInfo, base_folder: Path) -> None:
    fingerprint = info.manifest.get("base_fingerprint")
    if fingerprint and fingerprint != folder_fingerprint(base_folder):
        raise TrainingError(Msg("Adapter '{name}' was trained on a different base model ({base}); pick that "
                                "model or another adapter.", name=info.label, base=info.base.describe()))


def apply_saved_weights(base_model, tensors: dict):
    """Load full / partial / BitFit weights saved by core.finetune.methods.adapter_tensors into a plain base
    model."""
    import torch

    params = dict(base_model.named_parameters(remove_duplicate=False))
    unknown = sorted(name for name in tensors if name not in params)
    if unknown:
        raise TrainingError(Msg("This adapter does not match this model (unknown weight '{name}'); load it on the "
                                "base model it was trained from.", name=unknown[0]))
    for name, tensor in tensors.items():
        if tuple(tensor.shape) != tuple(params[name].shape):
            raise TrainingError(Msg("This adapter does not match this model (weight '{name}' has another shape); "
                                    "load it on the base model it was trained from.", name=name))
    with torch.no_grad():
        for name, tensor in tensors.items():
            params[name].copy_(tensor.to(device=params[name].device, dtype=params[name].dtype))
    return base_model


def apply_adapter(model, info: AdapterInfo, merge: bool = True):
    """The base model with the adapter applied (check_base first). LoRA and IA3 are merged (same speed as the
    base); soft prompts stay a PEFT model because there is nothing to merge."""
    from safetensors.torch import load_file

    if info.is_reward:
        raise TrainingError(reward_refusal(info))
    if not info.is_peft:
        return apply_saved_weights(model, load_file(str(info.folder / WEIGHTS)))
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(model, str(info.folder))
    if merge and info.method in ("lora", "qlora", "ia3"):
        return tuned.merge_and_unload()
    if info.method == "prefix_tuning":
        from core.models.peft_compat import bridge_prefix_generation

        bridge_prefix_generation(tuned)
    return tuned


def reward_refusal(info: AdapterInfo) -> Msg:
    return Msg("'{name}' is a reward model: it scores answers (Labeling page) and does not write them, so it cannot "
               "be attached to a recipe or merged; pick an adapter trained with another objective.", name=info.label)

"""Adapter registry: every finished run is kept in the project's adapters/ folder with its config, dataset
version, metrics and base-model fingerprint; recipes attach one by id.

adapters/<id>/adapter.json              manifest, written last: an adapter exists only once this file does
adapters/<id>/adapter_config.json ...   PEFT methods: a folder PeftModel.from_pretrained (and vLLM) can load
adapters/<id>/weights.safetensors       full / partial / BitFit: the tensors that changed, applied on the base

A folder is written under a temporary name and renamed into place, so a full disk or a crash never leaves a
half-written adapter registered.
"""

from __future__ import annotations

import errno
import hashlib
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.errors import TrainingError
from core.finetune.config import TrainConfig
from core.i18n import Msg
from core.models.source import ModelSource
from core.workspace import Project

MANIFEST = "adapter.json"
WEIGHTS = "weights.safetensors"


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
    id: str
    folder: Path
    manifest: dict

    @property
    def method(self) -> str:
        return self.manifest["config"]["method"]

    @property
    def config(self) -> TrainConfig:
        return TrainConfig.from_dict(self.manifest["config"])

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


class AdapterRegistry:
    def __init__(self, project: Project):
        self.project = project
        self.folder = project.subdir("adapters")

    def list(self) -> list[AdapterInfo]:
        found = [self.get(p.name) for p in sorted(self.folder.iterdir()) if (p / MANIFEST).exists()] \
            if self.folder.exists() else []
        return sorted(found, key=lambda a: a.manifest.get("created", 0), reverse=True)

    def exists(self, adapter_id: str) -> bool:
        return (self.folder / adapter_id / MANIFEST).exists()

    def get(self, adapter_id: str) -> AdapterInfo:
        path = self.folder / adapter_id / MANIFEST
        if not path.exists():
            raise TrainingError(Msg("Adapter '{name}' not found; it may have been deleted.", name=adapter_id))
        return AdapterInfo(adapter_id, path.parent, atomic.read_json(path))

    def register(self, adapter_id: str, model, config: TrainConfig, manifest: dict) -> AdapterInfo:
        """Save the tuned weights of `model` as adapter `adapter_id` (replacing an older one of the same run)."""
        from safetensors.torch import save_file

        from core.finetune.methods import adapter_tensors

        staging = self.folder / f".{adapter_id}.tmp"
        shutil.rmtree(staging, ignore_errors=True)
        try:
            staging.mkdir(parents=True)
            if config.is_peft:
                model.save_pretrained(str(staging))
            else:
                save_file({k: v.detach().cpu().contiguous() for k, v in adapter_tensors(model, config).items()},
                          str(staging / WEIGHTS))
            size = sum(f.stat().st_size for f in staging.rglob("*") if f.is_file())
            atomic.write_json(staging / MANIFEST, {**manifest, "id": adapter_id, "config": config.to_dict(),
                                                   "format": "peft" if config.is_peft else "weights",
                                                   "size_bytes": size, "created": time.time()})
            final = self.folder / adapter_id
            old = self.folder / f".{adapter_id}.old"
            shutil.rmtree(old, ignore_errors=True)
            if final.exists():
                final.rename(old)
            staging.rename(final)
            shutil.rmtree(old, ignore_errors=True)
        except OSError as exc:
            shutil.rmtree(staging, ignore_errors=True)
            if exc.errno == errno.ENOSPC:
                raise TrainingError(Msg("The disk is full, so the adapter was not saved. Free some space and "
                                        "resume the run: it continues from its last checkpoint.")) from exc
            raise TrainingError(Msg("The adapter could not be saved ({reason}).", reason=str(exc)[:200])) from exc
        return self.get(adapter_id)

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


def apply_adapter(model, info: AdapterInfo, merge: bool = True):
    """The base model with the adapter applied (check_base first). LoRA and IA3 are merged (same speed as the
    base); soft prompts stay a PEFT model because there is nothing to merge."""
    from safetensors.torch import load_file

    from core.finetune.methods import apply_saved_weights

    if info.is_reward:
        raise TrainingError(_reward_refusal(info))
    if not info.is_peft:
        return apply_saved_weights(model, load_file(str(info.folder / WEIGHTS)))
    from peft import PeftModel

    tuned = PeftModel.from_pretrained(model, str(info.folder))
    if merge and info.method in ("lora", "qlora", "ia3"):
        return tuned.merge_and_unload()
    return tuned


def _reward_refusal(info: AdapterInfo) -> Msg:
    return Msg("'{name}' is a reward model: it scores answers (Labeling page) and does not write them, so it cannot "
               "be attached to a recipe or merged; pick an adapter trained with another objective.", name=info.label)


def export_adapter_zip(info: AdapterInfo, destination: Path) -> Path:
    """A zip of the adapter folder (PEFT format for LoRA/IA3/soft prompts; tensors + manifest otherwise)."""
    base = destination / f"{info.id}-{int(info.manifest.get('created', 0))}"
    return Path(shutil.make_archive(str(base), "zip", root_dir=info.folder))


EXPORT_MANIFEST = "studio-export.json"  # which adapter a merged folder came from (for export parity)


def merge_and_export(info: AdapterInfo, base_folder: Path, destination: Path, progress=None) -> Path:
    """A standalone safetensors model folder: base + adapter merged, tokenizer and a model card."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if info.method in ("prompt_tuning", "prefix_tuning"):
        raise TrainingError(Msg("Soft prompts cannot be merged into the weights; export the adapter instead."))
    if info.is_reward:
        raise TrainingError(_reward_refusal(info))
    if progress:
        progress(0.1, Msg("Loading the base model"))
    check_base(info, base_folder)
    model = AutoModelForCausalLM.from_pretrained(str(base_folder), dtype=torch.float32)
    tokenizer = AutoTokenizer.from_pretrained(str(base_folder))
    merged = apply_adapter(model, info, merge=True)
    if progress:
        progress(0.6, Msg("Writing the merged model"))
    staging = destination.with_name(destination.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    try:
        merged.save_pretrained(str(staging))
        tokenizer.save_pretrained(str(staging))
        (staging / "README.md").write_text(model_card(info), encoding="utf-8")
        atomic.write_json(staging / EXPORT_MANIFEST, {"adapter": info.id, "base_model": info.manifest.get("base_model"),
                                                      "created": time.time()})
        shutil.rmtree(destination, ignore_errors=True)
        staging.rename(destination)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise TrainingError(Msg("The merged model could not be written ({reason}).", reason=str(exc)[:200])) from exc
    if progress:
        progress(1.0, Msg("Done"))
    return destination


def model_card(info: AdapterInfo) -> str:
    manifest, config = info.manifest, info.manifest["config"]
    metrics = "\n".join(f"- {k}: {v:.4g}" if isinstance(v, float) else f"- {k}: {v}"
                        for k, v in sorted(manifest.get("metrics", {}).items()))
    return (f"# {info.label}\n\nFine-tuned with the LLM Customization Studio.\n\n"
            f"- Base model: {info.base.describe()} (fingerprint {manifest.get('base_fingerprint')})\n"
            f"- Method: {config['method']}, objective: {info.objective}\n- Dataset: {manifest.get('dataset')} version "
            f"{manifest.get('dataset_version')}\n- Epochs: {config['epochs']}, learning rate "
            f"{config['learning_rate']}, max length {config['max_length']}\n\n## Metrics\n\n{metrics}\n\n"
            f"## Training config\n\n```json\n{json.dumps(config, indent=2)}\n```\n")

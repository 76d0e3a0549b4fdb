"""Saving a finished run's adapter into the project's adapters/ folder, and exporting one (a zip, or merged into
its base). Reading and applying adapters is core.models.adapters.

A folder is written under a temporary name and renamed into place, so a full disk or a crash never leaves a
half-written adapter registered.
"""

from __future__ import annotations

import errno
import json
import shutil
import time
from pathlib import Path

from core import atomic
from core.errors import TrainingError
from core.finetune.config import TrainConfig
from core.i18n import Msg
from core.models.adapters import (EXPORT_MANIFEST, MANIFEST, WEIGHTS, AdapterInfo, AdapterRegistry, apply_adapter,
                                  check_base, reward_refusal)
from core.workspace import Project


def train_config(info: AdapterInfo) -> TrainConfig:
    return TrainConfig.from_dict(info.manifest["config"])


def register(project: Project, adapter_id: str, model, config: TrainConfig, manifest: dict) -> AdapterInfo:
    """Save the tuned weights of `model` as adapter `adapter_id` (replacing an older one of the same run)."""
    from safetensors.torch import save_file

    from core.finetune.methods import adapter_tensors

    registry = AdapterRegistry(project)
    final = registry.path(adapter_id)  # refuses a name that would lead outside adapters/
    staging = final.with_name(f".{adapter_id}.tmp")
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
        old = final.with_name(f".{adapter_id}.old")
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
    return registry.get(adapter_id)


def export_adapter_zip(info: AdapterInfo, destination: Path) -> Path:
    """A zip of the adapter folder (PEFT format for LoRA/IA3/soft prompts; tensors + manifest otherwise)."""
    base = destination / f"{info.id}-{int(info.manifest.get('created', 0))}"
    return Path(shutil.make_archive(str(base), "zip", root_dir=info.folder))




def merge_and_export(info: AdapterInfo, base_folder: Path, destination: Path, progress=None) -> Path:
    """A standalone safetensors model folder: base + adapter merged, tokenizer and a model card."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if info.method in ("prompt_tuning", "prefix_tuning"):
        raise TrainingError(Msg("Soft prompts cannot be merged into the weights; export the adapter instead."))
    if info.is_reward:
        raise TrainingError(reward_refusal(info))
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

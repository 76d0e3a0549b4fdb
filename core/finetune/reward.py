"""Reward models: the base model with a one-output scoring head (AutoModelForSequenceClassification), trained on
preference pairs to score the chosen answer above the rejected one, then used to rank candidate answers.

The score of an answer is the head's output at the last token of the prompt and answer rendered exactly as at
inference (preference_data.encode_answer). The loss is TRL RewardTrainer's Bradley-Terry loss, -log σ(s(c) - s(r)),
computed in the studio's loop (see preference.py for why). A reward model is registered in the adapter registry
like any run (a PEFT folder with the head for LoRA, the changed tensors for full fine-tuning), but it is not
attached to a recipe: it scores answers and does not write them.

    score_answers(project, reward_model_id, prompt, answers) -> one score per answer (higher is better)
"""

from __future__ import annotations

import threading

from core.errors import TrainingError
from core.finetune import data as finetune_data
from core.i18n import Msg
from core.workspace import Project

_loaded: dict[str, tuple] = {}  # reward model key -> (model, tokenizer, spec); the last one used stays loaded
_lock = threading.Lock()


def sequence_scores(model, batch: dict):
    """The head's score at each row's last token ([rows], fp32). Right-padded rows; the pad id does not matter."""
    import torch

    base = model.get_base_model() if hasattr(model, "get_base_model") else model
    backbone = getattr(base, base.base_model_prefix)
    hidden = backbone(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"],
                      use_cache=False).last_hidden_state
    last = batch["attention_mask"].sum(1) - 1
    pooled = hidden[torch.arange(hidden.shape[0], device=hidden.device), last]
    return base.score(pooled).squeeze(-1).float()


class RewardObjective:
    """Bradley-Terry on preference pairs: -log σ(score(chosen) - score(rejected))."""

    stat_keys = ("pairs", "margin", "correct")

    def length(self, pair) -> int:
        return max(len(pair.chosen.input_ids), len(pair.rejected.input_ids))

    def units(self, pairs: list) -> int:
        return len(pairs)

    def start(self, trainer) -> None:
        pass

    def loss(self, trainer, pairs: list):
        import torch.nn.functional as F

        n = len(pairs)
        batch = trainer.to_device(finetune_data.collate([p.chosen for p in pairs] + [p.rejected for p in pairs],
                                                        trainer.pad_id))
        with trainer.autocast():
            scores = sequence_scores(trainer.model, batch)
        margins = scores[:n] - scores[n:]
        return -F.logsigmoid(margins).sum(), int(batch["attention_mask"].sum()), {
            "pairs": n, "margin": float(margins.detach().sum()), "correct": float((margins > 0).sum())}

    def summary(self, sums: dict) -> dict:
        pairs = max(1.0, sums["pairs"])
        return {"reward_margin": sums["margin"] / pairs, "reward_accuracy": sums["correct"] / pairs}


def load_base(folder: str, dtype, attention: str | None = None):
    """The base model with a new, seeded one-output scoring head (transformers' "newly initialized" notice is
    expected here and silenced)."""
    from transformers import AutoModelForSequenceClassification
    from transformers.utils import logging as hf_logging

    verbosity = hf_logging.get_verbosity()
    hf_logging.set_verbosity_error()
    try:
        model = AutoModelForSequenceClassification.from_pretrained(str(folder), num_labels=1, dtype=dtype,
                                                                   attn_implementation=attention)
    except ValueError as exc:
        raise TrainingError(Msg("This model has no scoring-head variant in transformers, so it cannot become a "
                                "reward model ({reason}).", reason=str(exc).splitlines()[0][:200])) from exc
    finally:
        hf_logging.set_verbosity(verbosity)
    return model


# -- scoring ----------------------------------------------------------------------------------------------------

def reward_models(project: Project) -> list:
    """The project's reward models (AdapterInfo), newest first."""
    from core.models.adapters import AdapterRegistry

    return [a for a in AdapterRegistry(project).list() if a.is_reward]


def score_answers(project: Project, reward_model_id: str, prompt: str, answers: list[str]) -> list[float]:
    """The reward model's score of each answer to `prompt` (higher is better), rendered as at training."""
    import torch

    from core.finetune.data import encode_record
    from core.models.batching import padding_id

    if not answers:
        return []
    model, tokenizer, spec = _scorer(project, reward_model_id)
    examples = []
    for answer in answers:
        ids, labels = encode_record({"prompt": prompt, "response": str(answer or "")}, "sft", tokenizer,
                                    spec["prompt"], spec["labels"])
        examples.append(finetune_data.Example(ids[:spec["max_length"]], labels[:spec["max_length"]], ""))
    pad = padding_id(tokenizer)
    device = next(model.parameters()).device
    with torch.no_grad():
        batch = {k: v.to(device) for k, v in finetune_data.collate(examples, pad).items()}
        return sequence_scores(model, batch).tolist()


def _scorer(project: Project, reward_model_id: str):
    from core.models.adapters import AdapterRegistry

    info = AdapterRegistry(project).get(reward_model_id)
    if not info.is_reward:
        raise TrainingError(Msg("'{name}' is not a reward model; train one with the reward model objective on a "
                                "preference dataset.", name=info.label))
    key = f"{info.folder.resolve()}|{info.manifest.get('created')}"
    with _lock:
        if key not in _loaded:
            _loaded.clear()  # one reward model in memory at a time
            _loaded[key] = _load(info)
        return _loaded[key]


def _load(info):
    import torch
    from transformers import AutoTokenizer

    from core.finetune.adapters import train_config
    from core.models.adapters import WEIGHTS, apply_saved_weights, check_base, source_folder
    from core.models.base import CompletionLabels
    from core.prompt import PromptSettings

    folder = source_folder(info.base)
    check_base(info, folder)
    model = load_base(str(folder), torch.float32)
    if info.is_peft:
        from peft import PeftModel

        model = PeftModel.from_pretrained(model, str(info.folder)).merge_and_unload()
    else:
        from safetensors.torch import load_file

        model = apply_saved_weights(model, load_file(str(info.folder / WEIGHTS)))
    model = model.to("cuda" if torch.cuda.is_available() else "cpu").eval()
    spec = {"prompt": PromptSettings.from_dict(info.manifest["prompt"]),
            "labels": CompletionLabels(**info.manifest["labels"]), "max_length": train_config(info).max_length}
    return model, AutoTokenizer.from_pretrained(str(folder)), spec

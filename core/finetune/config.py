"""The fine-tuning run config: method, data and optimisation settings, validated on creation and saved beside
every run and adapter so a result can be reproduced."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, replace

from core.errors import StudioError
from core.i18n import Msg

# One line each, shown next to the choice on the Fine-tune page.
METHODS: dict[str, Msg] = {
    "lora": Msg("LoRA: trains small low-rank matrices beside the frozen model; fast, small files, the usual first "
                "choice."),
    "qlora": Msg("QLoRA: LoRA on a 4-bit copy of the model, for big models on little GPU memory (needs a CUDA GPU)."),
    "full": Msg("Full fine-tuning: every weight changes; the most capacity, needs the most memory (about 16× the "
                "model's size)."),
    "partial": Msg("Partial: freezes the model except its last few blocks; a middle ground between LoRA and full."),
    "bitfit": Msg("BitFit: trains only the bias terms (on models without biases, such as Gemma, the normalization "
                  "scales); tiny and hard to overfit."),
    "prompt_tuning": Msg("Prompt tuning: learns a few 'soft prompt' vectors put before every input; the model is "
                         "untouched."),
    "prefix_tuning": Msg("Prefix tuning: learns soft vectors inside every attention layer; more capacity than prompt "
                         "tuning."),
    "ia3": Msg("IA3: learns one scaling vector per layer; the smallest adapter, good for little data."),
}
PEFT_METHODS = ("lora", "qlora", "prompt_tuning", "prefix_tuning", "ia3")  # saved as PEFT adapters
TARGET_PRESETS: dict[str, Msg] = {
    "attention": Msg("Attention only (query, key, value, output projections)."),
    "attention_mlp": Msg("Attention and feed-forward layers (more capacity)."),
    "all_linear": Msg("Every linear layer except the output head (PEFT's all-linear)."),
}
DATA_KINDS = ("sft", "chat")
# Passages in the training prompts: none; mixed (each pair twice, without and with passages, so the adapter works
# with and without the retriever); always (only with passages).
RETRIEVAL_CONTEXTS: dict[str, Msg] = {
    "none": Msg("No passages: the adapter learns the answers themselves."),
    "mixed": Msg("With and without passages: each pair twice, so the adapter works with or without the retriever."),
    "always": Msg("With passages: the adapter learns to answer from what the retriever finds."),
}
# What a run learns. One line each, shown on the Fine-tune page; all but "sft" learn from preferences.
OBJECTIVES: dict[str, Msg] = {
    "sft": Msg("Supervised fine-tuning: learns to write the answers of training pairs or chats."),
    "dpo": Msg("DPO: learns from pairs to prefer the chosen answer over the rejected one while staying close to the "
               "original model; the usual choice for preference pairs."),
    "orpo": Msg("ORPO: learns the chosen answers and the preference in one step, without a reference model; for a "
                "model not yet tuned on answers like these."),
    "kto": Msg("KTO: learns from answers marked good or bad one at a time (thumbs up or down); no pairs needed."),
    "reward": Msg("Reward model: learns to score answers from the pairs; it ranks candidate answers on the Labeling "
                  "page and does not answer itself."),
}
PREFERENCE_OBJECTIVES = ("dpo", "orpo", "kto", "reward")
# Soft prompts change the model before the first step, so the start is not the model the preferences compare against.
PREFERENCE_METHODS = ("lora", "qlora", "full", "partial", "bitfit", "ia3")
REWARD_METHODS = ("lora", "full")  # a new scoring head trains with either; the head is saved with the adapter
DATA_SOURCES: dict[str, Msg] = {
    "dataset": Msg("A dataset of the project."),
    "feedback": Msg("The thumbs up and down given on the Chat page (KTO only)."),
}


@dataclass(frozen=True)
class TrainConfig:
    dataset: str = field(default="", metadata={"help": "Project dataset of training pairs or chats."})
    dataset_version: int | None = field(default=None, metadata={"help": "Snapshot used; none = the latest."})
    method: str = field(default="lora", metadata={"help": "Fine-tuning method (see METHODS)."})
    objective: str = field(default="sft", metadata={"help": "What the run learns (OBJECTIVES): sft from training "
                                                             "pairs or chats; dpo, orpo, kto or reward from "
                                                             "preferences."})
    data_source: str = field(default="dataset", metadata={"help": "dataset, or feedback: the Chat page's thumbs up "
                                                                   "and down (KTO only; no dataset needed)."})
    # Preference tuning
    beta: float = field(default=0.1, metadata={"help": "DPO and KTO: how far the tuned model may move from the "
                                                        "original (lower = further); ORPO: weight of the "
                                                        "preference term."})
    desirable_weight: float = field(default=1.0, metadata={"help": "KTO: weight of the good answers' loss (raise "
                                                                    "it when they are the fewer)."})
    undesirable_weight: float = field(default=1.0, metadata={"help": "KTO: weight of the bad answers' loss."})
    # LoRA / QLoRA
    lora_rank: int = field(default=16, metadata={"help": "Rank of the LoRA matrices."})
    lora_alpha: int = field(default=32, metadata={"help": "LoRA scaling numerator (alpha / rank)."})
    # 0 like PEFT's default: on CPU the dropout masks cost a sixth of a step, and short runs rarely overfit.
    lora_dropout: float = field(default=0.0, metadata={"help": "Dropout on the LoRA input."})
    target_preset: str = field(default="all_linear", metadata={"help": "Which layers get adapters (TARGET_PRESETS)."})
    use_rslora: bool = field(default=False, metadata={"help": "Rank-stabilized scaling alpha / sqrt(rank)."})
    use_dora: bool = field(default=False, metadata={"help": "Weight-decomposed LoRA (DoRA)."})
    # Partial
    trainable_blocks: int = field(default=2, metadata={"help": "Partial: how many of the last blocks train."})
    # Prompt / prefix tuning
    virtual_tokens: int = field(default=20, metadata={"help": "Soft-prompt length in tokens."})
    prompt_init_text: str = field(default="", metadata={"help": "Prompt tuning: start from this text; empty = random."})
    # Data
    eval_fraction: float = field(default=0.1, metadata={"help": "Share held out for eval loss (when no split set)."})
    max_length: int = field(default=512, metadata={"help": "Tokens per example; longer ones are truncated."})
    completion_only: bool = field(default=True, metadata={"help": "Loss on the answer tokens only."})
    retrieval_context: str = field(default="none", metadata={
        "help": "Train with the passages the recipe's retriever finds for each question (RETRIEVAL_CONTEXTS), so "
                "the adapter learns to answer from them."})
    group_by_length: bool = field(default=True, metadata={"help": "Batch similar lengths together (less padding)."})
    # Optimisation
    epochs: int = field(default=3, metadata={"help": "Passes over the training data."})
    learning_rate: float = field(default=2e-4, metadata={"help": "Peak learning rate."})
    batch_size: int = field(default=4, metadata={"help": "Examples per step on the device."})
    grad_accum: int = field(default=1, metadata={"help": "Steps whose gradients add up before an update."})
    warmup_ratio: float = field(default=0.05, metadata={"help": "Share of updates with a rising learning rate."})
    weight_decay: float = field(default=0.0, metadata={"help": "AdamW weight decay."})
    max_grad_norm: float = field(default=1.0, metadata={"help": "Gradient clipping."})
    seed: int = field(default=42, metadata={"help": "Seed for data order and initialisation."})
    eval_every: int = field(default=0, metadata={"help": "Updates between eval-loss checks; 0 = once per epoch."})
    save_every: int = field(default=0, metadata={"help": "Updates between checkpoints; 0 = at each eval."})
    early_stopping_patience: int = field(default=0, metadata={"help": "Stop after this many evals without "
                                                                      "improvement; 0 = off."})
    precision: str = field(default="auto", metadata={"help": "auto (bf16 where supported) | bf16 | fp32."})
    max_steps: int = field(default=0, metadata={"help": "Stop after this many updates; 0 = no limit."})
    max_minutes: float = field(default=0.0, metadata={
        "help": "Stop after this many minutes of training and keep the adapter; the learning rate then decays over "
                "the time instead of the epochs. Loading the model and preparing the data are not counted. "
                "0 = no limit."})

    def __post_init__(self):
        if self.method not in METHODS:
            raise StudioError(Msg("Unknown fine-tuning method '{method}'.", method=self.method))
        if self.target_preset not in TARGET_PRESETS:
            raise StudioError(Msg("Unknown target layers '{preset}'.", preset=self.target_preset))
        if self.retrieval_context not in RETRIEVAL_CONTEXTS:
            raise StudioError(Msg("Unknown passage setting '{value}'.", value=self.retrieval_context))
        if self.precision not in ("auto", "bf16", "fp32"):
            raise StudioError(Msg("Precision must be auto, bf16 or fp32."))
        self._check_objective()
        checks = [
            (1 <= self.lora_rank <= 1024, Msg("The LoRA rank must be between 1 and 1024.")),
            (self.lora_alpha > 0, Msg("LoRA alpha must be positive.")),
            (0 <= self.lora_dropout < 1, Msg("Dropout must be at least 0 and below 1.")),
            (self.trainable_blocks >= 1, Msg("Partial fine-tuning needs at least one trainable block.")),
            (1 <= self.virtual_tokens <= 512, Msg("Virtual tokens must be between 1 and 512.")),
            (0 <= self.eval_fraction <= 0.5, Msg("The eval share must be between 0 and 0.5.")),
            (16 <= self.max_length <= 32768, Msg("Max length must be between 16 and 32768 tokens.")),
            (1 <= self.epochs <= 1000, Msg("Epochs must be between 1 and 1000.")),
            (0 < self.learning_rate < 1, Msg("The learning rate must be above 0 and below 1.")),
            (1 <= self.batch_size <= 1024, Msg("The batch size must be between 1 and 1024.")),
            (1 <= self.grad_accum <= 1024, Msg("Gradient accumulation must be between 1 and 1024.")),
            (0 <= self.warmup_ratio < 1, Msg("The warm-up share must be at least 0 and below 1.")),
            (self.weight_decay >= 0, Msg("Weight decay cannot be negative.")),
            (self.max_grad_norm > 0, Msg("Gradient clipping must be positive.")),
            (0 <= self.max_minutes <= 100_000, Msg("The time limit must be between 0 and 100,000 minutes.")),
            (self.eval_every >= 0 and self.save_every >= 0 and self.max_steps >= 0
             and self.early_stopping_patience >= 0, Msg("Step counts cannot be negative.")),
        ]
        for ok, message in checks:
            if not ok:
                raise StudioError(message)

    def _check_objective(self) -> None:
        if self.objective not in OBJECTIVES:
            raise StudioError(Msg("Unknown training objective '{objective}'.", objective=self.objective))
        if self.data_source not in DATA_SOURCES:
            raise StudioError(Msg("Unknown data source '{source}'.", source=self.data_source))
        if self.data_source == "feedback" and self.objective != "kto":
            raise StudioError(Msg("Only KTO learns from the Chat page's thumbs up and down; pick KTO or a dataset."))
        if self.objective == "sft":
            return
        if self.objective == "reward" and self.method not in REWARD_METHODS:
            raise StudioError(Msg("A reward model trains with LoRA or full fine-tuning; pick one of them."))
        if self.method not in PREFERENCE_METHODS:
            raise StudioError(Msg("Preference tuning works with LoRA, QLoRA, IA3, full, partial or BitFit "
                                  "fine-tuning; soft prompts start from a changed model, so pick another method."))
        if self.retrieval_context != "none":
            raise StudioError(Msg("Passages from the knowledge base can be added to training pairs only; turn them "
                                  "off for preference tuning."))
        if not 0 < self.beta <= 10:
            raise StudioError(Msg("Beta must be above 0 and at most 10 (0.1 is usual)."))
        if not (0 < self.desirable_weight <= 100 and 0 < self.undesirable_weight <= 100):
            raise StudioError(Msg("The KTO weights must be above 0 and at most 100."))

    @property
    def is_peft(self) -> bool:
        return self.method in PEFT_METHODS

    @property
    def is_preference(self) -> bool:
        return self.objective in PREFERENCE_OBJECTIVES

    def with_changes(self, **changes) -> "TrainConfig":
        return replace(self, **changes)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict | None, strict: bool = False) -> "TrainConfig":
        """`strict` (a config a person wrote): unknown keys and values of the wrong type are refused by name."""
        data = data or {}
        if strict:
            if not isinstance(data, dict):
                raise ValueError("a run config is a JSON object of settings.")
            known = {f.name: f for f in fields(cls)}
            unknown = sorted(set(data) - set(known))
            if unknown:
                raise ValueError(f"unknown setting(s): {', '.join(unknown)}.")
            for name, value in data.items():
                _check_type(name, value, getattr(cls(), name))
        return cls(**{f.name: data[f.name] for f in fields(cls) if f.name in data})


def _check_type(name: str, value, default) -> None:
    """Refuse "3" for a number (JSON written by hand); None is allowed where the default is None."""
    if default is None or value is None and default is None:
        return
    if isinstance(default, bool):
        ok, wanted = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, wanted = isinstance(value, int) and not isinstance(value, bool), "a whole number"
    elif isinstance(default, float):
        ok, wanted = isinstance(value, (int, float)) and not isinstance(value, bool), "a number"
    elif isinstance(default, str):
        ok, wanted = isinstance(value, str), "a text"
    elif isinstance(default, (list, tuple)):
        ok, wanted = isinstance(value, (list, tuple)), "a list"
    else:
        return
    if not ok:
        raise ValueError(f"'{name}' must be {wanted}, not {value!r}.")

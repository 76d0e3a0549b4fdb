"""Rung 4 · Fine-tune: pick data and a method, see memory and time before starting, follow the run live, then
keep, compare, attach and export the adapters it produces.

One function per section of the page, each handing plain values or a config to the next; `main()` at the end
reads as the page's flow, top to bottom."""

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import plotly.graph_objects as go
import streamlit as st

from core.data.preference_checks import blocks_training, check_feedback, check_pairs
from core.data.rated import rated_from_feedback
from core.data.records import KIND_LABELS
from core.data.store import DatasetStore
from core.errors import StudioError
from core.feedback import list_feedback
from core.finetune import estimate, runs
from core.finetune.config import (DATA_KINDS, METHODS, OBJECTIVES, PREFERENCE_METHODS, RETRIEVAL_CONTEXTS,
                                   REWARD_METHODS, TARGET_PRESETS, TrainConfig)
from core.finetune.distributed import gpu_count, launch_command
from core.finetune.recommend import fit_batch_to_memory, fit_to_recipe, recommend
from core.i18n import Msg
from core.jobs import Job, JobStatus, event_message
from core.models.adapters import AdapterInfo, AdapterRegistry
from core.recipe import Recipe
from core.workspace import Project
from studio.ui import preference as preference_ui
from studio.ui.i18n import t
from studio.ui.model_panel import model_ready
from studio.ui.export_panel import gguf_export_form, gguf_export_status
from studio.ui.run_panel import start_button
from studio.ui.state import draft, require_project, save_draft, saved_recipe, show_error

project = require_project()
K = f"finetune.{project.slug}."  # the prefix of every widget key on this page, per project
STATES = {"new": Msg("not started"), "running": Msg("training"), "done": Msg("finished"),
          "cancelled": Msg("cancelled"), "failed": Msg("stopped with an error")}
TIMING_FRAGMENT = "finetune.timing"  # the key of the fragment that polls the timing job


@dataclass(frozen=True)
class TrainingData:
    """What the Dataset picker chose: a dataset's records, or the Chat page's ratings (`name` "")."""

    name: str
    source: str  # sft | chat | preference | feedback
    version: int | None
    records: list[dict]
    usable: list[dict]  # without the rejected records (or the dismissed ratings)


# ---- helpers ----------------------------------------------------------------------------------------------------
@st.cache_data(show_spinner=False)
def model_shape(folder: str) -> estimate.ModelShape:
    return estimate.ModelShape.from_folder(folder)


def base_folder(recipe: Recipe) -> Path | None:
    from core.models.adapters import source_folder

    try:
        return source_folder(recipe.model)
    except StudioError as exc:
        show_error(exc)
        return None


def gpu_present() -> bool:
    return Path("/proc/driver/nvidia/version").exists() or shutil.which("nvidia-smi") is not None


def loss_chart(events: list[dict]) -> go.Figure:
    steps = [e for e in events if e.get("type") == "step"]
    evals = [e for e in events if e.get("type") == "eval"]
    figure = go.Figure()
    figure.add_scatter(x=[e["step"] for e in steps], y=[e["loss"] for e in steps], mode="lines",
                       name=t("Training loss"))
    if evals:
        figure.add_scatter(x=[e["step"] for e in evals], y=[e["eval_loss"] for e in evals], mode="lines+markers",
                           name=t("Eval loss"))
    figure.update_layout(height=300, margin=dict(l=10, r=10, t=30, b=10), xaxis_title=t("Step"),
                         yaxis_title=t("Loss"), legend=dict(orientation="h", y=1.15))
    return figure


def run_spec(recipe: Recipe, config: TrainConfig) -> dict:
    return {"config": config.to_dict(), "base_model": recipe.model.to_dict(), "prompt": recipe.prompt.to_dict(),
            "labels": {"user": recipe.labels.user, "assistant": recipe.labels.assistant}}


# ---- intro and model --------------------------------------------------------------------------------------------
def intro() -> None:
    st.title(t("4 · Fine-tune"))
    st.write(t("When prompting, examples and documents are not enough, teach the model from your training pairs. "
               "Training runs in the background: you can leave this page and come back."))


def trainable_recipe(project: Project) -> tuple[Recipe, Recipe]:
    """The draft recipe and the saved one; stops the page when the draft's model cannot be trained here."""
    recipe = draft(project)
    saved, _ = saved_recipe(project)
    if not recipe.model.trainable:
        st.error(t("Models behind an endpoint cannot be fine-tuned here; pick the embedded model, a local folder, a "
                   "GGUF file or a hub id on the Model page."))
        st.page_link("../pages/model.py", label=t("Open the Model page"), icon=":material/memory:")
        st.stop()
    if not model_ready(recipe.model, key=K + "model"):
        st.stop()
    return recipe, saved


# ---- data -------------------------------------------------------------------------------------------------------
def pick_training_data(project: Project) -> TrainingData:
    """The Dataset picker (pairs, chats, preferences or the Chat page's ratings); stops the page without any."""
    st.subheader(t("Training data"))
    store = DatasetStore(project)
    kinds = {d.name: d.kind for d in store.list() if d.kind in DATA_KINDS or d.kind == "preference"}
    feedback = list_feedback(project)
    rated = rated_from_feedback(feedback)
    options = list(kinds) + ([""] if rated else [])  # "": the Chat page's thumbs up and down (KTO)
    if not options:
        st.info(t("No training pairs yet. Import or label pairs (prompt → response) on the Datasets page."))
        st.page_link("../pages/datasets.py", label=t("Open the Datasets page"), icon=":material/dataset:")
        st.stop()

    def dataset_label(name: str) -> str:
        if not name:
            return t("Chat feedback: {count} rated answers (thumbs up and down)", count=len(rated))
        return f"{name} · {t(KIND_LABELS[kinds[name]])}"

    dataset = st.selectbox(t("Dataset"), options, key=K + "dataset", format_func=dataset_label)
    source = kinds.get(dataset, "feedback")  # sft | chat | preference | feedback
    if dataset:
        records, version = store.load(dataset)
        usable = [r for r in records if r.get("status") != "rejected"]
        st.caption(t("Version {version} · {count} usable records (rejected ones are left out).", version=version,
                     count=len(usable)))
        return TrainingData(dataset, source, version, records, usable)
    st.caption(t("{count} answers rated on the Chat page (dismissed ones are left out); thumbs down with a "
                 "correction also give the correction as a good answer.", count=len(rated)))
    return TrainingData(dataset, source, None, feedback, rated)


# ---- method -----------------------------------------------------------------------------------------------------
def pick_method(data: TrainingData, shape: estimate.ModelShape) -> tuple[str, str, bool]:
    """The objective (for preference data), the suggestion and the method; returns (objective, method, whether
    the method can run here: QLoRA needs a CUDA GPU and bitsandbytes)."""
    objective = "sft" if data.source in DATA_KINDS else preference_ui.pick_objective(data.source, K)
    # Each family of methods keeps its own choice: the lists differ.
    methods, method_key = {"sft": (list(METHODS), K + "method"),
                           "reward": (list(REWARD_METHODS), K + "reward_method")}.get(
        objective, (list(PREFERENCE_METHODS), K + "preference_method"))
    st.subheader(t("Method"))
    suggestion(data, shape, objective, methods, method_key)
    method = st.radio(t("Method"), methods, key=method_key, format_func=lambda m: t(METHODS[m]),
                      label_visibility="collapsed")
    qlora_ok = True
    if method == "qlora":
        from core.finetune.methods import qlora_support

        qlora_ok, qlora_message = qlora_support()
        (st.success if qlora_ok else st.warning)(t(qlora_message))
    return objective, method, qlora_ok


def suggestion(data: TrainingData, shape: estimate.ModelShape, objective: str, methods: list[str],
               method_key: str) -> None:
    """The method suggested for this much data on this machine, with a button that applies it and its settings."""
    advice = advice_for(data, shape)
    if objective != "sft" or advice.method not in methods:  # its rates and epochs are for supervised training
        return
    with st.container(border=True):
        st.markdown(t("**Suggested: {method}.** {reason}", method=t(METHODS[advice.method]).split(":")[0],
                      reason=t(advice.reason)))
        if st.button(t("Use the suggestion"), key=K + "use_advice", icon=":material/auto_awesome:"):
            st.session_state[method_key] = advice.method
            for field, value in advice.changes.items():
                st.session_state[K + field] = value
            st.rerun()


def advice_for(data: TrainingData, shape: estimate.ModelShape):
    return recommend(len(data.usable), shape, estimate.available_memory("cpu"), gpu_present())


# ---- settings ---------------------------------------------------------------------------------------------------
def form_defaults(data: TrainingData, shape: estimate.ModelShape, objective: str, method: str,
                  retrieves: bool = False) -> TrainConfig:
    """What the form starts with: the suggestion's settings when the suggested method is picked, so the numbers
    the suggestion names (a LoRA rank, epochs) are the ones in the form; with passages when the recipe retrieves."""
    advice = advice_for(data, shape)
    try:  # the memory below depends on the method and objective
        config = TrainConfig(method=method, objective=objective)
    except StudioError:  # a pairing the form refuses by name once its settings are read
        config = TrainConfig()
    if objective == "sft" and method == advice.method:
        config = config.with_changes(**advice.changes)
    # passages go with training pairs only (not chats, preference pairs or ratings)
    config = fit_to_recipe(config, retrieves and objective == "sft" and data.source == "sft")
    device = training_device()  # the batch starts at what the free memory holds, as the estimate counts it
    return fit_batch_to_memory(config, shape, config.max_length, estimate.available_memory(device), device)


def training_device() -> str:
    return "cuda" if gpu_present() else "cpu"


def recipe_retrieves(project: Project, recipe: Recipe) -> bool:
    """Whether the recipe's retriever is on and its knowledge base has documents to train with."""
    return recipe.retriever.enabled and runs.retriever_has_documents(project, recipe)


def training_settings(data: TrainingData, objective: str, method: str, shape: estimate.ModelShape,
                      retrieves: bool = False) -> TrainConfig:
    """The method's own settings and the Training settings expander, as a validated config."""
    defaults = form_defaults(data, shape, objective, method, retrieves)
    settings = method_settings(data, objective, method, shape, defaults)
    settings.update(optimisation_settings(objective, defaults))
    try:
        return TrainConfig.from_dict(settings)
    except StudioError as exc:
        show_error(exc)
        st.stop()


def method_settings(data: TrainingData, objective: str, method: str, shape: estimate.ModelShape,
                    defaults: TrainConfig) -> dict:
    settings: dict = {"dataset": data.name, "dataset_version": data.version, "method": method,
                      "objective": objective, "data_source": "feedback" if data.source == "feedback" else "dataset"}
    if objective != "sft":
        settings.update(preference_ui.settings(objective, K))
    if method in ("lora", "qlora"):
        cols = st.columns(4)
        settings["lora_rank"] = cols[0].number_input(t("Rank"), 1, 256, defaults.lora_rank, key=K + "lora_rank")
        settings["lora_alpha"] = cols[1].number_input(t("Alpha"), 1, 512, defaults.lora_alpha, key=K + "lora_alpha")
        settings["lora_dropout"] = cols[2].number_input(t("Dropout"), 0.0, 0.9, defaults.lora_dropout, 0.05,
                                                        key=K + "lora_dropout")
        settings["target_preset"] = cols[3].selectbox(t("Layers"), list(TARGET_PRESETS), key=K + "target_preset",
                                                      index=list(TARGET_PRESETS).index(defaults.target_preset),
                                                      format_func=lambda p: t(TARGET_PRESETS[p]))
        cols = st.columns(2)
        settings["use_rslora"] = cols[0].toggle(t("rsLoRA (stable scaling for high ranks)"), key=K + "use_rslora")
        settings["use_dora"] = cols[1].toggle(t("DoRA (weight-decomposed LoRA, slower, sometimes better)"),
                                              key=K + "use_dora")
    elif method == "partial":
        settings["trainable_blocks"] = st.number_input(t("Blocks to train (counted from the top of {layers})",
                                                         layers=shape.layers), 1, shape.layers,
                                                       min(defaults.trainable_blocks, shape.layers),
                                                       key=K + "trainable_blocks")
    elif method in ("prompt_tuning", "prefix_tuning"):
        settings["virtual_tokens"] = st.number_input(t("Soft-prompt length (tokens)"), 1, 512,
                                                     defaults.virtual_tokens, key=K + "virtual_tokens")
        if method == "prompt_tuning":
            settings["prompt_init_text"] = st.text_input(
                t("Start from this text (empty = random)"), key=K + "prompt_init_text",
                placeholder=t("Answer questions about our products briefly."))
    return settings


def optimisation_settings(objective: str, defaults: TrainConfig) -> dict:
    """The Training settings expander: epochs, rates, lengths, evaluation and precision."""
    settings: dict = {}
    settings["max_minutes"] = st.columns(4)[0].number_input(
        t("Time limit (minutes, 0 = none)"), 0, 100_000, int(defaults.max_minutes), step=5, key=K + "max_minutes",
        help=t("Training stops after this many minutes and keeps the adapter, its learning rate lowered over the time "
               "as if the run had ended there. Loading the model and finding passages are not counted."))
    with st.expander(t("Training settings"), icon=":material/tune:", key=K + "training_settings_panel"):
        cols = st.columns(4)
        settings["epochs"] = cols[0].number_input(t("Epochs"), 1, 100, defaults.epochs, key=K + "epochs")
        settings["learning_rate"] = cols[1].number_input(t("Learning rate"), 1e-6, 0.5, defaults.learning_rate,
                                                         format="%.0e", key=K + "learning_rate")
        settings["batch_size"] = cols[2].number_input(t("Batch size"), 1, 256, defaults.batch_size,
                                                      key=K + "batch_size")
        settings["grad_accum"] = cols[3].number_input(t("Gradient accumulation"), 1, 256, defaults.grad_accum,
                                                      key=K + "grad_accum")
        cols = st.columns(4)
        settings["max_length"] = cols[0].number_input(t("Max length (tokens)"), 16, 32768, defaults.max_length,
                                                      key=K + "max_length")
        settings["eval_fraction"] = cols[1].number_input(t("Eval share"), 0.0, 0.5, defaults.eval_fraction, 0.05,
                                                         key=K + "eval_fraction",
                                                         help=t("Used when the dataset has no train/eval split."))
        settings["early_stopping_patience"] = cols[2].number_input(
            t("Early stopping patience"), 0, 100, defaults.early_stopping_patience, key=K + "early_stopping_patience",
            help=t("Stop after this many evaluations without a lower eval loss; 0 = off."))
        settings["seed"] = cols[3].number_input(t("Seed"), 0, 2**31 - 1, defaults.seed, key=K + "seed")
        cols = st.columns(4)
        settings["eval_every"] = cols[0].number_input(t("Eval every (steps, 0 = each epoch)"), 0, 100000,
                                                      defaults.eval_every, key=K + "eval_every")
        if objective == "sft":  # preference losses always compare whole answers
            settings["completion_only"] = cols[1].toggle(t("Loss on answers only"), defaults.completion_only,
                                                         key=K + "completion_only")
        settings["group_by_length"] = cols[2].toggle(t("Group similar lengths"), defaults.group_by_length,
                                                     key=K + "group_by_length")
        settings["precision"] = cols[3].selectbox(t("Precision"), ["auto", "bf16", "fp32"], key=K + "precision")
        if objective == "sft":
            settings["retrieval_context"] = st.radio(
                t("Passages from the knowledge base"), list(RETRIEVAL_CONTEXTS), key=K + "retrieval_context",
                index=list(RETRIEVAL_CONTEXTS).index(defaults.retrieval_context),
                format_func=lambda value: t(RETRIEVAL_CONTEXTS[value]), horizontal=False,
                help=t("For a recipe that retrieves: train on the prompts the assistant will really see, with the "
                       "passages its retriever finds for each question (training pairs only; needs indexed "
                       "documents). Longer prompts make training slower; raise the max length to fit them."))
    return settings


# ---- before you start -------------------------------------------------------------------------------------------
def before_you_start(project: Project, recipe: Recipe, data: TrainingData, config: TrainConfig,
                     shape: estimate.ModelShape) -> bool:
    """Checks of preference data, the memory estimate and the timing; returns whether the checks block the start."""
    st.subheader(t("Before you start"))
    checks_block = False
    if config.is_preference:
        findings = check_feedback(data.records) if data.source == "feedback" else check_pairs(data.records)
        preference_ui.show_checks(findings)
        checks_block = blocks_training(findings)
    steps = memory_estimate(data, config, shape)
    timing_estimate(project, recipe, config, steps)
    return checks_block


def memory_estimate(data: TrainingData, config: TrainConfig, shape: estimate.ModelShape) -> int:
    """The memory metrics and chart; returns the number of planned updates."""
    memory = estimate.estimate_memory(shape, config, config.max_length, training_device())
    kto_split = config.objective == "kto" and data.source == "preference"  # KTO splits each pair
    items = len(data.usable) * (2 if kto_split else 1)
    train_count = max(1, round(items * (1 - config.eval_fraction)))
    steps = estimate.planned_steps(train_count, config)
    cols = st.columns(4)
    cols[0].metric(t("Memory needed"), estimate.format_bytes(memory.total))
    cols[1].metric(t("Memory free"), estimate.format_bytes(memory.available) if memory.available else "?")
    cols[2].metric(t("Trainable weights"), f"{estimate.trainable_parameters(shape, config):,}")
    cols[3].metric(t("Updates"), f"{steps:,}")
    parts = {t("Weights"): memory.weights, t("Gradients"): memory.gradients, t("Optimizer"): memory.optimizer,
             t("Activations"): memory.activations}
    bar = go.Figure([go.Bar(y=[t("Memory")], x=[size / 2**30], name=name, orientation="h")
                     for name, size in parts.items()])
    if memory.available:
        bar.add_vline(x=memory.available / 2**30, line_dash="dash", annotation_text=t("free"))
    bar.update_layout(barmode="stack", height=140, margin=dict(l=10, r=10, t=10, b=10), xaxis_title="GB",
                      legend=dict(orientation="h", y=-0.6))
    st.plotly_chart(bar, key=K + "memory_chart")
    if memory.warning():
        st.warning(t(memory.warning()))
        offer_smaller_batch(config, shape, memory.available)
    return steps


def offer_smaller_batch(config: TrainConfig, shape: estimate.ModelShape, available: int | None) -> None:
    """A button with the batch that fits the free memory, gradient accumulation making up the difference."""
    fitted = fit_batch_to_memory(config, shape, config.max_length, available, training_device())
    if fitted.batch_size == config.batch_size:
        return
    need = estimate.estimate_memory(shape, fitted, config.max_length, training_device(), available)

    def use_fitted() -> None:  # a callback: the widgets above already exist in this run
        st.session_state[K + "batch_size"] = fitted.batch_size
        st.session_state[K + "grad_accum"] = fitted.grad_accum

    st.button(t("Use batch size {batch} with gradient accumulation {accumulation} (about {need}; each update "
                "still averages {examples} examples)", batch=fitted.batch_size, accumulation=fitted.grad_accum,
                need=estimate.format_bytes(need.total), examples=fitted.batch_size * fitted.grad_accum),
              key=K + "fit_batch", icon=":material/memory:", on_click=use_fitted)


def timing_estimate(project: Project, recipe: Recipe, config: TrainConfig, steps: int) -> None:
    """Measure the time: a background job times a few real steps; its result gives the run's duration."""
    calibration_dir = runs.runs_folder(project) / "_timing"
    jobs = sorted(p for p in (calibration_dir / "jobs").glob("*") if p.is_dir())
    timing = Job(jobs[-1]) if jobs else None
    cols = st.columns([1, 3], vertical_alignment="center")
    if cols[0].button(t("Measure the time"), key=K + "calibrate", icon=":material/timer:",
                      help=t("Runs a few real training steps (about a minute) to time this machine.")):
        calibration_dir.mkdir(parents=True, exist_ok=True)
        spec_file = calibration_dir / "spec.json"
        spec_file.write_text(json.dumps(run_spec(recipe, config)), encoding="utf-8")
        timing = Job.start(calibration_dir / "jobs", ["-m", "core.finetune.job", "calibrate", str(project.path),
                                                     str(spec_file)], label="Timing")
    if timing is None:
        return
    status = timing.status()
    with cols[1]:
        if status.state == "running":
            timing_wait(timing)
        else:
            timing_result(timing, status, steps, config.max_minutes)


@st.fragment(run_every=1.0, key=TIMING_FRAGMENT)
def timing_wait(job: Job) -> None:
    """Polls the timing job while it runs; once it ends, the whole page reruns and shows the estimate."""
    if job.status().state != "running":
        st.rerun(scope="app")
    st.caption(t("Timing a few training steps…"))


LONG_RUN_S = 30 * 60  # an estimate above this suggests a time limit


def timing_result(job: Job, status: JobStatus, steps: int, max_minutes: float = 0.0) -> None:
    done = next((e for e in job.events() if e.get("type") == "calibration"), None)
    if done:
        extra = done.get("prepare_s", 0.0) + done.get("eval_s", 0.0)  # passages, loading and eval passes
        total = done["seconds_per_step"] * steps + extra
        st.info(t("About {duration} for {steps} updates ({seconds} s each, {speed} tokens/s).",
                  duration=estimate.format_duration(total), steps=steps,
                  seconds=f"{done['seconds_per_step']:.1f}", speed=f"{done['tokens_per_s']:.0f}"))
        reached = estimate.updates_within(max_minutes, done["seconds_per_step"], done.get("eval_s", 0.0))
        if reached is not None and reached < steps:
            st.caption(t("The {minutes}-minute time limit ends it sooner, after about {updates} of the {steps} "
                         "updates.", minutes=f"{max_minutes:g}", updates=reached, steps=steps))
        elif not max_minutes and total > LONG_RUN_S:
            st.caption(t("That is long for this machine. A time limit bounds it and lowers the learning rate over "
                         "that time; a run stopped by hand ends at its full rate."))
        if extra >= 1:
            st.caption(t("Included: {prepare} to find passages and load the model, {evals} for the eval passes.",
                         prepare=estimate.format_duration(done.get("prepare_s", 0.0)),
                         evals=estimate.format_duration(done.get("eval_s", 0.0))))
    elif status.state == "failed":
        st.error(t(status.error))


# ---- terminal ---------------------------------------------------------------------------------------------------
def terminal_commands(project: Project, config: TrainConfig) -> None:
    with st.expander(t("Run it from a terminal"), icon=":material/terminal:", key=K + "terminal_panel"):
        st.caption(t("Save this config as run.json; the same run then trains headless, for example on a server."))
        st.code(json.dumps(config.to_dict(), indent=2), language="json")
        st.download_button(t("Download run.json"), json.dumps(config.to_dict(), indent=2), file_name="run.json",
                           mime="application/json", key=K + "download_config")
        st.code(runs.headless_command(project, "run.json"), language="bash")
        gpus = gpu_count()
        st.caption(t("On a machine with several GPUs, the same config trains on all of them at once (data parallel: "
                     "each GPU takes a share of every batch, so the result matches a one-GPU run):")
                   + ("" if gpus > 1 else " " + t("set --num_processes to the number of GPUs.")))
        st.code(launch_command(project.name, "run.json", max(gpus, 2)), language="bash")
        st.caption(t("For a model too large for one GPU, shard it across them instead (FSDP: each GPU holds a share of "
                     "the weights, gradients and optimizer state, and the result is the same; not for QLoRA):"))
        st.code(launch_command(project.name, "run.json", max(gpus, 2), sharded=True), language="bash")


# ---- start and runs ---------------------------------------------------------------------------------------------
def start_and_runs(project: Project, recipe: Recipe, config: TrainConfig, blocked: bool) -> None:
    """Start training (one run at a time), then the run list with the chosen run's live panel."""
    active = [r for r in runs.list_runs(project) if r.status().state == "running"]
    start_button(t("Start training"), K + "start", bool(active) or blocked,
                 lambda: runs.create_run(project, config, recipe), K + "run")
    if active:
        st.caption(t("One run trains at a time; this machine is busy with {run}.", run=active[0].id))
    all_runs = runs.list_runs(project)
    if not all_runs:
        return
    st.subheader(t("Runs"))
    ids = [r.id for r in all_runs]
    if st.session_state.get(K + "run") not in ids:
        st.session_state[K + "run"] = ids[0]
    chosen = runs.get_run(project, st.selectbox(t("Run"), ids, key=K + "run"))
    st.caption(run_summary(chosen.config))
    run_panel(chosen)
    run_actions(chosen, busy=bool(active))


def run_summary(config: TrainConfig) -> str:
    return ((t(OBJECTIVES[config.objective]).split(":")[0] + " · " if config.is_preference else "")
            + t("{method} on {dataset} v{version} · {epochs} epochs · learning rate {lr}",
                method=t(METHODS[config.method]).split(":")[0], dataset=config.dataset or t("chat feedback"),
                version=config.dataset_version or "–", epochs=config.epochs, lr=config.learning_rate)
            + (" · " + t("at most {minutes} min", minutes=f"{config.max_minutes:g}") if config.max_minutes else ""))


@st.fragment(run_every=2.0)
def run_panel(chosen: runs.Run) -> None:
    """The chosen run's status, metrics and curves, redrawn every two seconds; Cancel while it trains."""
    status = chosen.status()
    events, messages = chosen.events(), chosen.messages()
    steps_seen = [e for e in events if e.get("type") == "step"]
    if status.state == "running":  # a step's progress counts a time limit too
        share = steps_seen[-1].get("progress", status.step / max(1, status.total)) if steps_seen else 0.0
        st.progress(min(1.0, share), text=t(status.message) if status.message else t("Starting"))
    elif any(e.get("type") == "time_limit" for e in messages):
        st.markdown(t("Status: **{state}** · stopped by its time limit at step {step} of {total}",
                      state=t(STATES[status.state]), step=status.step, total=status.total or "?"))
    else:
        st.markdown(t("Status: **{state}** · step {step} of {total}", state=t(STATES[status.state]),
                      step=status.step, total=status.total or "?"))
    run_metrics(status, events)
    for event in messages[-3:]:
        if event.get("type") == "report" or event.get("type") == "trainable":
            st.caption(t(event_message(event, "message")))
    if status.state == "failed" and status.error:
        st.error(t(status.error))
    if status.state == "running":
        cols = st.columns([1, 2, 3])
        if cols[0].button(t("Cancel"), key=K + "cancel", icon=":material/stop:",
                          help=t("Saves a checkpoint and stops; Resume continues from it.")):
            chosen.cancel()
            st.rerun()
        if chosen.keep_requested:
            cols[1].caption(t("Stopping at the next step to save the best adapter so far…"))
        elif cols[1].button(t("Stop and keep the adapter"), key=K + "keep", icon=":material/save:",
                            help=t("Stops at the next step and saves the best adapter so far, as if training had "
                                   "ended there.")):
            try:
                chosen.stop_and_keep()
            except StudioError as exc:
                show_error(exc)
            st.rerun()
    elif st.session_state.get(K + "was_running") == chosen.id:
        st.session_state.pop(K + "was_running")
        st.rerun()  # refresh the adapters list and buttons once the run ends
    if status.state == "running":
        st.session_state[K + "was_running"] = chosen.id


def run_metrics(status: runs.RunStatus, events: list[dict]) -> None:
    steps_seen = [e for e in events if e.get("type") == "step"]
    evals = [e for e in events if e.get("type") == "eval"]
    if not steps_seen:
        return
    last = steps_seen[-1]
    cols = st.columns(4)
    cols[0].metric(t("Training loss"), f"{last['loss']:.3f}")
    cols[1].metric(t("Eval loss"), f"{evals[-1]['eval_loss']:.3f}" if evals else "–",
                   delta=f"{evals[-1]['eval_loss'] - evals[0]['eval_loss']:+.3f}" if len(evals) > 1 else None,
                   delta_color="inverse")
    cols[2].metric(t("Tokens/s"), f"{last['tokens_per_s']:.0f}")
    cols[3].metric(t("Time left"), estimate.format_duration(last["eta_s"]) if status.state == "running" else "–")
    st.plotly_chart(loss_chart(events), key=K + "loss_chart")
    if preference_ui.has_rewards(events):
        preference_ui.metrics(steps_seen, evals)
        st.plotly_chart(preference_ui.reward_chart(events), key=K + "reward_chart")


def run_actions(chosen: runs.Run, busy: bool) -> None:
    """Resume (or start again) a stopped run; add epochs to a finished one."""
    status = chosen.status()
    if status.state in ("cancelled", "failed"):
        cols = st.columns([1, 2, 3])
        if cols[0].button(t("Resume") if status.resumable else t("Start again"), icon=":material/play_arrow:",
                          key=K + "resume", disabled=busy):
            try:
                chosen.start()
                st.rerun()
            except StudioError as exc:
                show_error(exc)
        if status.resumable and cols[1].button(
                t("Keep the adapter as it is"), icon=":material/save:", key=K + "keep_stopped", disabled=busy,
                help=t("Saves the best adapter from the checkpoint without training further.")):
            try:
                chosen.stop_and_keep()
                st.rerun()
            except StudioError as exc:
                show_error(exc)
    if status.state == "done" and status.resumable:
        cols = st.columns([1, 1, 2], vertical_alignment="bottom")
        extra = cols[0].number_input(t("More epochs"), 1, 100, 1, key=K + "extra_epochs")
        if cols[1].button(t("Add epochs"), icon=":material/add:", key=K + "add_epochs", disabled=busy):
            try:
                chosen.add_epochs(int(extra))
                st.rerun()
            except StudioError as exc:
                show_error(exc)


# ---- adapters ---------------------------------------------------------------------------------------------------
def pick_adapter(project: Project, recipe: Recipe, saved: Recipe, folder: Path) -> AdapterInfo:
    """The adapters table and the chosen adapter's actions; stops the page while there is none."""
    registry = AdapterRegistry(project)
    adapters = registry.list()
    st.subheader(t("Adapters"))
    if not adapters:
        st.caption(t("Each finished run leaves an adapter here. Attach one to the recipe to use it in Chat and "
                     "evaluation."))
        st.stop()
    rows = [{t("Adapter"): a.label, t("Method"): t(METHODS[a.method]).split(":")[0],
             t("Objective"): t(OBJECTIVES[a.objective]).split(":")[0], t("Eval loss"): a.metrics.get("eval_loss"),
             t("Steps"): a.metrics.get("steps"),
             t("Size"): estimate.format_bytes(a.manifest.get("size_bytes", 0)),
             t("Attached"): "✓" if saved.adapter == a.id else ""} for a in adapters]
    st.dataframe(rows, hide_index=True, placeholder="–", key=K + "adapters_table")
    picked = st.selectbox(t("Adapter"), [a.id for a in adapters], key=K + "adapter",
                          format_func=lambda i: registry.get(i).label)
    info = registry.get(picked)
    cols = st.columns(4)
    with cols[0]:
        attach_button(project, recipe, saved, info, folder)
    with cols[1].popover(t("Export"), icon=":material/download:"):
        export_adapter(project, info, folder)
    new_name = cols[2].text_input(t("Name"), info.label, key=K + f"name.{info.id}", label_visibility="collapsed")
    if new_name.strip() and new_name != info.label:
        registry.rename(info.id, new_name)
        st.rerun()
    with cols[3].popover(t("Delete"), icon=":material/delete:"):
        st.write(t("Delete adapter {name}? Recipes that use it will stop working until another is attached.",
                   name=info.label))
        if st.button(t("Delete for good"), type="primary", key=K + "delete"):
            registry.delete(info.id)
            st.rerun()
    return info


def attach_button(project: Project, recipe: Recipe, saved: Recipe, info: AdapterInfo, folder: Path) -> None:
    if info.is_reward:
        st.caption(t("A reward model scores answers instead of writing them: use it on the Labeling page (Rank "
                     "with reward model)."))
    elif saved.adapter == info.id:
        if st.button(t("Detach from the recipe"), icon=":material/link_off:", key=K + "detach"):
            save_draft(project, recipe.with_changes(adapter=None), note=t("Detached adapter {name}", name=info.label))
            st.rerun()
    elif st.button(t("Attach to the recipe"), type="primary", icon=":material/link:", key=K + "attach"):
        from core.models.adapters import check_base

        try:
            check_base(info, folder)
            save_draft(project, recipe.with_changes(adapter=info.id),
                       note=t("Attached adapter {name}", name=info.label))
            st.rerun()
        except StudioError as exc:
            show_error(exc)


def export_adapter(project: Project, info: AdapterInfo, folder: Path) -> None:
    """The Export popover: the adapter as a zip, or merged into the base model as a standalone folder."""
    from core.finetune.adapters import export_adapter_zip, merge_and_export

    exports = project.subdir("exports")
    exports.mkdir(parents=True, exist_ok=True)
    archive = exports / f"{info.id}-{int(info.manifest.get('created', 0))}.zip"  # new zip after more epochs
    if not archive.exists():
        export_adapter_zip(info, exports)
    st.download_button(t("Adapter only (.zip)"), archive.read_bytes(), file_name=archive.name,
                       mime="application/zip", key=K + "download_adapter",
                       help=t("Loads with PEFT (PeftModel.from_pretrained) and vLLM for LoRA."))
    if info.method not in ("prompt_tuning", "prefix_tuning") and not info.is_reward:
        if st.button(t("Merge into the model and save a folder"), key=K + "merge"):
            try:
                with st.spinner(t("Merging…")):
                    target = merge_and_export(info, folder, exports / f"{info.id}-merged")
                st.success(t("Saved a standalone model folder: {path}", path=str(target)))
            except StudioError as exc:
                show_error(exc)
        gguf_export_form(project, info, K)


# ---- base vs tuned ----------------------------------------------------------------------------------------------
def base_vs_tuned(project: Project, recipe: Recipe, info: AdapterInfo) -> None:
    """One question to the base model and to the tuned one, side by side (not for a reward model)."""
    if info.is_reward:
        return
    st.markdown("#### " + t("Base vs tuned"))
    question = st.text_input(t("Ask both models the same question"), key=K + "compare_question",
                             placeholder=t("Type a question from your domain"))
    if st.button(t("Compare"), icon=":material/compare_arrows:", key=K + "compare", disabled=not question.strip()):
        from studio.ui.trial import stream_answer

        left, right = st.columns(2)
        with left:
            st.caption(t("Base model"))
            stream_answer(project, recipe.with_changes(adapter=None), question, key=K + "base_answer")
        with right:
            st.caption(t("With {name}", name=info.label))
            stream_answer(project, recipe.with_changes(adapter=info.id), question, key=K + "tuned_answer")


# ---- the page ---------------------------------------------------------------------------------------------------
def main() -> None:
    intro()
    recipe, saved = trainable_recipe(project)
    data = pick_training_data(project)
    folder = base_folder(recipe)
    if folder is None:
        st.stop()
    shape = model_shape(str(folder))
    objective, method, qlora_ok = pick_method(data, shape)
    config = training_settings(data, objective, method, shape, recipe_retrieves(project, recipe))
    checks_block = before_you_start(project, recipe, data, config, shape)
    terminal_commands(project, config)
    start_and_runs(project, recipe, config, blocked=(method == "qlora" and not qlora_ok) or checks_block)
    adapter = pick_adapter(project, recipe, saved, folder)
    gguf_export_status(project, K)
    base_vs_tuned(project, recipe, adapter)


main()

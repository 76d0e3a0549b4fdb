"""Evaluation: every variant of the assistant (the ladder's rungs, saved recipe versions, other precisions) answers
the same eval set in the background; the scoreboard compares them, says which is enough for a target and what to
try next, shows the answers side by side and sends the failures to labeling."""

import time

import streamlit as st

from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate import advice as advising
from core.evaluate import metrics, runs, variants
from core.evaluate.judge import DEFAULT_RUBRIC
from core.evaluate.steps import ladder_steps
from core.i18n import Msg
from core.models.source import ModelSource
from core.recipe import RecipeStore, list_recipes
from studio.ui import scoreboard as board
from studio.ui.report_panel import report_buttons
from studio.ui.run_panel import background_run_panel, start_button
from studio.ui.i18n import t
from studio.ui.state import require_project, saved_recipe, show_error

project = require_project()
K = f"evaluate.{project.slug}."
STATES = {"new": Msg("not started"), "running": Msg("answering"), "done": Msg("finished"),
          "cancelled": Msg("cancelled"), "failed": Msg("stopped with an error")}
COMPARED_PRECISIONS = ("bf16", "int8", "nf4")

st.title(t("Evaluation"))
st.write(t("Ask every version of your assistant the same questions and compare the answers with the ones you "
           "expect. The scoreboard shows which step of the ladder pays off, what it costs, and what to try next."))

store = DatasetStore(project)
eval_sets = [d.name for d in store.list() if d.kind in runs.EVAL_KINDS]
kinds = {d.name: d.kind for d in store.list()}
all_runs = runs.list_eval_runs(project)
statuses = {r.id: r.status() for r in all_runs}
active = [r for r in all_runs if statuses[r.id].state == "running"]


def quantization():
    """core.models.quantize, or None in a studio that cannot load models at other precisions."""
    try:
        from core.models import quantize
    except ImportError:
        return None
    return quantize


@st.cache_resource(show_spinner=False)
def precision_support() -> dict[str, tuple[bool, Msg]]:
    """Which other precisions work on this machine, each with one sentence saying so (or why not)."""
    quantize = quantization()
    device = quantize.default_device()
    return {p: quantize.precision_support(p, device) for p in COMPARED_PRECISIONS}


# ---- 1 · the eval set -------------------------------------------------------------------------------------------

def pick_eval_set() -> tuple[str, list[dict], set | None] | None:
    st.subheader(t("1 · Questions"))
    if not eval_sets:
        st.info(t("No evaluation set yet. An evaluation set is a list of questions, each with the answer you expect "
                  "(or the tool call you expect). Import one on the Datasets page, or create one there and write "
                  "the questions on the Labeling page."))
        left, right = st.columns(2)
        with left:
            st.page_link("../pages/datasets.py", label=t("Go to Datasets"), icon=":material/dataset:")
        with right:
            st.page_link("../pages/labeling.py", label=t("Go to Labeling"), icon=":material/checklist:")
        return None
    name = st.selectbox(t("Evaluation set"), eval_sets, key=K + "dataset",
                        format_func=lambda n: n + (" · " + t("preference pairs") if kinds.get(n) == "preference" else ""))
    records, version = runs.load_eval_records(project, name)
    usable = runs.usable_records(records)
    if kinds.get(name) == "preference":
        st.caption(t("Preference pairs: their prompts are asked and the chosen answer is the reference. Turn on the "
                     "win rate under Options to see whether a preference-tuned recipe beats the one it started from."))
        usable, only_ids = pick_heldout(name, usable)
    else:
        only_ids = None
    applicable = metrics.applicable_metrics(usable)
    scored = [m for m in applicable if metrics.METRICS[m].kind != "cost"]
    st.caption(t("Version {version} · {count} questions (rejected and empty ones are left out).", version=version,
                 count=len(usable)))
    if not usable:
        st.warning(t("This evaluation set has no usable questions yet; add some on the Labeling page."))
        st.page_link("../pages/labeling.py", label=t("Go to Labeling"), icon=":material/checklist:")
        return None
    if scored:
        st.markdown(t("What can be measured: {metrics}, plus the time and tokens each answer costs.",
                      metrics=", ".join(board.metric_label(m) for m in scored)))
    else:
        st.warning(t("These questions have no reference answers and no expected tool calls, so only the time and "
                     "tokens each answer costs can be measured (and a judge's grade, if you turn the judge on under "
                     "Options). Add reference answers on the Labeling page to score correctness."))
    return name, usable, only_ids


def pick_heldout(dataset: str, usable: list[dict]) -> tuple[list[dict], set | None]:
    """For a preference dataset: optionally only the prompts a preference-tuned adapter did not train on."""
    from core.evaluate.win_rate import heldout_ids
    from core.finetune.adapters import train_config
    from core.models.adapters import AdapterRegistry

    tuned = [a for a in AdapterRegistry(project).list() if a.objective in variants.PREFERENCE_TUNED
             and train_config(a).dataset == dataset]
    if not tuned:
        return usable, None
    held = heldout_ids(project, tuned[0].id)
    if held is None:
        st.warning(t("Adapter {name} trained on every pair of this dataset, so its win rate here is measured on "
                     "prompts it has seen.", name=tuned[0].label))
        return usable, None
    if st.toggle(t("Only the {count} prompts held out from training", count=len(held)), value=True,
                 key=K + "heldout", help=t("Adapter {name} did not train on these.", name=tuned[0].label)):
        return [r for r in usable if r["id"] in held], held
    return usable, None


# ---- 2 · variants -----------------------------------------------------------------------------------------------

def pick_variants() -> list[variants.Variant]:
    st.subheader(t("2 · What to compare"))
    recipe, version = saved_recipe(project)
    chosen: list[variants.Variant] = []
    if st.checkbox(t("Ladder from the current recipe"), value=True, key=K + "ladder",
                   help=t("Five variants built from the saved recipe, each adding one step: the prompt alone, then "
                          "examples, then documents, then a fine-tuned adapter, then adapter and documents.")):
        st.caption(t("Built from recipe {name}, {saved}.", name=recipe.name,
                     saved=t("version {number}", number=version) if version else t("not saved yet")))
        rungs = variants.ladder(project, recipe)
        with st.container(border=True):
            for rung in rungs:
                if rung.ready:
                    st.markdown(":material/check_circle: "
                                + t("**{label}** — ready", label=board.variant_label(rung)))
                else:
                    board.setup_link(rung)
        chosen += rungs
    chosen += pick_saved_versions()
    chosen += pick_exports(recipe)
    chosen += pick_precisions([v for v in chosen if v.ready])
    unique = {}
    for variant in chosen:
        unique.setdefault(variant.key, variant)
    return list(unique.values())


def pick_saved_versions() -> list[variants.Variant]:
    notes = {(name, v.number): v.note for name in list_recipes(project)
             for v in reversed(RecipeStore(project, name).versions())}
    options = list(notes)
    if not options:
        return []
    picked = st.multiselect(t("Saved recipe versions"), options, key=K + "versions",
                            format_func=lambda o: f"{o[0]} v{o[1]}" + (f" · {notes[o]}" if notes.get(o) else ""),
                            help=t("Add earlier versions of a recipe to see whether a change helped."),
                            placeholder=t("None"))
    return [variants.saved_recipe(project, name, number) for name, number in picked]


def pick_exports(recipe) -> list[variants.Variant]:
    exports = variants.merged_exports(project)
    if not exports:
        return []
    picked = st.multiselect(t("Exports (export parity)"), exports, key=K + "exports",
                            format_func=lambda e: t("{folder} (from adapter {adapter})", folder=e.name,
                                                    adapter=e.adapter or t("none")),
                            help=t("Scores an exported model (a merged folder or a GGUF file) and base + adapter side "
                                   "by side: with greedy decoding their answers should match; a gap means the export "
                                   "lost something (GGUF files quantized below 16 bits drift a little)."),
                            placeholder=t("None"))
    return [variant for export in picked for variant in variants.export_parity(project, recipe, export)]


def pick_precisions(ready: list[variants.Variant]) -> list[variants.Variant]:
    local = [v for v in ready if v.recipe.model.kind != "openai"]  # an endpoint's precision is its server's
    quantize = quantization()
    if quantize is None or not local or not st.toggle(
            t("Compare precisions"), key=K + "precisions",
            help=t("Answer with the same variant loaded with smaller numbers: less memory, sometimes faster, "
                   "sometimes less accurate.")):
        return []
    support = precision_support()
    keys = [v.key for v in local]
    by_key = {v.key: v for v in local}
    base = by_key[st.selectbox(t("Variant to compare"), keys, key=K + "precision_base",
                               format_func=lambda k: board.variant_label(by_key[k]))]
    found = []
    for column, precision in zip(st.columns(len(COMPARED_PRECISIONS)), COMPARED_PRECISIONS):
        works, reason = support[precision]
        with column:
            if st.checkbox(t(quantize.PRECISION_LABELS[precision]), key=K + "precision." + precision,
                           disabled=not works, help=t(reason)) and works:
                found.append(variants.at_precision(base, precision))
            if not works:
                st.caption(t(reason))
    return found


# ---- 3 · options ------------------------------------------------------------------------------------------------

def pick_win_rate(chosen_keys: dict[str, str], judge_on: bool) -> tuple[str, str]:
    """('reward:<id>' | 'judge' | '', the compared variant's key)."""
    from core.finetune.reward import reward_models

    judges = {f"reward:{m.id}": t("reward model {name}", name=m.label) for m in reward_models(project)}
    if judge_on:
        judges["judge"] = t("the LLM judge")
    if not st.toggle(t("Win rate"), key=K + "win", disabled=not judges or len(chosen_keys) < 2,
                     help=t("For each question, which answer is better: each variant's or the compared variant's? "
                            "Judged by a reward model (Fine-tune page, reward model objective) or the LLM judge.")):
        return "", ""
    cols = st.columns(2)
    win_judge = cols[0].selectbox(t("Judged by"), list(judges), format_func=judges.get, key=K + "win_judge")
    keys = list(chosen_keys)
    parents = [k for k in (variants.RUNGS[1], variants.RUNGS[0]) if k in keys]  # few-shot, else prompt alone
    default = keys.index(parents[0]) if variants.PREFERENCE_RUNG in keys and parents else 0
    win_parent = cols[1].selectbox(t("Against"), keys, index=default, format_func=chosen_keys.get,
                                   key=K + "win_parent",
                                   help=t("The preference-tuned rung's parent is the few-shot rung (or the prompt "
                                          "alone without examples): the same recipe without the adapter."))
    return win_judge, win_parent


def pick_options(questions: int, chosen_keys: dict[str, str]) -> runs.EvalOptions | None:
    with st.expander(t("Options"), icon=":material/tune:", key=K + "options_panel"):
        defaults = runs.EvalOptions()
        cols = st.columns(4)
        semantic = cols[0].toggle(t("Meaning similarity"), value=True, key=K + "semantic",
                                  help=t("Also compare the meaning of each answer with the reference, with the "
                                         "embedding model (slower, but kinder to rephrased answers)."))
        k = cols[1].number_input(t("Passages checked for Hit@k"), 1, 50, defaults.k, key=K + "k",
                                 help=t("A retrieval hit counts when a gold passage is among the first k found."))
        batch = cols[2].number_input(t("Questions at once"), 1, 64, defaults.batch_size, key=K + "batch",
                                     help=t("How many questions a local model answers together: faster, but needs "
                                            "more memory. Lower it if the evaluation runs out of memory."))
        limit = None
        if cols[3].toggle(t("Quick look"), key=K + "quick", help=t("Only the first questions of the set.")):
            limit = int(cols[3].number_input(t("Number of questions"), 1, max(1, questions), min(10, questions),
                                             key=K + "limit"))
        judge = None
        rubric = ""
        if st.toggle(t("LLM as judge"), key=K + "judge",
                     help=t("A larger model behind an OpenAI-compatible endpoint grades each answer from 1 to 5 "
                            "with your rubric. Off by default: it needs an endpoint and costs a call per answer.")):
            cols = st.columns(3)
            location = cols[0].text_input(t("Endpoint base URL"), key=K + "judge_url",
                                          placeholder="http://localhost:11434/v1")
            model_name = cols[1].text_input(t("Model name"), key=K + "judge_model", placeholder="llama3.1:8b")
            key_env = cols[2].text_input(t("API key environment variable"), key=K + "judge_key",
                                         placeholder="OPENAI_API_KEY",
                                         help=t("The name of the variable that holds the key, never the key "
                                                "itself; leave empty for a local server."))
            rubric = st.text_area(t("Rubric"), DEFAULT_RUBRIC, key=K + "rubric", height=100,
                                  help=t("How the judge should grade; the question, the reference and the answer "
                                         "are added after it."))
            try:
                judge = ModelSource(kind="openai", location=location.strip(), model_name=model_name.strip(),
                                    api_key_env=key_env.strip()).to_dict()
            except StudioError as exc:
                show_error(exc)
                return None
        win_judge, win_parent = pick_win_rate(chosen_keys, judge is not None)
        try:
            return runs.EvalOptions(semantic=semantic, k=int(k), limit=limit, judge_model=judge, judge_rubric=rubric,
                                    batch_size=int(batch), win_judge=win_judge, win_parent=win_parent)
        except StudioError as exc:
            show_error(exc)
            return None


# ---- 4 · run ----------------------------------------------------------------------------------------------------

def run_title(run: runs.EvalRun) -> str:
    spec = run.spec
    return t("{date} · {dataset} · {count} variants", date=time.strftime("%Y-%m-%d %H:%M",
                                                                        time.localtime(spec["created"])),
             dataset=spec["dataset"], count=len(spec["variants"]))


def run_button(dataset: str, chosen: list[variants.Variant], options: runs.EvalOptions | None,
               only_ids: set | None) -> None:
    ready = [v for v in chosen if v.ready]
    st.caption(t("{ready} of {count} variants are set up and will answer.", ready=len(ready), count=len(chosen)))
    start_button(t("Run evaluation"), K + "start", bool(active) or not ready or options is None,
                 lambda: runs.create_eval_run(project, dataset, chosen, options, only_ids=only_ids), K + "run")
    if active:
        st.caption(t("One evaluation runs at a time; the run {run} is answering now (its progress is under "
                     "Results).", run=run_title(active[0])))


picked = pick_eval_set()
if picked is not None:
    dataset, usable, only_ids = picked
    chosen = pick_variants()
    options = pick_options(len(usable), {v.key: board.variant_label(v) for v in chosen if v.ready})
    run_button(dataset, chosen, options, only_ids)

if not all_runs:
    st.caption(t("No evaluation yet: pick an evaluation set and what to compare, then press Run evaluation."))
    st.stop()


# ---- the chosen run: progress, then the scoreboard --------------------------------------------------------------

st.divider()
st.subheader(t("Results"))
ids = [r.id for r in all_runs]
titles = {r.id: run_title(r) for r in all_runs}
if st.session_state.get(K + "run") not in ids:
    st.session_state[K + "run"] = active[0].id if active else ids[0]
chosen_run = runs.get_eval_run(project, st.selectbox(t("Evaluation run"), ids, key=K + "run",
                                                     format_func=titles.get))


@st.fragment(run_every=2.0 if statuses[chosen_run.id].state == "running" else None)
def progress_panel() -> None:
    status = chosen_run.status()
    state = t(STATES[status.state])
    background_run_panel(
        chosen_run, K, status.state, status.answered, status.total,
        progress_text=t("{done} of {total} answers", done=status.answered, total=status.total),
        status_text=t("Status: **{state}** · {done} of {total} answers", state=state, done=status.answered,
                      total=status.total),
        cancel_help=t("Stops after the current answer; the answers so far are kept."),
        continue_help=t("Answers the questions that are left; answers already given are reused."), busy=bool(active))

progress_panel()

run_variants = chosen_run.variants
summary = chosen_run.summary()
rows = chosen_run.results()
if not rows:
    st.caption(t("No answers yet."))
    st.stop()

# ---- scoreboard -------------------------------------------------------------------------------------------------
spec = chosen_run.spec
st.markdown("#### " + t("Scoreboard"))
st.caption(t("{dataset} version {version} · {count} questions · each bar is the average over the questions a "
             "variant answered.", dataset=spec["dataset"], version=spec["dataset_version"], count=spec["questions"]))
scores = board.score_chart(run_variants, summary)
if scores is not None:
    st.plotly_chart(scores, key=K + "score_chart")
else:
    st.info(t("Nothing to score against in this set: only the costs below were measured."))
costs = board.cost_chart(run_variants, summary)
if costs is not None:
    st.caption(t("What each variant costs: time and tokens per answer, memory (lower is better)"))
    st.plotly_chart(costs, key=K + "cost_chart")
frame, config = board.summary_table(run_variants, summary,
                                    {key: found.get("engine") for key, found in chosen_run.models().items()})
st.dataframe(frame, hide_index=True, column_config=config, placeholder="–", key=K + "summary_table")
board.missing_setup_links(run_variants)
mismatch = advising.language_mismatch(rows)
if mismatch is not None:
    st.warning(t(mismatch))
report_buttons(project, chosen_run, *saved_recipe(project), K, metric=st.session_state.get(K + "metric"))

# ---- advice -----------------------------------------------------------------------------------------------------
st.markdown("#### " + t("Which variant is enough?"))
names = board.score_metrics(summary)
if not names:
    st.stop()
answer_metrics = [n for n in names if metrics.METRICS[n].kind == "answer"]
default = "token_f1" if "token_f1" in names else (answer_metrics or names)[0]
cols = st.columns(2)
metric = cols[0].selectbox(t("Judge by"), names, index=names.index(default), key=K + "metric",
                           format_func=board.metric_label, help=t("The score that matters most to you."))
target = cols[1].slider(t("Target"), 0.0, 1.0, 0.6, 0.05, key=K + "target",
                        help=t("The score an answer must reach to be good enough."))
st.caption(t(metrics.METRICS[metric].help))
tip = advising.advise(run_variants, summary, metric, target)
labels = {v.label: board.variant_label(v) for v in run_variants}
shown = t(tip.message, label=labels.get(tip.message.params.get("label"), tip.message.params.get("label")),
          metric=board.metric_label(metric))
(st.success if tip.best else st.warning)(shown)
if tip.next_steps:
    st.markdown(t("What to try next:") + "\n" + "\n".join(f"- {t(step)}" for step in tip.next_steps))
ready_keys = [v.key for v in run_variants if v.ready]
steps = ladder_steps(rows, ready_keys, metric)
if steps:
    st.markdown("##### " + t("Each step and its noise"))
    step_frame, step_config = board.steps_table(steps, run_variants)
    st.dataframe(step_frame, hide_index=True, column_config=step_config, placeholder="–", key=K + "steps_table")
    st.caption(t("A step is real when its whole 95% interval is above (or below) zero; otherwise more questions "
                 "are needed to tell it from chance."))
trade_off = board.trade_off_chart(run_variants, summary, metric, target)
if trade_off is not None:
    st.caption(t("Quality against cost: up is better, left is faster; a bigger dot takes more memory."))
    st.plotly_chart(trade_off, key=K + "trade_off_chart")

# ---- answers side by side ---------------------------------------------------------------------------------------
st.markdown("#### " + t("Answers side by side"))
answered = [v for v in run_variants if v.ready and v.key in summary]
by_key = {v.key: v for v in answered}
cols = st.columns([1, 2], vertical_alignment="bottom")
only_failures = cols[0].toggle(t("Show only failures"), key=K + "only_failures")
failing_key = cols[1].selectbox(t("Failures of"), list(by_key), key=K + "failing",
                                format_func=lambda k: board.variant_label(by_key[k]),
                                help=t("A question fails when this variant's score is below the target."))
failed = advising.failures(rows, failing_key, metric, target) if failing_key else []
only = {r["record_id"] for r in failed} if only_failures else None
examples, example_config = board.examples_table(rows, answered, spec["record_ids"], metric, only)
st.caption(t("{failed} of {count} questions score below {target} on {metric} for {variant}.", failed=len(failed),
             count=summary.get(failing_key, {}).get("answered", 0), target=f"{target:.2f}",
             metric=board.metric_label(metric), variant=board.variant_label(by_key[failing_key]))
           if failing_key else "")
st.dataframe(examples, hide_index=True, column_config=example_config, row_height=72, placeholder="–",
             key=K + "examples")
board.one_question_in_full(rows, answered, [i for i in spec["record_ids"] if only is None or i in only], metric,
                           key=K + "in_full")

cols = st.columns(3)
if cols[0].button(t("Send failures to labeling"), icon=":material/checklist:", key=K + "send", disabled=not failed,
                  help=t("Adds the failed questions, with the reference as the draft answer, to the "
                         "'{name}' dataset for review.", name=advising.FAILURES_DATASET)):
    try:
        added = advising.send_to_labeling(project, failed, board.variant_label(by_key[failing_key]))
        st.session_state[K + "sent"] = (chosen_run.id, failing_key, added)
    except StudioError as exc:
        show_error(exc)
sent = st.session_state.get(K + "sent")
if sent and sent[:2] == (chosen_run.id, failing_key):
    added = sent[2]
    if added:
        st.success(t("Added {count} question(s) to the '{name}' dataset for review.", count=added,
                     name=advising.FAILURES_DATASET))
    else:
        st.info(t("Nothing new to add: these questions are already waiting for review or have no reference answer."))
    st.session_state[f"labeling.{project.slug}.dataset"] = advising.FAILURES_DATASET  # opens there
    st.page_link("../pages/labeling.py", label=t("Review them on the Labeling page"), icon=":material/checklist:")
cols[1].download_button(t("Download answers (CSV)"), board.results_csv(rows, run_variants),
                        file_name=f"eval-{chosen_run.id}.csv", mime="text/csv", key=K + "download_csv")
cols[2].download_button(t("Download scores (JSON)"), board.summary_json(chosen_run, run_variants, summary),
                        file_name=f"eval-{chosen_run.id}.json", mime="application/json", key=K + "download_json")

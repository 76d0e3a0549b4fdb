"""Rung 5 · Retrieval optimization: measure how well retrieval finds the passages that answer labeled questions,
try many retrieval settings in a background sweep, compare them, and make the winner the recipe's settings."""

import time

import streamlit as st

from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate.ranks import tied_ranks, tied_with_best
from core.evaluate.sweep import DEFAULT_METRIC, METRICS, SweepGrid, SweepRun, create_sweep, get_sweep, list_sweeps
from core.i18n import Msg
from core.rag import queries
from core.rag.chunking import STRATEGIES, ChunkingConfig
from core.rag.embedders import available_embedders
from core.rag.kb import DEFAULT_KB, KnowledgeBase, list_knowledge_bases
from core.rag.retriever import MODES
from studio.ui import sweep_apply
from studio.ui.run_panel import background_run_panel, start_button
from studio.ui import sweep_view as view
from studio.ui.i18n import t
from studio.ui.model_panel import model_ready, recipe_backend
from studio.ui.state import require_project, saved_recipe, show_error

project = require_project()
slug = project.slug
K = f"retrieval_opt.{slug}."
STATES = {"new": Msg("not started"), "running": Msg("running"), "done": Msg("finished"),
          "cancelled": Msg("cancelled"), "failed": Msg("stopped with an error")}
SIZE_CHOICES = (64, 100, 128, 200, 256, 300, 400, 512)
RRF_CHOICES = (10, 20, 30, 60, 100)
LARGE_GRID = 200           # settings
LARGE_MODEL_GRID = 40      # settings that ask the recipe's model

st.title(t("5 · Retrieval optimization"))
st.write(t("Which retrieval settings work best depends on your documents, so measure instead of guessing: label "
           "questions with the passages that answer them, try many settings at once, and keep the winner."))

recipe, version = saved_recipe(project)
store = DatasetStore(project)
names = list_knowledge_bases(project) or [DEFAULT_KB]
kb_name = st.selectbox(t("Knowledge base"), names, key=K + "kb", index=names.index(recipe.retriever.knowledge_base)
                       if recipe.retriever.knowledge_base in names else 0)
kb = KnowledgeBase(project, kb_name)
has_documents = bool(kb.documents())
sweeps = list_sweeps(project)
statuses = {r.id: r.status() for r in sweeps}
active = [r for r in sweeps if statuses[r.id].state == "running"]


def labeling_link(dataset: str, key: str) -> None:
    """A button to the Labeling page, opened on `dataset`."""
    if st.button(t("Review them on the Labeling page"), icon=":material/checklist:", key=K + key + dataset):
        st.session_state[f"labeling.{slug}.dataset"] = dataset
        st.switch_page("../pages/labeling.py")


# ---- 1 · labeled questions ----------------------------------------------------------------------------------------

def query_counts() -> dict[str, tuple[int, int, int]]:
    """Per eval dataset: usable retrieval questions, how many of them are judged by their reference answers, and
    generated questions still waiting for review."""
    found = {}
    for info in store.list():
        if info.kind != "eval":
            continue
        records, _ = store.load(info.name)
        waiting = sum(1 for r in records if r.get("suggestion") and r.get("status") not in ("accepted", "rejected"))
        usable = queries.queries_from_records(records)
        found[info.name] = (len(usable), sum(1 for q in usable if q.answers), waiting)
    return found


def explain_ways() -> None:
    st.info(t("No labeled questions yet. A sweep needs questions for which you know where the answer is: the "
              "passages or documents that answer them, or a short answer to look for. There are three ways to get "
              "them:"))
    st.markdown(t("1. **Mark supporting passages** on the Retrieval test page: search a question, tick the passages "
                  "that answer it and save."))
    st.page_link("../pages/retrieval_test.py", label=t("Go to Retrieval test"), icon=":material/search:")
    st.markdown(t("2. **An evaluation set**: questions with short reference answers (a passage that holds the answer "
                  "counts as finding it), or questions that name their gold documents (a gold_ids column; the "
                  "sample project's 'eval' set has one). Import it on the Datasets page."))
    st.page_link("../pages/datasets.py", label=t("Go to Datasets"), icon=":material/dataset:")
    st.markdown(t("3. **Generate questions** below: the recipe's model writes a question for random passages. They "
                  "are suggestions: review them on the Labeling page before they count."))


def pick_queries() -> tuple[str, int] | None:
    st.subheader(t("1 · Labeled questions"))
    counts = query_counts()
    usable = [name for name, (count, _, _) in counts.items() if count]
    chosen = None
    if not usable:
        explain_ways()
    else:
        # Marked passages and documents measure more surely than answers found in passages: such a set comes first.
        default = queries.DEFAULT_DATASET if queries.DEFAULT_DATASET in usable else \
            max(usable, key=lambda n: counts[n][0] - counts[n][1])
        if st.session_state.get(K + "queries") not in usable:
            st.session_state[K + "queries"] = default
        name = st.selectbox(t("Questions"), usable, key=K + "queries",
                            format_func=lambda n: t("{name} · {count} questions", name=n, count=counts[n][0]),
                            help=t("Evaluation sets with questions that name their gold passages or documents, "
                                   "or that have short reference answers. Rejected questions and unreviewed "
                                   "suggestions are left out."))
        st.caption(t("{count} usable questions in '{name}'.", count=counts[name][0], name=name))
        if counts[name][1]:
            st.caption(t("{count} of them name no passage or document: a passage that holds one of their reference "
                         "answers (word for word) counts as finding the answer. Marked passages are a surer "
                         "measure.", count=counts[name][1]))
        chosen = (name, counts[name][0])
    for name, (_, _, waiting) in counts.items():
        if waiting:
            st.caption(t("{count} generated question(s) in '{name}' wait for review.", count=waiting, name=name))
            labeling_link(name, "review.")
    generate_panel(expanded=not usable)
    return chosen


def generate_panel(expanded: bool) -> None:
    with st.expander(t("Generate questions with the recipe's model"), icon=":material/auto_awesome:",
                     expanded=expanded, key=K + "generate_panel"):
        st.caption(t("Picks random passages of '{kb}' and asks the model for a question each passage answers. The "
                     "questions are suggestions: they count once you accept them on the Labeling page.", kb=kb_name))
        cols = st.columns([1, 2], vertical_alignment="bottom")
        count = cols[0].number_input(t("How many questions"), 1, 100, 10, key=K + "generate_n")
        target = cols[1].text_input(t("Into the dataset"), queries.DEFAULT_DATASET, key=K + "generate_into")
        if model_ready(recipe.model, key=K + "model") and st.button(
                t("Generate questions"), icon=":material/auto_awesome:", key=K + "generate"):
            generate(int(count), target.strip() or queries.DEFAULT_DATASET)
        done = st.session_state.get(K + "generated")
        if done:
            name, made = done
            st.success(t("{count} question(s) written into '{name}'. Review them before they count.", count=made,
                         name=name))
            labeling_link(name, "review_generated.")


def generate(count: int, target: str) -> None:
    backend = recipe_backend(project, recipe, key=K + "model")
    if backend is None:
        return
    existing = len(store.load(target)[0]) if store.exists(target) else 0
    with st.status(t("Writing questions…"), expanded=True) as box:
        bar = st.progress(0.0)
        try:
            made = queries.generate_queries(project, kb_name, backend, recipe, n=count, seed=existing,
                                            progress=lambda share, message: bar.progress(min(share, 1.0),
                                                                                         text=t(message)),
                                            dataset=target)
        except Exception as exc:
            box.update(label=t("No questions were written."), state="error")
            show_error(exc)
            return
        box.update(label=t("Done"), state="complete")
    st.session_state[K + "generated"] = (target, len(made))
    st.rerun()


# ---- 2 · settings to try ------------------------------------------------------------------------------------------

def with_current(choices, current) -> list:
    return sorted({*choices, current})


def pick_chunkings() -> list[ChunkingConfig] | None:
    current = kb.chunking()
    st.markdown("**" + t("How documents are cut into passages") + "**")
    cols = st.columns(3)
    strategies = cols[0].multiselect(t("Strategy"), STRATEGIES, default=[current.strategy], key=K + "strategies",
                                     format_func=lambda s: t(view.STRATEGY_LABELS[s]))
    sizes = cols[1].multiselect(t("Passage sizes (tokens)"), with_current(SIZE_CHOICES, current.chunk_tokens),
                                default=[current.chunk_tokens], key=K + "sizes",
                                help=t("The embedder reads at most about 254 word pieces of a passage; the end of a "
                                       "longer one cannot be found by meaning."))
    overlap = cols[2].number_input(t("Overlap (tokens)"), 0, 256, current.overlap_tokens, 8, key=K + "overlap",
                                   help=t("At most half a passage: smaller passages get a smaller overlap."))
    if not strategies or not sizes:
        st.warning(t("Pick at least one strategy and one passage size."))
        return None
    st.caption(t("The knowledge base now cuts with: {setting}. Every other way is tried in a temporary index; "
                 "vectors already computed are reused.", setting=view.chunking_label(current.to_dict())))
    return [ChunkingConfig(s, int(size), min(int(overlap), int(size) // 2)) for s in strategies for size in sizes]


def pick_rerankers() -> list[str]:
    st.markdown("**" + t("How hybrid results are ordered") + "**")
    local = recipe.model.kind != "openai"
    cols = st.columns(3)
    chosen = []
    for column, name, default in zip(cols, ("rrf", "linear", "llm"), (True, False, False)):
        disabled = name == "llm" and not local
        if column.checkbox(t(view.ORDER_LABELS[name]), value=default, key=K + "reranker." + name, disabled=disabled,
                           help=t("The recipe's model reads the first 10 passages and puts first those the question "
                                  "most likely asks about (any search; about two seconds per question on a CPU).") if name == "llm" else None) and not disabled:
            chosen.append(name)
    if not local:
        cols[2].caption(t("The model reranker needs a model that runs on this machine; the recipe uses an endpoint. "
                          "Leave the model reranker out or pick a local model."))
    return chosen


def pick_grid() -> SweepGrid | None:
    st.subheader(t("2 · Settings to try"))
    settings = recipe.retriever
    with st.container(border=True):
        chunkings = pick_chunkings()
        st.markdown("**" + t("Search") + "**")
        cols = st.columns(3)
        modes = cols[0].multiselect(t("Search by"), list(MODES), default=list(MODES), key=K + "modes",
                                    format_func=view.mode_label)
        ks = cols[1].multiselect(t("Passages per question (k)"), list(range(1, 21)),
                                 default=sorted({2, 3, 5, settings.k}), key=K + "ks",
                                 help=t("A larger k finds more but puts more text in the prompt; ties go to the "
                                        "smaller k."))
        rrf_ks = cols[2].multiselect(t("Fusion constants (hybrid)"), with_current(RRF_CHOICES, settings.rrf_k),
                                     default=[settings.rrf_k], key=K + "rrf_ks",
                                     help=t("Reciprocal rank fusion adds 1 / (constant + rank) from each search: a "
                                            "small constant trusts the first results of each search more."))
        rerankers = pick_rerankers()
        own = kb.manifest()["embedder"]
        embedders = available_embedders() or [own]
        cols = st.columns(3)
        chosen_embedders = cols[0].multiselect(
            t("Embedders"), embedders, default=[own] if own in embedders else embedders[:1], key=K + "embedders",
            help=t("Only the knowledge base's own embedder can be applied to the recipe for now."))
        rewrite = cols[1].toggle(t("Also try rewriting the question"), key=K + "rewrite",
                                 help=t("The recipe's model first turns each question into search keywords for the "
                                        "keyword search. Every setting is tried with and without."))
        similarity = cols[2].slider(t("Minimum similarity"), 0.0, 0.9, float(settings.min_similarity), 0.05,
                                    key=K + "min", help=t("Passages less similar to the question are left out, as "
                                                          "the assistant does. 0 measures the ranking alone."))
    if chunkings is None:
        return None
    if not rerankers:
        st.warning(t("Pick at least one way to order the passages."))
        return None
    try:
        return SweepGrid(chunkings=chunkings, modes=modes, ks=ks, rrf_ks=rrf_ks, rerankers=rerankers,
                         embedders=chosen_embedders, query_rewrite=rewrite, min_similarity=similarity)
    except StudioError as exc:
        show_error(exc)
        return None


def start_panel(picked: tuple[str, int] | None, grid: SweepGrid | None) -> None:
    st.subheader(t("3 · Run"))
    if grid is not None:
        count = len(grid.configs(kb.chunking()))
        questions = picked[1] if picked else 0
        st.caption(t("This grid makes {count} settings, each tried on {questions} questions; the documents are cut "
                     "{cuts} way(s).", count=count, questions=questions,
                     cuts=len(grid.chunkings) * len(grid.embedders) * (2 if grid.query_rewrite else 1)))
        if count > LARGE_GRID or (grid.needs_model and count > LARGE_MODEL_GRID):
            st.warning(t("This is a large sweep: it can take a long time, especially when the model reranks or "
                         "rewrites. Pick fewer values, or start it and come back later: it runs in the background."))
    start_button(t("Start the sweep"), K + "start", bool(active) or grid is None or picked is None,
                 lambda: create_sweep(project, picked[0], grid, kb=kb_name), K + "sweep")
    if active:
        st.caption(t("One sweep runs at a time; {sweep} is running now.", sweep=active[0].id))


if has_documents:
    picked = pick_queries()
    grid = pick_grid()
    start_panel(picked, grid)
else:
    st.info(t("The knowledge base '{name}' has no indexed documents yet; index documents first.", name=kb_name))
    st.page_link("../pages/retriever.py", label=t("Add documents on the Retriever page"), icon=":material/upload:")

if not sweeps:
    st.caption(t("No sweep yet: pick labeled questions and the settings to try, then press Start the sweep."))
    st.stop()


# ---- the chosen sweep: progress, then the results -----------------------------------------------------------------

def sweep_title(run: SweepRun) -> str:
    spec = run.spec
    return t("{date} · {kb} · {dataset} · {count} settings",
             date=time.strftime("%Y-%m-%d %H:%M", time.localtime(spec["created"])), kb=spec["kb"]["name"],
             dataset=spec["queries"]["dataset"], count=len(spec["configs"]))


st.divider()
st.subheader(t("Results"))
ids = [r.id for r in sweeps]
if st.session_state.get(K + "sweep") not in ids:
    st.session_state[K + "sweep"] = active[0].id if active else ids[0]
titles = {r.id: sweep_title(r) for r in sweeps}
chosen = get_sweep(project, st.selectbox(t("Sweep"), ids, key=K + "sweep", format_func=titles.get))


@st.fragment(run_every=2.0 if statuses[chosen.id].state == "running" else None)
def progress_panel() -> None:
    status = chosen.status()
    background_run_panel(
        chosen, K, status.state, status.done, status.total,
        progress_text=t("{done} of {total} settings scored", done=status.done, total=status.total),
        status_text=t("Status: **{state}** · {done} of {total} settings scored", state=t(STATES[status.state]),
                      done=status.done, total=status.total),
        cancel_help=t("Stops after the current setting; the settings scored so far are kept."),
        continue_help=t("Scores the settings that are left; the ones already scored are kept."), busy=bool(active))

progress_panel()
spec = chosen.spec
st.caption(t("Knowledge base '{kb}' (table version {version}) · questions '{dataset}' version {queries_version} "
             "({count}) · minimum similarity {similarity}", kb=spec["kb"]["name"], version=spec["kb"]["table_version"],
             dataset=spec["queries"]["dataset"], queries_version=spec["queries"]["version"],
             count=spec["queries"]["count"], similarity=spec.get("min_similarity")))
metric = st.selectbox(t("Rank by"), list(METRICS), index=list(METRICS).index(DEFAULT_METRIC), key=K + "metric",
                      format_func=view.metric_label)
st.caption(t(view.METRIC_HELP[metric]))
rows = chosen.table(metric)
if not rows:
    st.caption(t("No setting scored yet."))
    st.stop()
results = {r.key: r for r in chosen.results()}
by_key = {row["key"]: row for row in rows}
several_embedders = view.varies(rows, "embedder")

# ---- the winner ---------------------------------------------------------------------------------------------------
best = rows[0]
scores = [row[metric] for row in rows]
ranks, tied = tied_ranks(scores), tied_with_best(scores)
st.markdown("#### " + t("Best setting"))
if tied == len(rows) > 1:
    st.info(t("All {count} settings score {value} on {metric}: these questions are too easy to tell the settings "
              "apart. Label harder questions (ones answered by one specific passage) or rank by another measure.",
              count=len(rows), value=f"{best[metric]:.2f}", metric=view.metric_label(metric)))
elif tied > 1:
    st.success(t("{count} settings tie for the best {metric} ({value}); the first of them, **{setting}**, is "
                 "shown.", count=tied, metric=view.metric_label(metric), value=f"{best[metric]:.2f}",
                 setting=view.setting_label(best, several_embedders)))
else:
    st.success(t("**{setting}** finds the answer best: {metric} {value}.", metric=view.metric_label(metric),
                 setting=view.setting_label(best, several_embedders), value=f"{best[metric]:.2f}"))
cols = st.columns([1, 2])
cols[0].markdown(view.settings_markdown(best))
with cols[1]:
    view.show_metrics(best, metric)
current = recipe.retriever
same = next((r for r in rows if (r["mode"], r["k"], r["reranker"], r["query_rewrite"], r["embedder"]) ==
             (current.mode, current.k, current.reranker, current.query_rewrite, spec["kb"]["embedder"])
             and (r["rrf_k"] == current.rrf_k or view.ordering(r) != "rrf")
             and {k: r[k] for k in ("strategy", "chunk_tokens", "overlap_tokens")} == spec["kb"]["chunking"]), None)
if same is not None:
    rank = ranks[rows.index(same)]
    sharing = sum(1 for r in ranks if r == rank)
    st.caption(t("The recipe's current settings score {value} (rank {rank} of {count}).",
                 value=f"{same[metric]:.2f}", rank=rank, count=len(rows)) if sharing == 1 else
               t("The recipe's current settings score {value} (rank {rank} of {count}, tied with {others} other "
                 "setting(s)).", value=f"{same[metric]:.2f}", rank=rank, count=len(rows), others=sharing - 1))

# ---- table and charts ---------------------------------------------------------------------------------------------
st.markdown("#### " + t("Every setting, best first"))
frame, config = view.ranked_table(rows, metric, ranks)
st.dataframe(frame, hide_index=True, column_config=config, placeholder="–", key=K + "table")
heat = view.heatmap(rows, metric)
if heat is not None:
    st.caption(t("Each cell: the best {metric} among the settings with that way of cutting, search and k.",
                 metric=view.metric_label(metric)))
    st.plotly_chart(heat, key=K + "heatmap")
lines = view.parallel_chart(rows, metric)
if lines is not None:
    st.caption(t("One line per setting, from its settings to its {metric}; drag along an axis to filter.",
                 metric=view.metric_label(metric)))
    st.plotly_chart(lines, key=K + "parallel")


def row_label(key: str) -> str:
    row = by_key[key]
    return f"{rows.index(row) + 1}. {view.setting_label(row, several_embedders)} · {row[metric]:.2f}"


# ---- per question -------------------------------------------------------------------------------------------------
st.markdown("#### " + t("Questions missed"))
cols = st.columns([3, 1], vertical_alignment="bottom")
inspected = cols[0].selectbox(t("Setting"), list(by_key), key=K + "inspect", format_func=row_label)
only_misses = cols[1].toggle(t("Only misses"), value=True, key=K + "only_misses")
result = results[inspected]
misses = result.misses()
st.caption(t("{missed} of {count} questions have no relevant passage among the {k} retrieved.", missed=len(misses),
             count=len(result.queries), k=result.config.k))
shown = misses if only_misses else result.queries
if shown:
    view.show_questions(shown, result.config.k, answers=view.looked_for(spec))
elif only_misses:
    st.caption(t("No question was missed with this setting."))

# ---- apply, re-index, re-run the evaluation ----------------------------------------------------------------------
sweep_apply.apply_panel(project, chosen, results, list(by_key), metric, row_label, K)

"""The Retrieval optimization page with streamlit's AppTest: a stored sweep's results (table, heatmap, parallel
coordinates, winner, misses), applying a setting (a new recipe version, re-index offered, the evaluation re-run),
a running (fake) sweep with Cancel, the state without labeled questions and generating some; marking supporting
passages on the Retrieval test page; the Retriever page keeping the sweep's settings on save. The sweep runs in
this process on the fixture corpus of tests/test_sweep.py with a fake embedder."""

from __future__ import annotations

import time

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.evaluate import runs
from core.evaluate.sweep import SweepGrid, create_sweep
from core.evaluate.sweep_exec import execute
from core.jobs import Job
from core.models.source import ModelSource
from core.evaluate.ranks import tied_ranks
from core.rag import queries as Q
from core.rag.chunking import ChunkingConfig
from core.rag.retriever import RetrieverSettings
from core.recipe import Recipe, RecipeStore
from tests.apptest_helpers import button, open_page
from tests.test_sweep import CODES, COMMON, FakeBackend, make_kb, parts_corpus

SLUG = "sweep-shop"
K = f"retrieval_opt.{SLUG}."


@pytest.fixture
def shop(workspace, tiny_model_dir, fake_embedder):
    """An open project: a tiny local model, the parts corpus indexed, no labeled questions yet."""
    project = workspace.create("Sweep shop")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    make_kb(project, parts_corpus())
    return project


@pytest.fixture
def labeled(shop):
    """Questions whose rare code only the keyword search finds (tests/test_sweep.py), and an eval set."""
    DatasetStore(shop).create("queries", "eval", [
        new_record("eval", question=f"{code} {COMMON} {COMMON}?", gold_ids=[f"part-{i}.md"])
        for i, code in enumerate(CODES)])
    DatasetStore(shop).create("faq", "eval", [new_record("eval", question="Who fits derailleurs?",
                                                         reference="The service desk.")])
    return shop


def sweep(project, grid: SweepGrid):
    run = create_sweep(project, "queries", grid)
    execute(project, run.id)
    return run


@pytest.fixture
def swept(labeled):
    """The project, with a finished sweep of 12 settings (2 chunkings x 3 searches x 2 ks)."""
    sweep(labeled, SweepGrid(chunkings=[ChunkingConfig(), ChunkingConfig("fixed", 16, 4)],
                             modes=("vector", "fts", "hybrid"), ks=(1, 2), min_similarity=0.0))
    return labeled


def page_links(at) -> list[str]:
    return [link.proto.label for link in at.get("page_link")]


def table(at):
    return next(d.value for d in at.dataframe if "rank" in d.value.columns)


def test_results_show_the_ranking_charts_winner_and_misses(swept):
    at = open_page("retrieval_opt")
    assert not at.error, [e.value for e in at.error]
    ranked = table(at)
    assert len(ranked) == 12 and list(ranked["rank"]) == tied_ranks(list(ranked["ndcg_at_k"]))
    assert list(ranked["rank"])[:5] == [1, 1, 1, 1, 5]  # four settings find every code first: they share rank 1
    assert ranked["mode"].iloc[0] == "Keywords (full text)" and ranked["ndcg_at_k"].iloc[0] == pytest.approx(1.0)
    assert list(ranked.columns[:7]) == ["rank", "chunking", "mode", "k", "order", "chunks", "ndcg_at_k"]
    charts = [c.proto.spec for c in at.get("plotly_chart")]
    assert len(charts) == 2 and '"heatmap"' in charts[0] and '"parcoords"' in charts[1]
    assert any("4 settings tie" in s.value and "Keywords (full text)" in s.value and "k=1" in s.value
               for s in at.success)   # the first of the tied winners
    assert any("finished" in c.value and "12 of 12" in c.value for c in at.caption)
    assert any("No question was missed" in c.value for c in at.caption)           # the winner misses nothing

    vector = next(o for o in at.selectbox(key=K + "inspect").options if "Meaning (vector)" in o and "k=1" in o)
    at.selectbox(key=K + "inspect").set_value(
        next(k for k in at.selectbox(key=K + "inspect").options if k == vector)).run()
    assert any("5 of 5 questions have no relevant passage" in c.value for c in at.caption)
    shown = " ".join(m.value for m in at.markdown)
    assert "glossary" in shown and "The shop bike" in shown                      # what came instead
    assert {e.label.split(" — ")[0] for e in at.expander} >= {f"{code} {COMMON} {COMMON}?" for code in CODES}

    at.selectbox(key=K + "metric").set_value("mrr").run()
    assert table(at).columns[6] == "mrr"


def test_apply_saves_a_new_recipe_version_then_reruns_the_evaluation(swept, monkeypatch):
    started = []
    monkeypatch.setattr(runs.EvalRun, "start", lambda run: started.append(run.id))
    at = open_page("retrieval_opt")
    button(at, "Use these settings").click().run()
    assert not at.exception, [e.value for e in at.exception]
    store = RecipeStore(swept)
    assert [v.number for v in store.versions()] == [1, 2]
    settings = store.load(2).retriever
    assert (settings.enabled, settings.mode, settings.k) == (True, "fts", 1)
    assert store.load(1).retriever.enabled is False
    assert any("Saved as recipe version 2 (the old one stays)" in s.value for s in at.success)
    assert not any("re-index" in w.value for w in at.warning)      # the knowledge base's own chunking won

    button(at, "Re-run the retriever rungs of the evaluation").click().run()
    eval_runs = runs.list_eval_runs(swept)
    assert len(eval_runs) == 1 and started == [eval_runs[0].id]
    spec = eval_runs[0].spec
    assert spec["dataset"] == "faq" and [v["key"] for v in spec["variants"]] == ["retriever"]
    assert spec["variants"][0]["recipe"]["retriever"]["mode"] == "fts"
    assert "Follow it on the Evaluation page" in page_links(at)


def test_a_setting_cut_differently_offers_to_reindex(swept):
    at = open_page("retrieval_opt")
    picker = at.selectbox(key=K + "apply_key")
    fixed = next(o for o in picker.options if "Fixed token windows 16/4" in o)
    picker.set_value(next(k for k in picker.options if k == fixed)).run()
    button(at, "Use these settings").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert RecipeStore(swept).latest().number == 2 and "re-index" in RecipeStore(swept).latest().note
    assert any("re-index the knowledge base" in w.value for w in at.warning)
    assert button(at, "Re-index the knowledge base")
    assert button(at, "Re-run the retriever rungs of the evaluation").disabled   # re-index first


def test_a_running_sweep_shows_progress_and_cancel(labeled):
    run = create_sweep(labeled, "queries", SweepGrid(modes=("fts",), ks=(1, 2)))
    message = {"progress": 0.4, "message": "Embedding passages: 4 of 10",
               "message_template": "Embedding passages: {done} of {total}", "message_params": {"done": 4, "total": 10}}
    Job.start(run.folder / "jobs", ["-c", f"import json,time\nprint(json.dumps({message!r}), flush=True)\n"
                                          "time.sleep(120)\n"], label="fake sweep")
    deadline = time.time() + 30
    while not run.jobs()[-1].events() and time.time() < deadline:
        time.sleep(0.1)
    at = open_page("retrieval_opt")
    assert not at.exception, [e.value for e in at.exception]
    progress = at.get("progress")
    assert progress and "0 of 2 settings scored" in progress[0].proto.text
    assert any("Embedding passages: 4 of 10" in c.value for c in at.caption)
    assert button(at, "Start the sweep").disabled          # one sweep at a time
    button(at, "Cancel").click().run()
    deadline = time.time() + 30
    while run.status().state == "running" and time.time() < deadline:  # Cancel returns at once; the job ends soon
        time.sleep(0.1)
    assert run.status().state == "cancelled"
    at.run()
    assert not button(at, "Continue").disabled


def test_without_labeled_questions_the_page_explains_the_three_ways_and_generates(shop, monkeypatch):
    from studio.ui import model_panel

    monkeypatch.setattr(model_panel, "recipe_backend", lambda project, recipe, key: FakeBackend())
    at = open_page("retrieval_opt")
    assert any("No labeled questions yet" in i.value for i in at.info)
    assert {"Go to Retrieval test", "Go to Datasets"} <= set(page_links(at))
    assert any("Generate questions" in m.value for m in at.markdown)
    assert button(at, "Start the sweep").disabled
    assert any("No sweep yet" in c.value for c in at.caption)

    at.number_input(key=K + "generate_n").set_value(3).run()
    button(at, "Generate questions").click().run()
    assert not at.exception, [e.value for e in at.exception]
    records, _ = DatasetStore(shop).load(Q.DEFAULT_DATASET)
    assert len(records) == 3 and all(r["suggestion"] and r["gold_passages"] for r in records)
    assert any("3 question(s) written" in s.value for s in at.success)
    assert any("3 generated question(s)" in c.value for c in at.caption)   # suggestions wait for review
    assert any("No labeled questions yet" in i.value for i in at.info)     # and do not count yet
    button(at, "Review them on the Labeling page").click().run()
    assert at.session_state[f"labeling.{SLUG}.dataset"] == Q.DEFAULT_DATASET


def test_an_eval_set_of_questions_and_short_answers_can_be_swept(shop):
    DatasetStore(shop).create("faq", "eval", [
        new_record("eval", question="Who fits derailleurs?", reference="The service desk."),
        new_record("eval", question="Do you ship?", reference="Yes.")])   # a bare yes tells no place
    at = open_page("retrieval_opt")
    assert not any("No labeled questions yet" in i.value for i in at.info)
    assert at.selectbox(key=K + "queries").value == "faq"
    assert any("1 usable questions in 'faq'" in c.value for c in at.caption)
    assert any("1 of them name no passage or document" in c.value for c in at.caption)
    assert not button(at, "Start the sweep").disabled
    run = create_sweep(shop, "faq", SweepGrid(modes=("fts",), ks=(1,)))
    execute(shop, run.id)
    at = open_page("retrieval_opt")
    assert not at.exception, [e.value for e in at.exception]
    at.toggle(key=K + "only_misses").set_value(False).run()
    assert any(c.value == "A passage counts when it holds: The service desk." for c in at.caption)


def test_a_set_with_marked_gold_is_offered_before_one_judged_by_answers(labeled):
    at = open_page("retrieval_opt")
    assert at.selectbox(key=K + "queries").value == "queries"   # 'faq' comes first by name, judged by its answer


def test_the_grid_counts_its_settings_and_disables_the_model_reranker_for_an_endpoint(labeled):
    store = RecipeStore(labeled)
    store.save(store.load().with_changes(model=ModelSource(kind="openai", location="http://localhost:1/v1",
                                                           model_name="m")))
    at = open_page("retrieval_opt")
    assert at.selectbox(key=K + "queries").value == "queries"
    assert any("This grid makes 9 settings, each tried on 5 questions" in c.value for c in at.caption)
    assert at.checkbox(key=K + "reranker.llm").disabled
    assert any("needs a model that runs on this machine" in c.value for c in at.caption)
    at.multiselect(key=K + "sizes").set_value([100, 200, 300]).run()
    at.multiselect(key=K + "ks").set_value(list(range(1, 21))).run()
    at.multiselect(key=K + "rrf_ks").set_value([10, 20, 30, 60, 100]).run()
    at.checkbox(key=K + "reranker.linear").check().run()
    assert any("large sweep" in w.value for w in at.warning)


def test_marking_supporting_passages_on_the_retrieval_test_page_creates_the_dataset(shop):
    at = open_page("retrieval_test")
    question = f"{CODES[0]} rear derailleur"
    at.text_input(key=f"retrieval_test.{SLUG}.question").set_value(question).run()
    boxes = [c for c in at.checkbox if c.label == "Supports the answer"]
    assert len(boxes) >= 3
    boxes[0].check().run()
    assert not at.exception, [e.value for e in at.exception]
    button(at, "Mark 1 passage(s) as supporting").click().run()
    records, version = DatasetStore(shop).load(Q.DEFAULT_DATASET)
    assert version == 1 and len(records) == 1 and records[0]["question"] == question
    assert records[0]["status"] == "accepted" and len(records[0]["gold_passages"]) == 1
    assert any(f"in '{Q.DEFAULT_DATASET}' (version 1)" in s.value for s in at.success)
    assert "Try retrieval settings on the Retrieval optimization page" in page_links(at)
    assert [q.question for q in Q.load_queries(shop, Q.DEFAULT_DATASET)[0]] == [question]


def test_the_retriever_page_keeps_the_sweep_settings_on_save(shop):
    store = RecipeStore(shop)
    store.save(store.load().with_changes(retriever=RetrieverSettings(mode="hybrid", k=12, rrf_k=10,
                                                                     reranker="linear", query_rewrite=True)))
    at = open_page("retriever")
    assert at.selectbox(key=f"retriever.{SLUG}.reranker").value == "linear"
    assert at.toggle(key=f"retriever.{SLUG}.rewrite").value is True
    at.toggle(key=f"retriever.{SLUG}.enabled").set_value(True).run()
    button(at, "Save as new recipe version").click().run()
    assert not at.exception, [e.value for e in at.exception]
    settings = store.load().retriever
    assert (settings.enabled, settings.k, settings.rrf_k, settings.reranker, settings.query_rewrite) == \
        (True, 12, 10, "linear", True)
    at.selectbox(key=f"retriever.{SLUG}.reranker").set_value("rrf").run()
    at.toggle(key=f"retriever.{SLUG}.rewrite").set_value(False).run()
    button(at, "Save as new recipe version").click().run()
    settings = store.load().retriever
    assert (settings.reranker, settings.query_rewrite, settings.rrf_k) == ("rrf", False, 10)


def test_settings_that_all_score_the_same_are_reported_as_a_tie_not_a_winner(labeled):
    """Keyword search finds every rare code first, whatever k: the page must not crown one of the ties."""
    sweep(labeled, SweepGrid(chunkings=[ChunkingConfig()], modes=("fts",), ks=(1, 2, 3), min_similarity=0.0))
    at = open_page("retrieval_opt")
    assert not at.exception, [e.value for e in at.exception]
    assert list(table(at)["rank"]) == [1, 1, 1]
    assert any("All 3 settings score 1.00" in i.value and "too easy" in i.value for i in at.info)
    assert not any("finds the answer best" in s.value for s in at.success)

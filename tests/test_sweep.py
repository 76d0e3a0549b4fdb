"""Retrieval sweeps on small fixture corpora whose best setting is known by construction; labeled retrieval
queries; embedding reuse; resume; applying the winner; the CLI."""

from __future__ import annotations

import json

import numpy as np
import pytest

from core.data.records import new_record, problems
from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate.sweep import SweepConfig, SweepGrid, apply_best, create_sweep, get_sweep, list_sweeps, reindex_needed
from core.evaluate.sweep_exec import execute
from core.rag import queries as Q
from core.rag import relevance
from core.rag.chunking import ChunkingConfig
from core.rag.embedders import EmbedderSpec, EmbeddingCache, register_embedder, unregister_embedder
from core.rag.kb import KnowledgeBase
from core.recipe import RecipeStore

COMMON = "shop bike customer service"
CODES = ["QZ7781", "KP2290", "MX4410", "TR5521", "BV8834"]
TOPICS = ["fits the rear derailleur of city bikes", "is the battery charger for cargo models",
          "replaces the front brake pads on road frames", "is the kickstand for folding wheels",
          "adjusts the saddle clamp height"]


def make_kb(project, documents: dict[str, str], chunking: ChunkingConfig | None = None) -> KnowledgeBase:
    kb = KnowledgeBase(project, "docs")
    if chunking is not None:
        kb.set_chunking(chunking)
    results = kb.ingest(kb.add_files([(name, text.encode("utf-8")) for name, text in documents.items()]))
    assert all(r.status == "indexed" for r in results), results
    return kb


def parts_corpus() -> dict[str, str]:
    """Each part document names a rare code once; a glossary repeats the shop's common words densely."""
    docs = {f"part-{i}.md": f"# Part {code}\n\nSpare part {code} {topic}. Ask the {COMMON} desk.\n"
            for i, (code, topic) in enumerate(zip(CODES, TOPICS))}
    docs["glossary.md"] = "# Glossary\n\n" + "\n\n".join(
        f"## Entry {j}\n\nThe {COMMON} {COMMON} team helps every {COMMON} day." for j in range(5))
    return docs


def temporary_tables(project) -> list[str]:
    from core.rag.store import KnowledgeStore

    return KnowledgeStore(str(project.subdir("indexes") / "sweep-tmp")).db.list_tables().tables


def save_queries(project, records, name="queries") -> str:
    DatasetStore(project).create(name, "eval", records)
    return name


@pytest.fixture
def parts(project, fake_embedder):
    """Queries share one exact rare keyword with their passage, but their other words are the glossary's: a
    bag-of-words embedder finds the glossary, BM25 (the rare word weighs most) finds the part."""
    kb = make_kb(project, parts_corpus())
    save_queries(project, [new_record("eval", question=f"{code} {COMMON} {COMMON}?", gold_ids=[f"part-{i}.md"])
                           for i, code in enumerate(CODES)])
    return kb


# ---- labeled retrieval queries ------------------------------------------------------------------------------------

def test_retrieval_queries_need_gold_not_a_reference():
    assert problems("eval", new_record("eval", question="Q", gold_ids=["a.md"])) == []
    assert problems("eval", new_record("eval", question="Q", gold_passages=[{"source": "a.md", "text": "T"}])) == []
    assert problems("eval", new_record("eval", question="Q"))   # neither a reference nor gold
    assert problems("eval", new_record("eval", question="Q", gold_passages=[{"source": "a.md"}]))
    assert problems("eval", new_record("eval", question="Q", gold_passages="a.md"))


def test_queries_from_records_keep_only_reviewed_ones_with_gold():
    rows = [new_record("eval", question="kept", gold_ids=["a.md"]),
            {**new_record("eval", question="rejected", gold_ids=["a.md"]), "status": "rejected"},
            {**new_record("eval", question="draft", gold_ids=["a.md"]), "suggestion": True},
            {**new_record("eval", question="accepted draft", gold_ids=["a.md"]), "suggestion": True,
             "status": "accepted"},
            new_record("eval", question="no gold, a long answer", reference="We ship every order within two working "
                                                                           "days to any address in the EU."),
            new_record("eval", question="no gold, yes or no", reference="Yes.", references=["no"]),
            new_record("eval", question="passages", gold_passages=[{"source": "a.md", "text": "T"}]),
            new_record("eval", question="short answers", reference="The service desk.", references=["Yes", "desk"]),
            new_record("eval", question="gold and answer", gold_ids=["a.md"], reference="R")]
    found = Q.queries_from_records(rows)
    assert [q.question for q in found] == ["kept", "accepted draft", "passages", "short answers", "gold and answer"]
    assert found[2].gold_passages == ({"source": "a.md", "text": "T"},)
    assert found[3].answers == ("The service desk.", "desk")   # a bare yes or no is no place to look for
    assert found[4].answers == ()                              # a question's gold says more than its answer


def test_a_question_without_gold_is_judged_by_the_passages_that_hold_its_answer():
    units = relevance.gold_units(answers=["the Tibetan Plateau", "Tibet"])
    assert [u.kind for u in units] == ["answer"]  # one unit: any answer found is the question found (recall 1)
    judged = relevance.judge([("c1", "a.md", "The river rises on the Tibetan plateau, then flows south."),
                              ("c2", "b.md", "Plateaus are high and flat."),
                              ("c3", "c.md", "Tibetans farm barley."),
                              ("c4", "d.md", "It crosses Tibet.")], units)
    assert judged == [("g0",), (), (), ("g0",)]   # whole words in order: "Tibetans" is not "Tibet"
    assert relevance.holds_answer("Giá: 2.690 euro (đã gồm VAT).", "2.690 Euro")
    assert not relevance.holds_answer("Plateau of Tibet", "Tibetan Plateau")


def test_mark_supporting_creates_then_merges(project, fake_embedder):
    kb = make_kb(project, parts_corpus())
    first, second = kb.search("QZ7781", "fts", 1)[0], kb.search("KP2290", "fts", 1)[0]
    assert Q.mark_supporting(project, "marked", "Which part fits the derailleur?", [first], author="ana") == 1
    assert Q.mark_supporting(project, "marked", "which part  fits the DERAILLEUR?", [first, second]) == 2
    Q.mark_supporting(project, "marked", "Another question", [{"chunk_id": "c1", "source": "s.md", "text": "T"}])
    records, _ = DatasetStore(project).load("marked")
    assert DatasetStore(project).kind("marked") == "eval" and len(records) == 2
    merged = records[0]
    assert merged["gold_ids"] == [first.chunk_id, second.chunk_id]
    assert merged["gold_passages"] == [{"source": first.source, "text": first.text},
                                       {"source": second.source, "text": second.text}]
    assert merged["status"] == "accepted" and not problems("eval", merged)
    with pytest.raises(StudioError):
        Q.mark_supporting(project, "marked", "Q", [])


class FakeBackend:
    """Writes "What does <first word of the passage> do?" for every prompt."""

    def render(self, messages, labels, tools=None):
        return messages[0]["content"]

    def generate_batch(self, prompts, settings):
        return [{"text": f"Question: What about {p.split('Passage: ')[1].split()[0]}?\nAnswer: more"}
                for p in prompts]


def test_generated_queries_are_suggestions_until_accepted(project, fake_embedder):
    from core.data.labeling import bulk_status
    from core.recipe import Recipe

    make_kb(project, parts_corpus())
    new = Q.generate_queries(project, "docs", FakeBackend(), Recipe(), n=3, seed=1)
    assert len(new) == 3 and all(r["suggestion"] and r["status"] == "unlabeled" for r in new)
    assert all(r["question"].startswith("What about ") and r["question"].endswith("?") for r in new)
    assert all(len(r["gold_ids"]) == 1 and r["gold_passages"][0]["text"] for r in new)
    again = Q.generate_queries(project, "docs", FakeBackend(), Recipe(), n=3, seed=1, dataset="other")
    assert [r["gold_ids"] for r in again] == [r["gold_ids"] for r in new]   # the seed picks the passages
    records, _ = DatasetStore(project).load(Q.DEFAULT_DATASET)
    assert Q.queries_from_records(records) == []
    accepted = bulk_status(records, {records[0]["id"]}, "accepted", "ana")
    assert [q.id for q in Q.queries_from_records(accepted)] == [records[0]["id"]]


# ---- the grid -------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("grid, count", [
    (SweepGrid(), 6),                                                            # 3 modes x 2 ks
    (SweepGrid(chunkings=[{"chunk_tokens": 100}, {"chunk_tokens": 200}]), 12),
    (SweepGrid(modes=("hybrid",), ks=(3,), rrf_ks=(10, 60), rerankers=("rrf", "linear")), 3),
    (SweepGrid(modes=("vector", "hybrid"), ks=(3,), rrf_ks=(10, 60), rerankers=("rrf", "llm")), 5),
    (SweepGrid(modes=("fts",), ks=(3,), query_rewrite=True), 2),
])
def test_grid_configs(grid, count):
    configs = grid.configs()
    assert len(configs) == count == len({c.key for c in configs})
    assert all(SweepConfig.from_dict(c.to_dict()) == c for c in configs)
    assert SweepGrid.from_dict(grid.to_dict()) == grid


@pytest.mark.parametrize("bad", [dict(modes=("semantic",)), dict(ks=(0,)), dict(ks=()), dict(rerankers=("bm25",)),
                                 dict(embedders=("no-such-embedder",)), dict(rrf_ks=(0,)),
                                 dict(chunkings=[{"chunk_tokens": 4}])])
def test_grid_rejects_bad_values(bad):
    with pytest.raises(StudioError):
        SweepGrid(**bad)


# ---- sweeps with a known winner -------------------------------------------------------------------------------------

def test_keyword_search_wins_when_queries_share_only_rare_words(project, parts):
    run = create_sweep(project, "queries", SweepGrid(modes=("vector", "fts", "hybrid"), ks=(1,)))
    result = execute(project, run.id)
    assert result["finished"] and result["done"] == result["total"] == 3
    by_mode = {r.config.mode: r for r in run.results()}
    assert by_mode["fts"].metrics == {"hit_at_k": 1.0, "recall_at_k": 1.0, "mrr": 1.0, "ndcg_at_k": 1.0}
    assert by_mode["vector"].metrics["hit_at_k"] == 0.0
    assert run.best().config.mode == "fts" and run.status().state == "done"
    missed = by_mode["vector"].misses()[0]   # what came instead: the glossary, with its text
    assert missed["rank"] is None and missed["retrieved"][0]["source"] == "glossary.md"
    assert missed["retrieved"][0]["text"].startswith("The shop bike") and not missed["retrieved"][0]["relevant"]
    spec = run.spec
    assert spec["kb"]["table_version"] >= 1 and spec["kb"]["embedder"] == "all-MiniLM-L6-v2"
    assert spec["queries"]["dataset"] == "queries" and spec["queries"]["version"] == 1
    assert set(spec["kb"]["documents"]) == set(parts_corpus()) and spec["embedders"] == ["all-MiniLM-L6-v2"]
    assert temporary_tables(project) == []


def test_an_eval_set_with_short_answers_is_swept_by_the_passages_that_hold_them(project, parts):
    """Questions and answers only, as most eval sets are: keyword search finds the part whose text holds the
    answer, the glossary does not hold it."""
    topics = [topic.split(" of ")[0].split(" for ")[0].split(" on ")[0] for topic in TOPICS]
    save_queries(project, [new_record("eval", question=f"{code} {COMMON} {COMMON}?", reference=topic)
                           for code, topic in zip(CODES, topics)], name="answers")
    run = create_sweep(project, "answers", SweepGrid(modes=("vector", "fts"), ks=(1,)))
    assert [g["kind"] for q in run.spec["queries"]["items"] for g in q["gold"]] == ["answer"] * 5
    execute(project, run.id)
    by_mode = {r.config.mode: r for r in run.results()}
    assert by_mode["fts"].metrics["hit_at_k"] == 1.0 and by_mode["vector"].metrics["hit_at_k"] == 0.0
    assert by_mode["fts"].queries[0]["retrieved"][0]["relevant"]


def boundary_corpus() -> dict[str, str]:
    """Two manuals whose answer ("alpha … omega", "sigma … delta") straddles word 16; short notes hold one of the
    two words each. Cut at 16 words, each half of an answer loses to a note; cut at 64, the whole answer wins."""
    def manual(first, second, tag):
        words = [f"{tag}filler{i}" for i in range(32)]
        words[10], words[20] = first, second
        return "# Manual\n\n" + " ".join(words) + "\n"

    docs = {"manual-a.md": manual("alpha", "omega", "a"), "manual-b.md": manual("sigma", "delta", "b")}
    for word in ("alpha", "omega", "sigma", "delta"):
        docs[f"note-{word}.md"] = f"# Note\n\nA short note about {word} written for the {word[0]}team here.\n"
    return docs


def test_small_chunks_lose_an_answer_that_spans_their_boundary(project, fake_embedder):
    docs = boundary_corpus()
    make_kb(project, docs)
    spans = {}
    for name, (first, second) in {"manual-a.md": ("alpha", "omega"), "manual-b.md": ("sigma", "delta")}.items():
        words = docs[name].split("\n\n")[1].split()
        spans[name] = (f"{first} {second}", " ".join(words[10:21]))
    save_queries(project, [new_record("eval", question=q, gold_passages=[{"source": name, "text": span}])
                           for name, (q, span) in spans.items()])
    grid = SweepGrid(chunkings=[ChunkingConfig("fixed", 16, 0), ChunkingConfig("fixed", 64, 0)], modes=("vector",),
                     ks=(1,), min_similarity=0.0)   # the ranking alone (cosines here are about 0.2)
    run = create_sweep(project, "queries", grid)
    execute(project, run.id)
    by_size = {r.config.chunking.chunk_tokens: r.metrics["hit_at_k"] for r in run.results()}
    assert by_size == {16: 0.0, 64: 1.0}
    assert run.best().config.chunking == ChunkingConfig("fixed", 64, 0)


def test_passages_below_the_minimum_similarity_are_left_out_as_the_assistant_does(project, parts):
    from core.recipe import Recipe
    from core.rag.retriever import RetrieverSettings

    RecipeStore(project).save(Recipe(retriever=RetrieverSettings(min_similarity=0.95)))
    strict = create_sweep(project, "queries", SweepGrid(modes=("fts",), ks=(1,)))     # the recipe's 0.95
    loose = create_sweep(project, "queries", SweepGrid(modes=("fts",), ks=(1,), min_similarity=0.0))
    assert (strict.spec["min_similarity"], loose.spec["min_similarity"]) == (0.95, 0.0)
    execute(project, strict.id)
    execute(project, loose.id)
    assert strict.best().metrics["hit_at_k"] == 0.0 and strict.best().queries[0]["retrieved"] == []
    assert loose.best().metrics["hit_at_k"] == 1.0


def test_the_llm_reranker_is_injected_and_can_win(project, parts):
    """A fake scorer that knows the answer: the reranked vector search finds every part."""
    def scorer(question, texts):
        return [float(question.split()[0] in text) for text in texts]

    run = create_sweep(project, "queries", SweepGrid(modes=("vector",), ks=(1,), rerankers=("rrf", "llm")))
    execute(project, run.id, scorer=scorer)
    by_reranker = {r.config.reranker: r.metrics["hit_at_k"] for r in run.results()}
    assert by_reranker == {"rrf": 0.0, "llm": 1.0}


def test_query_rewriting_is_injected(project, parts):
    rewritten = []

    def rewriter(question):
        rewritten.append(question)
        return question.split()[0]     # the code alone

    run = create_sweep(project, "queries", SweepGrid(modes=("fts",), ks=(1,), query_rewrite=True))
    execute(project, run.id, rewriter=rewriter)
    results = {r.config.query_rewrite: r for r in run.results()}
    assert set(results) == {False, True} and len(rewritten) == len(CODES)   # once per question
    assert results[True].queries[0]["query"] == CODES[0] and results[True].metrics["hit_at_k"] == 1.0


# ---- embeddings reused ----------------------------------------------------------------------------------------------

def test_embeddings_are_reused_across_chunkings_and_sweeps(project, parts, fake_embedder):
    # Every section is shorter than 200 words: the KB's chunking and 300 give the same texts, already in the KB.
    grid = SweepGrid(chunkings=[ChunkingConfig(), ChunkingConfig(chunk_tokens=300)], modes=("fts",), ks=(1,))
    run = create_sweep(project, "queries", grid)
    calls = len(fake_embedder.calls)
    result = execute(project, run.id)
    groups = [json.loads(line) for line in (run.folder / "embeddings.jsonl").read_text().splitlines()]
    assert [(g["computed"], g["reused"] > 0) for g in groups] == [(0, True), (0, True)]
    assert result["embeddings"]["computed"] == 0 and result["embeddings"]["seeded"] > 0
    embedded = [t for call in fake_embedder.calls[calls:] for t in call]
    assert embedded == [q["question"] for q in run.spec["queries"]["items"]]   # the questions only, once

    small = SweepGrid(chunkings=[ChunkingConfig("fixed", 16, 4)], modes=("vector",), ks=(1,))
    first = execute(project, create_sweep(project, "queries", small).id)
    assert first["embeddings"]["computed"] > 0
    second = execute(project, create_sweep(project, "queries", small).id)
    assert second["embeddings"]["computed"] == 0 and second["embeddings"]["reused"] == \
        first["embeddings"]["computed"] + first["embeddings"]["reused"]


def test_embedding_cache_persists_in_shards(tmp_path):
    cache = EmbeddingCache(tmp_path / "cache")
    calls = []

    def embed(texts):
        calls.append(list(texts))
        return np.array([[len(t), 1.0] for t in texts], dtype=np.float32)

    vectors, stats = cache.embed(["a", "bb", "a", "ccc"], embed, batch=2)
    assert vectors[:, 0].tolist() == [1, 2, 1, 3] and (stats.reused, stats.computed) == (0, 3)
    assert calls == [["a", "bb"], ["ccc"]] and len(list((tmp_path / "cache").glob("*.npz"))) == 2
    again = EmbeddingCache(tmp_path / "cache")
    vectors, stats = again.embed(["ccc", "dddd"], embed)
    assert vectors[:, 0].tolist() == [3, 4] and (stats.reused, stats.computed) == (1, 1)


def test_a_second_embedder_slots_in(project, parts):
    register_embedder(EmbedderSpec("hash-64", 64, __import__("tests.conftest", fromlist=["x"]).HashEmbedder(64)))
    try:
        grid = SweepGrid(modes=("vector",), ks=(1,), embedders=("all-MiniLM-L6-v2", "hash-64"))
        run = create_sweep(project, "queries", grid)
        result = execute(project, run.id)
        assert {r.config.embedder for r in run.results()} == {"all-MiniLM-L6-v2", "hash-64"}
        assert result["embeddings"]["computed"] > 0          # hash-64 had nothing cached
        assert (project.path / "cache" / "embeddings" / "hash-64").is_dir()
        hashed = next(r.config for r in run.results() if r.config.embedder == "hash-64")
        with pytest.raises(StudioError, match="embeds with"):
            apply_best(project, run, hashed)
    finally:
        unregister_embedder("hash-64")


def test_reindex_after_a_sweep_reuses_its_embeddings(project, parts, fake_embedder):
    chunking = ChunkingConfig("fixed", 16, 4)
    execute(project, create_sweep(project, "queries", SweepGrid(chunkings=[chunking], modes=("vector",),
                                                                ks=(1,))).id)
    assert reindex_needed(project, "docs", chunking) and not reindex_needed(project, "docs", ChunkingConfig())
    calls = len(fake_embedder.calls)
    parts.reindex(chunking)
    assert not reindex_needed(project, "docs", chunking.to_dict())
    embedded = [t for call in fake_embedder.calls[calls:] for t in call]
    assert embedded == []


# ---- resume, jobs, apply, CLI ---------------------------------------------------------------------------------------

def test_a_stopped_sweep_resumes_where_it_stopped(project, parts):
    grid = SweepGrid(chunkings=[ChunkingConfig(), ChunkingConfig("fixed", 16, 4)], modes=("vector", "fts"), ks=(1, 2))
    run = create_sweep(project, "queries", grid)
    scored = []

    def emit(**event):
        if event.get("type") == "config":
            scored.append(event["key"])

    stopped = execute(project, run.id, emit, should_stop=lambda: len(scored) >= 3)
    assert not stopped["finished"] and stopped["done"] == 3 and run.status().state == "new"
    assert temporary_tables(project) == []
    done = execute(project, run.id, emit)
    assert done["finished"] and done["done"] == done["total"] == 8
    assert len(scored) == 8 == len(set(scored))                  # nothing scored twice
    lines = (run.folder / "results.jsonl").read_text().splitlines()
    assert len(lines) == 8 and run.status().state == "done"
    assert execute(project, run.id)["done"] == 8                   # finished: nothing to do


def test_the_job_entry_point_runs_the_sweep(project, parts, capsys):
    from core.evaluate import sweep_job

    run = create_sweep(project, "queries", SweepGrid(modes=("fts",), ks=(1,)))
    assert sweep_job.main([str(project.path), run.id]) == 0
    events = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert events[-1]["type"] == "done" and any(e.get("type") == "config" for e in events)
    assert [r.id for r in list_sweeps(project)] == [run.id] and get_sweep(project, run.id).best() is not None


def test_a_sweep_refuses_a_changed_knowledge_base(project, parts):
    run = create_sweep(project, "queries", SweepGrid(modes=("fts",), ks=(1,)))
    parts.ingest(parts.add_files([("extra.md", b"# Extra\n\nSomething new.")]))
    with pytest.raises(StudioError, match="changed"):
        execute(project, run.id)


def test_apply_best_saves_a_new_recipe_version(project, parts):
    store = RecipeStore(project)
    store.save(store.load(), note="before")
    grid = SweepGrid(chunkings=[ChunkingConfig(), ChunkingConfig("fixed", 16, 4)], modes=("vector", "fts", "hybrid"),
                     ks=(1,), rerankers=("rrf", "linear"))
    run = create_sweep(project, "queries", grid)
    execute(project, run.id)
    best = run.best()
    assert best.config.mode == "fts"
    version = apply_best(project, run)
    assert version == 2 and [v.number for v in store.versions()] == [1, 2]
    settings = store.load(2).retriever
    assert (settings.enabled, settings.knowledge_base, settings.mode, settings.k, settings.reranker) == \
        (True, "docs", "fts", 1, "rrf")
    assert store.load(1).retriever.enabled is False                         # the old version stays
    applied = run.applied()
    assert applied["version"] == 2 and applied["reindex"] == (None if best.config.chunking == ChunkingConfig()
                                                              else best.config.chunking.to_dict())
    hybrid = next(r.config for r in run.results() if r.config.mode == "hybrid" and r.config.reranker == "linear"
                  and r.config.chunking.strategy == "fixed")
    assert apply_best(project, run.id, hybrid.to_dict()) == 3
    settings = store.load().retriever
    assert (settings.mode, settings.reranker, settings.rrf_k) == ("hybrid", "linear", 60)
    assert run.applied()["reindex"] == hybrid.chunking.to_dict() and "re-index" in store.latest().note
    assert parts.search(f"{CODES[0]} {COMMON}", settings.mode, 2, reranker=settings.reranker)  # search honours it


def test_cli_sweep_json(project, parts):
    from typer.testing import CliRunner

    from core.cli import app

    result = CliRunner().invoke(app, ["kb", "sweep", project.name, "--queries", "queries", "--chunk-sizes", "200,16",
                                      "--modes", "vector,fts", "--ks", "1,2", "--json"])
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout)
    assert payload["finished"] and len(payload["configs"]) == 8
    assert payload["best"]["mode"] == "fts" and payload["configs"][0]["key"] == payload["best"]["key"]
    assert {"hit_at_k", "recall_at_k", "mrr", "ndcg_at_k"} <= set(payload["configs"][0])
    assert payload["embeddings"]["computed"] > 0        # the 16-token chunks were new
    assert get_sweep(project, payload["sweep"]).status().state == "done"   # recorded as a job the page can watch
    text = CliRunner().invoke(app, ["kb", "sweep", project.name, "--queries", "queries", "--modes", "fts",
                                    "--ks", "1"])
    assert text.exit_code == 0 and "fts" in text.stdout and "ndcg" in text.stdout.lower()
    missing = CliRunner().invoke(app, ["kb", "sweep", project.name, "--queries", "nope"])
    assert missing.exit_code == 1


def test_llm_scorer_on_a_tiny_local_model(tiny_backend):
    from core.rag.rerank import llm_scorer

    scorer = llm_scorer(tiny_backend("llama"))
    passages = ["The shop opens at nine.", "Frames have a warranty.", "x " * 500]
    scores = scorer("When does the shop open?", passages)
    assert len(scores) == 3 and all(np.isfinite(scores))
    alone = scorer("When does the shop open?", passages[:1])   # left padding in a batch changes nothing
    assert alone[0] == pytest.approx(scores[0], abs=1e-4)
    assert llm_scorer(object()) is None                        # an endpoint cannot score


def test_llm_scorer_is_the_mean_log_probability_of_the_question_after_the_passage(tiny_backend):
    import torch

    from core.rag.rerank import QUESTION_PROMPT, llm_scorer

    backend = tiny_backend("llama")
    tokenizer, model = backend.tokenizer, backend.model
    prompt = tokenizer(QUESTION_PROMPT.format(passage="The shop opens at nine."))["input_ids"]
    question = tokenizer(" When does the shop open?", add_special_tokens=False)["input_ids"]
    with torch.inference_mode():
        logits = model(input_ids=torch.tensor([prompt + question])).logits[0, len(prompt) - 1:-1].float()
    expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(question)[:, None]).mean().item()
    scores = llm_scorer(backend)("When  does the shop open?", ["The shop opens at nine.", "x " * 40])
    assert scores[0] == pytest.approx(expected, abs=1e-4)


@pytest.mark.real_model
def test_a_sweep_runs_as_a_background_job_with_the_real_embedder(project):
    import time

    make_kb(project, parts_corpus())
    save_queries(project, [new_record("eval", question=f"Which spare part {topic}?", gold_ids=[f"part-{i}.md"])
                           for i, topic in enumerate(TOPICS)])
    run = create_sweep(project, "queries", SweepGrid(modes=("vector", "fts"), ks=(1,), min_similarity=0.0))
    job = run.start()
    deadline = time.time() + 240
    while run.status().state == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert run.status().state == "done", job.folder.joinpath("stderr.log").read_text()[-2000:]
    by_mode = {r.config.mode: r.metrics["hit_at_k"] for r in run.results()}
    assert by_mode["vector"] == 1.0 and set(by_mode) == {"vector", "fts"}
    assert any(e.get("type") == "config" for e in job.events())

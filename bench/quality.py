"""Answer-quality benchmark on documents nobody here wrote: documents -> retriever -> answers -> fine-tune.

Run:  .venv/bin/python bench/quality.py [--ladder] [--train-minutes 12] [--drafted 400]

Data: ../shared/devsets/squad-v1.1-24-articles.json (24 Wikipedia articles, SQuAD v1.1 questions with several
accepted answers each; CC BY-SA 4.0, see that folder's README). Each article becomes one Markdown document (its
title as the heading, its paragraphs as paragraphs) ingested with the studio's default knowledge-base settings,
in a throw-away STUDIO_HOME.

* Retrieval (always): `--retrieval-questions` questions (default 300, seeded) from every article; for each search
  mode the studio offers (meaning, keywords, both fused) the top 5 passages of `KnowledgeBase.search`. A passage
  counts as the question's gold paragraph when it shares at least a third of its word 6-grams with it (passages
  and paragraphs are cut differently, so exact ids cannot be compared). Prints hit@1, hit@5 and MRR per mode.
  `--reranker llm` adds hybrid search with its first 10 reordered by the embedded model (question likelihood,
  core.rag.rerank) and gives the ladder's recipe that reranker.
* Ladder (`--ladder`): the articles are split with the seed, a quarter for evaluation and the rest for training.
  `--eval-questions` (default 40) questions of the evaluation articles become an eval set with every accepted
  answer as a reference; pairs from the training articles train a LoRA adapter (the recipe's prompt format, as the
  Fine-tune page does) for at most `--train-minutes`; then the studio's own ladder evaluation scores prompt /
  + few-shot / + retriever / + adapter / + adapter + retriever. EM and F1 use the official SQuAD v1.1
  normalization (lower case, no punctuation, no articles) and take the best over the accepted answers.
* `--drafted N` (with `--ladder`): the adapter trains on N pairs drafted from the indexed documents by the
  recipe's model (core.rag.drafting, what the Labeling page's "Draft training pairs from documents" does), every
  draft the leakage check kept accepted unread, instead of on the crowd-written pairs.

The last line printed is one JSON object with every figure and the runtime of each stage.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import random
import re
import string
import sys
import tempfile
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
if str(REPO_ROOT) not in sys.path:
    sys.path.insert(0, str(REPO_ROOT))

DEVSET = REPO_ROOT.parent / "shared" / "devsets" / "squad-v1.1-24-articles.json"
MODES = ("hybrid", "vector", "fts")
K = 5


# ---- SQuAD v1.1 scoring (the official evaluate-v1.1.py, reimplemented) ---------------------------------------------

def normalize_answer(text: str) -> str:
    text = text.lower()
    text = "".join(ch for ch in text if ch not in set(string.punctuation))
    text = re.sub(r"\b(a|an|the)\b", " ", text)
    return " ".join(text.split())


def f1_score(prediction: str, truth: str) -> float:
    predicted, expected = normalize_answer(prediction).split(), normalize_answer(truth).split()
    common = collections.Counter(predicted) & collections.Counter(expected)
    same = sum(common.values())
    if same == 0:
        return 0.0
    precision, recall = same / len(predicted), same / len(expected)
    return 2 * precision * recall / (precision + recall)


def best_over(metric, prediction: str, truths: list[str]) -> float:
    return max(metric(prediction, truth) for truth in truths)


def exact_match(prediction: str, truth: str) -> float:
    return float(normalize_answer(prediction) == normalize_answer(truth))


# ---- the documents and questions ----------------------------------------------------------------------------------

def load_articles(path: Path = DEVSET) -> list[dict]:
    return json.loads(path.read_text(encoding="utf-8"))["data"]


def article_markdown(article: dict, wrap: int = 0, short: bool = False) -> str:
    """The article as Markdown, a paragraph per line, or hard-wrapped at `wrap` columns as many sources are;
    `short`: every two sentences a paragraph of their own, as documentation and FAQs are written."""
    import textwrap

    title = article["title"].replace("_", " ")
    paragraphs = [p["context"].strip() for p in article["paragraphs"]]
    if short:
        paragraphs = [" ".join(sentences[i:i + 2]) for p in paragraphs
                      for sentences in [re.split(r"(?<=[.!?])\s+(?=[A-Z\"“(])", p)]
                      for i in range(0, len(sentences), 2)]
    if wrap:
        paragraphs = [textwrap.fill(p, wrap, break_long_words=False, break_on_hyphens=False) for p in paragraphs]
    return f"# {title}\n\n" + "\n\n".join(paragraphs) + "\n"


def questions_of(articles: list[dict]) -> list[dict]:
    return [{"question": qa["question"], "answers": list(dict.fromkeys(a["text"] for a in qa["answers"])),
             "paragraph": paragraph["context"], "article": article["title"]}
            for article in articles for paragraph in article["paragraphs"] for qa in paragraph["qas"]]


def shingles(text: str, n: int = 6) -> set[tuple[str, ...]]:
    words = normalize_answer(text).split()
    return {tuple(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def from_paragraph(passage: str, paragraph: str) -> bool:
    """The passage is (mostly) a piece of the paragraph: a third of its word 6-grams are in it."""
    mine = shingles(passage)
    return len(mine & shingles(paragraph)) >= max(1, len(mine) // 3)


# ---- stages -------------------------------------------------------------------------------------------------------

def article_pdf(article: dict, folder: Path) -> Path:
    """The article printed to PDF by headless Chromium, as a browser prints a web page (with its header and footer:
    date, title, address, page n/m): the text layer has a line break at every wrapped line and none between
    paragraphs, as in most PDFs."""
    import html
    import shutil
    import subprocess

    browser = shutil.which("chromium") or shutil.which("chromium-browser") or shutil.which("google-chrome")
    if not browser:
        raise SystemExit("--format pdf needs Chromium (the Debian 'chromium' package) to print the articles")
    title = html.escape(article["title"].replace("_", " "))
    page = folder / f"{article['title']}.html"
    page.write_text(f"<html><head><meta charset='utf-8'><title>{title}</title></head><body><h1>{title}</h1>"
                    + "".join(f"<p>{html.escape(p['context'].strip())}</p>" for p in article["paragraphs"])
                    + "</body></html>", encoding="utf-8")
    pdf = page.with_suffix(".pdf")
    subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--print-to-pdf={pdf}", page.as_uri()],
                   check=True, capture_output=True, timeout=120)
    page.unlink()
    return pdf


def article_html(article: dict) -> str:
    """The article as a saved Wikipedia-style page: site navigation, a sidebar and a footer around the content, the
    source wrapped at 80 columns inside paragraphs, a superscript citation mark ("[3]") after every other sentence
    and a list of references at the end, as an encyclopedia page saved from a browser has them."""
    import html
    import textwrap

    title = html.escape(article["title"].replace("_", " "))
    marks, paragraphs = 0, []
    for paragraph in article["paragraphs"]:
        sentences = re.split(r"(?<=[.!?])\s+(?=[A-Z])", html.escape(paragraph["context"].strip()))
        cited = []
        for number, sentence in enumerate(sentences):
            if number % 2 == 0:
                marks += 1
                sentence += f"<sup class='reference'><a href='#cite_note-{marks}'>[{marks}]</a></sup>"
            cited.append(sentence)
        paragraphs.append("<p>" + textwrap.fill(" ".join(cited), 80, break_long_words=False,
                                                break_on_hyphens=False) + "</p>")
    references = "".join(f"<li id='cite_note-{n}'><a href='#cite_ref-{n}'>^</a> <cite>Source {n}. Encyclopedia "
                         f"archive, retrieved 2016.</cite></li>" for n in range(1, marks + 1))
    return (f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{title} - Wikipedia</title></head><body>"
            "<nav><ul><li><a href='/'>Main page</a></li><li><a href='/random'>Random article</a></li>"
            "<li><a href='/help'>Help</a></li></ul></nav>"
            f"<div id='content'><h1>{title}</h1><div id='siteSub'>From Wikipedia, the free encyclopedia</div>"
            f"<div class='mw-parser-output'>{''.join(paragraphs)}<h2>References</h2><ol class='references'>"
            f"{references}</ol></div></div><footer>Text is available under the Creative Commons "
            "Attribution-ShareAlike License.</footer></body></html>")


def ingest(project, articles: list[dict], folder: Path, chunking=None, file_format: str = "md") -> dict:
    from core.rag.kb import KnowledgeBase

    folder.mkdir(parents=True, exist_ok=True)
    files = []
    for article in articles:
        if file_format == "pdf":
            path = article_pdf(article, folder)
        elif file_format == "html":
            path = folder / f"{article['title']}.html"
            path.write_text(article_html(article), encoding="utf-8")
        else:
            path = folder / f"{article['title']}.md"
            path.write_text(article_markdown(article, 80 if file_format == "md-wrapped" else 0,
                                             short=file_format == "md-short"), encoding="utf-8")
        files.append((path.name, path.read_bytes()))
    kb = KnowledgeBase(project, "docs")
    started = time.perf_counter()
    results = kb.ingest(kb.add_files(files), chunking)
    return {"seconds": round(time.perf_counter() - started, 1), "documents": len(results),
            "passages": sum(r.chunks for r in results), "errors": [r.source for r in results if r.status == "error"]}


def retrieval(project, questions: list[dict], reranker: str = "rrf") -> dict:
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    searches = [(mode, mode, {}) for mode in MODES]
    if reranker == "llm":  # hybrid's first 10 reordered by the embedded model (the recipe's "llm" reranker)
        from core.assistant import recipe_backend
        from core.rag.rerank import llm_scorer
        from core.recipe import Recipe

        scorer = llm_scorer(recipe_backend(project, Recipe()))
        searches.append(("hybrid+llm", "hybrid", {"reranker": "llm", "scorer": scorer}))
    figures = {}
    for name, mode, options in searches:
        started, ranks = time.perf_counter(), []
        for item in questions:
            hits = kb.search(item["question"], mode, K, **options)
            ranks.append(next((i for i, hit in enumerate(hits, start=1) if from_paragraph(hit.text, item["paragraph"])),
                              None))
        figures[name] = {"hit@1": round(sum(r == 1 for r in ranks) / len(ranks), 3),
                         "hit@5": round(sum(r is not None for r in ranks) / len(ranks), 3),
                         "mrr": round(sum(1 / r for r in ranks if r) / len(ranks), 3),
                         "ms_per_query": round(1000 * (time.perf_counter() - started) / len(ranks), 1)}
    return figures


def ladder(project, articles: list[dict], args, emit) -> dict:
    """The five rungs on questions of held-out articles, after a LoRA run on pairs of the other articles."""
    from core.data.records import new_record
    from core.data.store import DatasetStore
    from core.evaluate import runs, variants
    from core.evaluate.steps import bootstrap_interval
    from core.fewshot import FewShotSettings
    from core.rag.retriever import RetrieverSettings
    from core.recipe import RecipeStore

    rng = random.Random(args.seed)
    order = list(articles)
    rng.shuffle(order)
    held_out, training = order[:max(1, len(order) // 4)], order[max(1, len(order) // 4):]
    eval_items = questions_of(held_out)
    rng.shuffle(eval_items)
    eval_items = eval_items[:args.eval_questions]
    train_items = questions_of(training)
    rng.shuffle(train_items)
    store = DatasetStore(project)
    store.create("eval", "eval", [new_record("eval", question=q["question"], reference=q["answers"][0],
                                             references=q["answers"]) for q in eval_items])
    pairs = [new_record("sft", prompt=q["question"], response=q["answers"][0]) for q in train_items[:args.train_pairs]]
    store.create("pairs", "sft", pairs)
    store.create("examples", "sft", pairs[:50])
    recipes = RecipeStore(project)
    recipe = recipes.load().with_changes(
        fewshot=FewShotSettings(enabled=False, dataset="examples", strategy="semantic", k=3),
        retriever=RetrieverSettings(enabled=False, knowledge_base="docs", k=3, reranker=args.reranker))
    recipes.save(recipe, note="bench")
    figures: dict = {"eval_articles": [a["title"] for a in held_out], "eval_questions": len(eval_items),
                     "train_pairs": len(pairs)}
    if args.drafted:
        figures["drafted"] = draft_pairs(project, recipes.load(), args, emit)
    if args.train_minutes > 0:
        figures["training"] = train_adapter(project, recipes, args, emit)
    started = time.perf_counter()
    rungs = variants.ladder(project, recipes.load())
    eval_run = runs.create_eval_run(project, "eval", rungs, runs.EvalOptions(semantic=False))
    runs.execute(project, eval_run.id, emit)
    figures["ladder_seconds"] = round(time.perf_counter() - started, 1)
    answers: dict[str, dict[str, str]] = collections.defaultdict(dict)
    for row in eval_run.results():
        answers[row["variant"]][row["question"]] = row["answer"]
    scores, below_f1 = {}, None
    for rung in rungs:
        if not rung.ready:
            scores[rung.key] = "not set up"
            continue
        given = answers.get(rung.key, {})
        em = [best_over(exact_match, given.get(q["question"], ""), q["answers"]) for q in eval_items]
        f1 = [best_over(f1_score, given.get(q["question"], ""), q["answers"]) for q in eval_items]
        scores[rung.key] = {"em": round(sum(em) / len(em), 3), "f1": round(sum(f1) / len(f1), 3)}
        if below_f1 is not None:  # the F1 step over the rung below, with its paired bootstrap interval
            low, high = bootstrap_interval([a - b for a, b in zip(f1, below_f1)])
            scores[rung.key]["f1_step_95"] = [round(low, 3), round(high, 3)]
        below_f1 = f1
    figures["rungs"] = scores
    return figures


def draft_pairs(project, recipe, args, emit) -> dict:
    """--drafted N: N pairs drafted from the indexed documents by the recipe's model (core.rag.drafting, as the
    Labeling page does), every draft the leakage check kept accepted unread (a person would review them), into the
    dataset the adapter trains on instead of the crowd-written pairs."""
    from core.assistant import recipe_backend
    from core.rag import drafting
    from core.data.records import label
    from core.data.store import DatasetStore

    started = time.perf_counter()
    writer = recipe_backend(project, recipe) if args.draft_writer == "model" else None  # cloze needs no model
    result = drafting.draft_into_dataset(project, writer,
                                         drafting.DraftSettings(knowledge_base="docs", count=args.drafted,
                                                                seed=args.seed, writer=args.draft_writer), "drafted",
                                         lambda fraction, message: emit(message=message))
    store = DatasetStore(project)
    records, version = store.load("drafted")
    accepted = [label(r, "accepted", "bench") if r.get("status") != "rejected" else r for r in records]
    store.save("drafted", accepted, version, note="bench: drafts accepted unread")
    return {"seconds": round(time.perf_counter() - started, 1), "drafted": result.drafted,
            "rejected_as_leaks": result.rejected_as_leaks,
            "examples": [{"question": r["prompt"], "answer": r["response"]} for r in accepted[:5]]}


def train_adapter(project, recipes, args, emit) -> dict:
    """A LoRA run (or --method) on the training pairs for at most --train-minutes, attached to the recipe."""
    from core.finetune import runs as finetune_runs
    from core.finetune.config import TrainConfig

    started = time.perf_counter()
    config = TrainConfig(dataset="drafted" if args.drafted else "pairs", method=args.method, epochs=args.epochs,
                         trainable_blocks=args.trainable_blocks,
                         lora_rank=16, lora_alpha=32, target_preset="all_linear", learning_rate=args.learning_rate,
                         batch_size=args.batch_size, eval_fraction=0.05, max_length=1024,
                         retrieval_context=args.retrieval_context,
                         seed=args.seed,
                         max_minutes=0.0 if args.stop_at_deadline else args.train_minutes)
    run = finetune_runs.create_run(project, config, recipes.load())
    deadline = time.monotonic() + 60 * args.train_minutes
    result = finetune_runs.execute(project, run.id, emit,
                                   should_stop=lambda: args.stop_at_deadline and time.monotonic() > deadline)
    if not result.get("finished"):  # --stop-at-deadline: keep what was learned, as "Stop and keep" does
        (run.folder / finetune_runs.KEEP_FILE).touch()
        result = finetune_runs.execute(project, run.id, emit)
    recipes.save(recipes.load().with_changes(adapter=run.id), note="bench adapter")
    return {"seconds": round(time.perf_counter() - started, 1), "steps": result.get("steps"),
            "stopped_by_time": bool(result.get("stopped_by_time") or result.get("stopped_by_user")),
            "eval_loss": result.get("eval_loss"),
            "first_eval_loss": result.get("first_eval_loss")}


def _drop_ladder_data(project) -> None:
    """A reused project starts its ladder afresh: datasets, recipes, runs, adapters and cached answers go."""
    import shutil

    for sub in ("datasets", "recipes", "runs", "adapters", "cache"):
        shutil.rmtree(project.path / sub, ignore_errors=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seed", type=int, default=13)
    parser.add_argument("--retrieval-questions", type=int, default=300)
    parser.add_argument("--ladder", action="store_true", help="also train an adapter and score the five rungs")
    parser.add_argument("--eval-questions", type=int, default=40)
    parser.add_argument("--train-pairs", type=int, default=1500)
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--drafted", type=int, default=0,
                        help="train the adapter on this many pairs drafted from the documents instead of the "
                             "crowd-written pairs")
    parser.add_argument("--draft-writer", default="model", choices=("model", "cloze"),
                        help="with --drafted: the recipe's model writes the questions, or fill-in-the-blank (cloze)")
    parser.add_argument("--train-minutes", type=float, default=12.0,
                        help="the run's time limit (TrainConfig.max_minutes); 0 leaves the adapter rungs out")
    parser.add_argument("--learning-rate", type=float, default=5e-4)
    parser.add_argument("--method", default="lora", choices=("lora", "partial", "full"),
                        help="partial with --trainable-blocks at the model's block count trains every block, "
                             "embeddings frozen")
    parser.add_argument("--trainable-blocks", type=int, default=2, help="partial: how many of the last blocks train")
    parser.add_argument("--retrieval-context", default="mixed", choices=("none", "mixed", "always"),
                        help="passages in the training prompts (TrainConfig.retrieval_context)")
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--stop-at-deadline", action="store_true",
                        help="for comparison: no time limit in the run; it is stopped and kept at --train-minutes "
                             "(counted from before its passages are found) with the schedule of its epochs")
    parser.add_argument("--reranker", default="rrf", choices=("rrf", "llm"),
                        help="llm: also measure retrieval with hybrid's first 10 reordered by the model, and use it "
                             "in the ladder's recipe")
    parser.add_argument("--chunk-tokens", type=int, help="passage size (default: the studio's default)")
    parser.add_argument("--overlap-tokens", type=int, help="passage overlap (default: the studio's default)")
    parser.add_argument("--format", default="md", choices=("md", "md-wrapped", "md-short", "pdf", "html"),
                        help="how the articles are given to the studio: Markdown (a paragraph per line, "
                             "hard-wrapped at 80 columns, or two sentences a paragraph), PDF printed by Chromium, "
                             "or a saved Wikipedia-style page (navigation, wrapped source, citation marks, "
                             "references)")
    parser.add_argument("--reuse", action="store_true", help="with --keep: use the documents indexed there before")
    parser.add_argument("--skip-retrieval", action="store_true")
    parser.add_argument("--keep", help="keep the studio home in this folder instead of a temporary one")
    args = parser.parse_args()
    home = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="quality-bench-"))
    os.environ["STUDIO_HOME"] = str(home)
    from core.workspace import Workspace

    from core.rag.chunking import ChunkingConfig

    started = time.perf_counter()
    articles = load_articles()
    chunking = ChunkingConfig(**{k: v for k, v in (("chunk_tokens", args.chunk_tokens),
                                                   ("overlap_tokens", args.overlap_tokens)) if v is not None})
    workspace = Workspace(home)
    report: dict = {"seed": args.seed, "articles": len(articles), "format": args.format,
                    "chunking": chunking.to_dict()}
    if args.reuse and any(p.name == "Quality bench" for p in workspace.list_projects()):
        project = workspace.get("Quality bench")  # documents indexed by an earlier run in this --keep folder
        report["ingest"] = "reused"
        _drop_ladder_data(project)
    else:
        project = workspace.create("Quality bench")
        report["ingest"] = ingest(project, articles, home / "docs", chunking, args.format)
    print(f"ingest: {report['ingest']}", file=sys.stderr)
    questions = questions_of(articles)
    random.Random(args.seed).shuffle(questions)
    stage = time.perf_counter()
    report["retrieval"] = {} if args.skip_retrieval else retrieval(project, questions[:args.retrieval_questions],
                                                                       args.reranker)
    report["retrieval_seconds"] = round(time.perf_counter() - stage, 1)
    for mode, found in report["retrieval"].items():
        print(f"retrieval {mode:10} hit@1 {found['hit@1']:.3f}  hit@5 {found['hit@5']:.3f}  MRR {found['mrr']:.3f}",
              file=sys.stderr)
    if args.ladder:
        def emit(**event):
            if event.get("message"):
                print(f"  {event['message']}", file=sys.stderr)

        report["ladder"] = ladder(project, articles, args, emit)
        for rung, found in report["ladder"]["rungs"].items():
            print(f"ladder {rung:24} {found}", file=sys.stderr)
    report["seconds"] = round(time.perf_counter() - started, 1)
    print(json.dumps(report))


if __name__ == "__main__":
    main()

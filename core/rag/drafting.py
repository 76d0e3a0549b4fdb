"""Training pairs drafted from the knowledge base's documents, for a person to accept in the labeling queue.

Analysts rarely have hundreds of labeled pairs; they have documents. For each sampled passage the drafter picks an
answer the passage states (a number or date, a name, a quoted term; else a short phrase), then asks a model for the
question that answer replies to (answer-first question writing, which even a small model does passably). The pair is
a *suggestion* (core.data.labeling): it trains nothing until someone accepts it. Drafts that a check finds too
close to an evaluation question are rejected at once, so the scoreboard never grades what the model was taught.

The writer is the recipe's model (a base model reads a few-shot text prompt; a chat model or an OpenAI-compatible
endpoint gets the instruction as a message), or any other model source. Without a model able to write questions,
the "cloze" writer turns the sentence that states the answer into a fill-in-the-blank question.
"""

from __future__ import annotations

import random
import re
import time
from dataclasses import dataclass, field
from typing import Callable

from core.data.records import new_record
from core.errors import StudioError
from core.i18n import Msg

Progress = Callable[[float, Msg], None]
DRAFTED_TAG = "drafted"
DEFAULT_DATASET = "drafted"  # where drafts go unless another training-pair dataset is named
CLOZE_TAG = "fill-in-the-blank"
MIN_PASSAGE_WORDS = 12
MAX_ANSWER_WORDS = 6
BATCH = 8
INSTRUCTION = "Write a question about the passage whose answer is the given answer."
CHECK_INSTRUCTION = "Answer the question with a short phrase from the passage."
WRITERS = ("model", "cloze")
ROUND_TRIP_F1 = 0.5  # a draft is kept when the model, reading its passage, answers it this close to the answer
# Demonstrations for models without a chat template (invented, not from any user's documents).
DEMOS = (
    ("The Eiffel Tower was completed in 1889 for the World's Fair in Paris. At 330 metres it was the tallest "
     "structure in the world for 41 years.", "1889", "In what year was the Eiffel Tower completed?"),
    ("Customers can return unused items within 30 days. Refunds go back to the original payment method within "
     "five business days.", "30 days", "How long do customers have to return unused items?"),
    ("The river Mekong rises on the Tibetan Plateau and flows through China, Myanmar, Laos, Thailand, Cambodia "
     "and Vietnam before reaching the South China Sea.", "the Tibetan Plateau", "Where does the Mekong rise?"),
)
NUMBER = re.compile(r"\b(?:\d{1,2}:\d{2}|\d{1,3}(?:[,.]\d{3})+|\d+(?:[.,]\d+)?)(?:\s?(?:%|percent|per cent|years?|months?|days?|"
                    r"hours?|minutes?|km|kilometres?|kilometers?|miles?|metres?|meters?|kg|tonnes?|euros?|dollars?|"
                    r"million|billion|people|đồng|năm|ngày))?")
# A capitalised word, or an abbreviation with its dots ("U.S.", "D.C.") kept whole.
NAME_WORD = r"(?:(?:[A-ZÀ-ỸĐ]\.){2,}|[A-ZÀ-ỸĐ][\w'’-]*)"
NAME = re.compile(rf"\b{NAME_WORD}(?:\s+(?:of|de|du|la|le|the|and|von|van|da)?\s*{NAME_WORD})*")
SENTENCE_START = re.compile(r"(?:^|(?<!\b[A-ZÀ-ỸĐ])[.!?]\s+)(\S+)")
QUOTED = re.compile(r"[\"“«]([^\"”»]{2,60})[\"”»]")


@dataclass(frozen=True)
class DraftSettings:
    knowledge_base: str = field(default="docs", metadata={"help": "Which knowledge base's passages to draft from."})
    count: int = field(default=50, metadata={"help": "How many pairs to draft."})
    seed: int = field(default=0, metadata={"help": "Which passages and answers are picked."})
    max_new_tokens: int = field(default=40, metadata={"help": "Longest drafted question, in tokens."})
    round_trip: bool = field(default=True, metadata={
        "help": "Keep only drafts the model answers correctly from their passage."})
    writer: str = field(default="model", metadata={
        "help": "Who writes the questions: 'model' (the writer model) or 'cloze' (the sentence that states the "
                "answer, the answer replaced by what / when / how many; no model)."})

    def __post_init__(self):
        if not 1 <= self.count <= 5000:
            raise StudioError(Msg("Draft between 1 and 5,000 pairs at a time."))
        if self.writer not in WRITERS:
            raise StudioError(Msg("Unknown question writer '{writer}'; use one of: {names}.", writer=self.writer,
                                  names=", ".join(WRITERS)))


@dataclass(frozen=True)
class Passage:
    source: str
    heading: str
    text: str


def candidate_answers(text: str) -> list[str]:
    """Short spans the passage states: numbers and dates, quoted terms, then names (runs of capitalised words that
    do not merely start a sentence), most specific first; each at most MAX_ANSWER_WORDS words, no repeats."""
    starts = {m.start(1) for m in SENTENCE_START.finditer(text)}
    found: list[str] = []
    for match in NUMBER.finditer(text):
        found.append(match.group(0))
    found += [m.group(1).strip() for m in QUOTED.finditer(text)]
    for match in NAME.finditer(text):
        words = match.group(0).split()
        if match.start() in starts:  # "The", "In" … open a sentence: drop the first word, keep what follows
            words = words[1:]
        if words:
            found.append(" ".join(words))
    unique: list[str] = []
    for span in found:
        span = span.strip(" ,;:()")
        if not re.search(r"\b[A-ZÀ-ỸĐ]\.$", span):  # a sentence's full stop, not an abbreviation's last dot
            span = span.rstrip(".")
        if span and len(span.split()) <= MAX_ANSWER_WORDS and span.casefold() not in {u.casefold() for u in unique}:
            unique.append(span)
    return unique


def sample_passages(rows: list[dict], count: int, seed: int) -> list[Passage]:
    """`count` passages spread over the documents: one document after another, in a seeded order."""
    by_document: dict[str, list[dict]] = {}
    for row in rows:
        if len(str(row.get("text", "")).split()) >= MIN_PASSAGE_WORDS:
            by_document.setdefault(row["source"], []).append(row)
    rng = random.Random(seed)
    queues = []
    for source in sorted(by_document):
        chunks = list(by_document[source])
        rng.shuffle(chunks)
        queues.append(chunks)
    rng.shuffle(queues)
    picked: list[Passage] = []
    while len(picked) < count and any(queues):
        for chunks in queues:
            if chunks and len(picked) < count:
                row = chunks.pop()
                picked.append(Passage(row["source"], row.get("heading") or "", row["text"].strip()))
    return picked


def question_prompt(backend, passage: Passage, answer: str):
    """The prompt that asks for the question."""
    return _writer_prompt(backend, INSTRUCTION, "Reply with the question only.",
                          [("Passage", passage.text), ("Answer", answer), ("Question", None)],
                          [[("Passage", p), ("Answer", a), ("Question", q)] for p, a, q in DEMOS])


def answer_prompt(backend, passage: Passage, question: str):
    """The round-trip check's prompt: the same model answers the drafted question from the passage."""
    return _writer_prompt(backend, CHECK_INSTRUCTION, "Reply with the answer only.",
                          [("Passage", passage.text), ("Question", question), ("Answer", None)],
                          [[("Passage", p), ("Question", q), ("Answer", a)] for p, a, q in DEMOS])


def _writer_prompt(backend, task: str, reply_rule: str, fields: list, demos: list):
    """Labelled fields, the last one left for the model: a message for a model with a chat template (or an
    endpoint), told `reply_rule`; else few-shot text (the demonstrations show the reply's form)."""
    from core.models.base import CompletionLabels, RenderedPrompt

    def block(pairs) -> str:
        return "\n".join(f"{name}: {value}" if value is not None else f"{name}:" for name, value in pairs)

    if getattr(backend, "has_chat_template", True) or getattr(backend, "approximate_tokens", False):
        messages = [{"role": "system", "content": f"{task} {reply_rule}"}, {"role": "user", "content": block(fields)}]
        return backend.render(messages, CompletionLabels())
    text = f"{task}\n\n" + "".join(block(demo) + "\n\n" for demo in demos) + block(fields)
    return RenderedPrompt((), text, True, "completion", ("\n",))


MONTH = re.compile(r"\b(?:January|February|March|April|May|June|July|August|September|October|November|December)"
                   r"\b|\b(?:tháng|ngày) \d", re.IGNORECASE)
YEAR = re.compile(r"(?:1\d|20)\d\d(?:s|'s)?")
CLOCK = re.compile(r"\d{1,2}[:h]\d{2}\b.*")
DURATION = re.compile(r"\d.*\b(?:seconds?|minutes?|hours?|days?|weeks?|months?|years?|giây|phút|giờ|ngày|tuần|"
                      r"tháng|năm)", re.IGNORECASE)
MONEY = re.compile(r"^[$£€¥₫]|\b(?:dollars?|pounds?|euros?|đồng|VND|USD|EUR)\b", re.IGNORECASE)
PERCENT = re.compile(r"%|\bper ?cent\b|phần trăm", re.IGNORECASE)
CLOZE_WORDS = 30  # a longer sentence is cut to the words around the blank
QUESTION_WORDS = {"en": {"time": "what time", "when": "when", "how long": "how long", "how much": "how much",
                         "percentage": "what percentage", "how many": "how many", "what": "what"},
                  "vi": {"time": "mấy giờ", "when": "khi nào", "how long": "bao lâu", "how much": "bao nhiêu tiền",
                         "percentage": "bao nhiêu phần trăm", "how many": "bao nhiêu", "what": "gì"}}


def question_word(answer: str, language: str = "en") -> str:
    """What a blank for this answer asks: what time, when (a year or a date), how long, how much (money), what
    percentage, how many (another number), else what."""
    if CLOCK.fullmatch(answer):
        kind = "time"
    elif YEAR.fullmatch(answer) or MONTH.search(answer):
        kind = "when"
    elif DURATION.fullmatch(answer):
        kind = "how long"
    elif MONEY.search(answer):
        kind = "how much"
    elif PERCENT.search(answer):
        kind = "percentage"
    elif answer[:1].isdigit():
        kind = "how many"
    else:
        kind = "what"
    return QUESTION_WORDS.get(language, QUESTION_WORDS["en"])[kind]


def cloze_question(sentence: str, answer: str) -> str | None:
    """The sentence that states `answer`, the answer replaced by its question word ("Tesla was born in when?"):
    stilted, but answered by its own passage by construction, so no model is needed to write or check it (cloze
    questions with a wh-word, as in Lewis et al., "Unsupervised Question Answering by Cloze Translation", 2019)."""
    from core.text import text_language

    at = sentence.find(answer)
    if at < 0 or not answer.strip():
        return None
    word = question_word(answer, text_language(sentence))
    before = len(sentence[:at].split())
    words = (sentence[:at] + word + sentence[at + len(answer):]).split()
    if len(words) > CLOZE_WORDS:
        words = words[max(0, before - CLOZE_WORDS // 2):][:CLOZE_WORDS]
    if len(words) < 4:
        return None
    text = " ".join(words).rstrip(" .;:,!?…") + "?"
    return text[0].upper() + text[1:]


def cloze_drafts(wanted: list[tuple[Passage, str]]) -> list[tuple[Passage, str, str]]:
    """(passage, answer, question) for every wanted answer a sentence of its passage states."""
    from core.rag.chunking import passage_sentences

    drafts = []
    for passage, answer in wanted:
        sentence = next((s for s in passage_sentences(passage.text) or [passage.text] if answer in s), None)
        question = cloze_question(sentence, answer) if sentence else None
        if question is not None:
            drafts.append((passage, answer, question))
    return drafts


def agrees(given: str, answer: str) -> bool:
    """Whether the check's answer matches the drafted answer: word-overlap F1 (SQuAD's normalization) at least
    ROUND_TRIP_F1."""
    from core.text import token_f1

    first_line = given.strip().splitlines()[0] if given.strip() else ""
    return bool(first_line) and token_f1(first_line, answer) >= ROUND_TRIP_F1


def clean_question(text: str, answer: str) -> str | None:
    """The drafted question, or None when it is not one: not ending in '?', too short or long, or giving the answer
    away."""
    line = next((part.strip() for part in (text or "").splitlines() if part.strip()), "")
    line = re.sub(r"^(question|q)\s*:\s*", "", line, flags=re.IGNORECASE).strip(" \"'“”")
    if "?" not in line:
        return None
    line = line[:line.index("?") + 1]
    words = line.split()
    if not 3 <= len(words) <= 30 or answer.casefold() in line.casefold():
        return None
    return line


def _generate(backend, prompts: list, settings, should_stop) -> list[str]:
    if hasattr(backend, "generate_batch"):
        return [r["text"] for r in backend.generate_batch(prompts, settings, should_stop=should_stop)]
    return [backend.stream(prompt, settings).run_to_end() for prompt in prompts]


def cloze_pairs(rows: list[dict], settings: DraftSettings, rng: random.Random) -> list[dict]:
    """Fill-in-the-blank pairs: one answer of each sampled passage, then a second one of each, … (up to 4), so a
    few documents still give the pairs asked for."""
    rounds: list[list[tuple[Passage, str]]] = []
    for passage in sample_passages(rows, settings.count * 4, settings.seed):
        # "how many" for a bare "2" or "14" asks about nothing in particular
        answers = [a for a in candidate_answers(passage.text) if not re.fullmatch(r"\d{1,2}", a)][:4]
        rng.shuffle(answers)
        for number, answer in enumerate(answers):
            if number == len(rounds):
                rounds.append([])
            rounds[number].append((passage, answer))
    drafts = unique_questions(cloze_drafts([wanted for round_ in rounds for wanted in round_]))
    return [draft_record(passage, answer, question, cloze=True) for passage, answer, question in drafts[:settings.count]]


def draft_record(passage: Passage, answer: str, question: str, cloze: bool = False) -> dict:
    """A suggested training pair that says which passage it was drafted from."""
    record = new_record("sft", prompt=question, response=answer)
    where = passage.source + (f" — {passage.heading}" if passage.heading else "")
    excerpt = passage.text if len(passage.text) <= 400 else passage.text[:400].rsplit(" ", 1)[0] + " …"
    record.update(suggestion=True, tags=[DRAFTED_TAG, CLOZE_TAG] if cloze else [DRAFTED_TAG],
                  comment=f"Drafted {time.strftime('%Y-%m-%d')} from {where}: {excerpt}")
    return record


def unique_questions(drafts: list[tuple[Passage, str, str]]) -> list[tuple[Passage, str, str]]:
    """The drafts whose question (case aside) came up first."""
    kept: dict[str, tuple[Passage, str, str]] = {}
    for draft in drafts:
        kept.setdefault(draft[2].casefold(), draft)
    return list(kept.values())


def draft_pairs(backend, rows: list[dict], settings: DraftSettings, progress: Progress | None = None,
                should_stop: Callable[[], bool] = lambda: False) -> list[dict]:
    """Suggested training pairs (sft records) drafted by `backend` from knowledge-base rows (source, heading,
    text). Passages with no usable answer or question are skipped; fewer pairs than asked may come back."""
    from core.models.generation import GenerationSettings

    progress = progress or (lambda fraction, message: None)
    rng = random.Random(settings.seed)
    if settings.writer == "cloze":
        return cloze_pairs(rows, settings, rng)
    wanted = []  # (passage, answer)
    for passage in sample_passages(rows, settings.count * 4, settings.seed):  # spares for drafts that fail
        answers = candidate_answers(passage.text)
        if answers:
            wanted.append((passage, rng.choice(answers[:4])))
    generation = GenerationSettings(temperature=0.0, max_new_tokens=settings.max_new_tokens, stop=("\n",))
    drafted: list[dict] = []
    seen: set[str] = set()
    for start in range(0, len(wanted), BATCH):
        if should_stop() or len(drafted) >= settings.count:
            break
        chunk = wanted[start:start + BATCH]
        texts = _generate(backend, [question_prompt(backend, p, a) for p, a in chunk], generation, should_stop)
        asked = []
        for (passage, answer), text in zip(chunk, texts):
            question = clean_question(text, answer)
            if question is not None and question.casefold() not in seen:
                seen.add(question.casefold())
                asked.append((passage, answer, question))
        # Round trip (as synthetic question-answering data is filtered in the field): the model answers each draft
        # from its passage; a question it answers with something else is not about that answer, and is dropped.
        checks = _generate(backend, [answer_prompt(backend, p, q) for p, _, q in asked], generation, should_stop) \
            if asked and settings.round_trip else [answer for _, answer, _ in asked]
        for (passage, answer, question), given in zip(asked, checks):
            if len(drafted) >= settings.count:
                break
            if not agrees(given, answer):
                continue
            drafted.append(draft_record(passage, answer, question))
        # Most drafts of a small model fail the check, so the pairs kept alone would leave the bar near empty until
        # the passages run out: it follows whichever is further along.
        read = start + len(chunk)
        progress(min(0.95, max(len(drafted) / settings.count, read / len(wanted))),
                 Msg("Drafted {done} of {total} pairs · {read} of {passages} passages read", done=len(drafted),
                     total=settings.count, read=read, passages=len(wanted)))
    return drafted


def reject_leaks(drafts: list[dict], eval_records: list[dict], embed=None) -> tuple[list[dict], int]:
    """The drafts with those that a pre-flight check finds (nearly) equal to an evaluation question rejected, and
    how many: training on them would grade the model on what it was taught."""
    from core.data.checks import run_checks
    from core.data.records import label

    if not drafts or not eval_records:
        return drafts, 0
    report = run_checks(drafts, "sft", embed=embed, eval_records=eval_records, eval_kind="eval")
    leaking = {finding.record_ids[0] for finding in report.by_code("leakage")}
    marked = []
    for record in drafts:
        if record["id"] in leaking:
            record = {**label(record, "rejected", "pre-flight check"),
                      "comment": record["comment"] + " · rejected: too close to an evaluation question"}
        marked.append(record)
    return marked, len(leaking)


# ---- in a project: from a knowledge base into a dataset of suggestions ------------------------------------------

@dataclass(frozen=True)
class DraftResult:
    dataset: str
    version: int
    drafted: int
    rejected_as_leaks: int


def eval_records_of(project) -> list[dict]:
    """Every record of every evaluation set of the project (what drafts must not leak into)."""
    from core.data.store import DatasetStore

    store = DatasetStore(project)
    return [record for info in store.list() if info.kind == "eval" for record in store.load(info.name)[0]]


def draft_into_dataset(project, backend, settings: DraftSettings, dataset: str = DEFAULT_DATASET,
                       progress: Progress | None = None, should_stop: Callable[[], bool] = lambda: False,
                       embed=None) -> DraftResult:
    """Drafts pairs from the knowledge base and appends them, as suggestions, to training-pair dataset `dataset`
    (created if missing): a new version, so nothing earlier is lost."""
    from core.data.store import DatasetStore
    from core.rag.kb import KnowledgeBase

    progress = progress or (lambda fraction, message: None)
    kb = KnowledgeBase(project, settings.knowledge_base)
    rows = kb.store().rows(kb.name, ["source", "heading", "text"]) if kb.documents() else []
    if not rows:
        raise StudioError(Msg("Knowledge base '{name}' has no indexed documents to draft from; add documents on the "
                              "Retriever page first.", name=settings.knowledge_base))
    store = DatasetStore(project)
    if store.exists(dataset) and store.kind(dataset) != "sft":
        raise StudioError(Msg("'{name}' is not a dataset of training pairs; pick another name.", name=dataset))
    progress(0.02, Msg("Drafting questions from {count} passages", count=len(rows)))
    drafts = draft_pairs(backend, rows, settings, progress, should_stop)
    if not drafts and should_stop():
        raise StudioError(Msg("Stopped before any pair was drafted."))
    if not drafts:
        raise StudioError(Msg("No usable question came back from the model; try another model or more passages."))
    progress(0.96, Msg("Checking the drafts against the evaluation sets"))
    drafts, leaks = reject_leaks(drafts, eval_records_of(project), embed)
    note = f"{len(drafts)} pairs drafted from knowledge base '{settings.knowledge_base}'"
    if store.exists(dataset):
        records, version = store.load(dataset)
        number = store.save(dataset, records + drafts, version, note=note)
    else:
        number = store.create(dataset, "sft", drafts, note=note)
    progress(1.0, Msg("Done"))
    return DraftResult(dataset, number, len(drafts), leaks)


# ---- as a background job: `python -m core.rag.drafting PROJECT_DIR SETTINGS_JSON DATASET MODEL_JSON` ------------

def jobs_folder(project):
    return project.subdir("runs") / "draft"


def start_job(project, settings: DraftSettings, dataset: str, model_source, adapter: str | None = None):
    import json
    from dataclasses import asdict

    from core.jobs import Job

    return Job.start(jobs_folder(project), ["-m", "core.rag.drafting", str(project.path), json.dumps(asdict(settings)),
                                            dataset, json.dumps(model_source.to_dict()), adapter or ""],
                     label="Draft pairs")


def latest_job(project):
    from core.jobs import Job

    folder = jobs_folder(project)
    started = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return Job(started[-1]) if started else None


def writer_backend(project, model_source, adapter: str | None = None):
    """The model that writes the questions: a model source, with one of the project's adapters if named."""
    from core.models.registry import get_backend

    folder = None
    if adapter:
        from core.models.adapters import AdapterRegistry

        folder = AdapterRegistry(project).get(adapter).folder
    return get_backend(model_source, adapter=folder)


def main(argv: list[str]) -> int:
    import json
    from pathlib import Path

    from core.jobs import print_event, run_job
    from core.models.embedder import embed
    from core.models.source import ModelSource
    from core.workspace import Project

    folder, settings_json, dataset, model_json, adapter = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()

    def work(should_stop) -> dict:
        settings = DraftSettings(**json.loads(settings_json))
        backend = writer_backend(project, ModelSource.from_dict(json.loads(model_json)), adapter or None) \
            if settings.writer == "model" else None
        result = draft_into_dataset(project, backend, settings, dataset,
                                    lambda fraction, message: print_event(progress=fraction, message=message),
                                    should_stop, embed)
        return {"dataset": result.dataset, "version": result.version, "drafted": result.drafted,
                "rejected": result.rejected_as_leaks}

    return run_job(work, lambda reason: Msg("Drafting failed ({reason}).", reason=reason), "drafting")


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

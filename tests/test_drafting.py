"""Training pairs drafted from documents (core/rag/drafting.py): answers the passages state, questions a model
writes for them, suggestions in a dataset, and drafts too close to an evaluation question rejected."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from core import cli
from core.rag import drafting
from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.models.base import RenderedPrompt

HOURS = ("# Opening hours\n\nThe Lyon shop opens at 9:00 and closes at 18:00, Monday to Saturday. On public holidays "
         "it closes at 14:00, and in August it is closed for 2 weeks.")
RETURNS = ("# Returns\n\nUnused items can be returned within 30 days with the receipt. The \"Green Promise\" "
           "programme recycles old tyres free of charge at the Villeurbanne workshop.")


class QuestionWriter:
    """A model that answers every drafting prompt with the question the test gives it for that answer, and each
    round-trip check with the answer it wrote that question for, unless the question is in `off_topic`."""
    has_chat_template = False
    approximate_tokens = False

    def __init__(self, questions: dict[str, str], off_topic: tuple[str, ...] = ()):
        self.questions, self.off_topic = questions, off_topic
        self.written: dict[str, str] = {}
        self.prompts: list[RenderedPrompt] = []

    def generate_batch(self, prompts, settings, should_stop=None):
        self.prompts += prompts
        out = []
        for prompt in prompts:
            if prompt.text.endswith("Answer:"):  # the round-trip check
                question = prompt.text.rsplit("\nQuestion: ", 1)[1].removesuffix("\nAnswer:")
                given = "no idea" if question in self.off_topic else self.written.get(question, "no idea")
                out.append({"text": " " + given + "\n"})
                continue
            answer = prompt.text.rsplit("Answer: ", 1)[1].split("\n", 1)[0]
            question = self.questions.get(answer, "What does the passage say about it?")
            self.written[question] = answer
            out.append({"text": " " + question + "\n"})
        return out


def test_candidate_answers_are_numbers_quotes_and_names_not_sentence_openers():
    found = drafting.candidate_answers(RETURNS.split("\n\n", 1)[1])
    assert found[:2] == ["30 days", "Green Promise"]
    assert "Villeurbanne" in found and "Unused" not in found and "The" not in found
    assert drafting.candidate_answers("closed for 2 weeks in August")[:2] == ["2", "August"]
    assert drafting.candidate_answers("The Lyon shop opens at 9:00.") == ["9:00", "Lyon"]
    assert drafting.candidate_answers("no names or numbers here at all") == []


def test_candidate_answers_keep_abbreviations_whole():
    text = "The U.S. Army was founded in 1775. It fought near Washington, D.C. in the war. Then it rested."
    found = drafting.candidate_answers(text)
    assert "U.S. Army" in found and "D.C." in found
    assert not any(span in ("U", "the U", "D") for span in found)
    assert "Then" not in found and "It" not in found  # sentence openers, not names


def test_passages_are_spread_over_documents_and_seeded():
    rows = [{"source": doc, "heading": "", "text": f"{doc} passage {n} " + "word " * 12} for doc in "abc"
            for n in range(5)]
    picked = drafting.sample_passages(rows, 6, seed=1)
    assert sorted(p.source for p in picked) == ["a", "a", "b", "b", "c", "c"]
    assert picked == drafting.sample_passages(rows, 6, seed=1)
    assert picked != drafting.sample_passages(rows, 6, seed=2)
    assert drafting.sample_passages([{"source": "a", "text": "too short"}], 3, 0) == []


@pytest.mark.parametrize("text, answer, expected", [
    (" How long can unused items be returned?\nQuestion: more", "30 days", "How long can unused items be returned?"),
    ("Question: When does the shop open?", "9:00", "When does the shop open?"),
    ("The shop opens at 9:00.", "9:00", None),                       # not a question
    ("Is it 30 days?", "30 days", None),                              # gives the answer away
    ("Why?", "x", None),                                              # too short
    ("When does the Lyon shop open? It opens early.", "9:00", "When does the Lyon shop open?"),
])
def test_drafted_questions_are_checked(text, answer, expected):
    assert drafting.clean_question(text, answer) == expected


def test_draft_into_dataset_adds_suggestions_and_rejects_leaks(project, fake_embedder):
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode()), ("returns.md", RETURNS.encode())]))
    DatasetStore(project).create("eval", "eval", [new_record("eval", question="Within how many days can unused "
                                                                            "items be returned?", reference="30")])
    leak = "Within how many days can unused items be returned?"
    writer = QuestionWriter({"30 days": leak, "Green Promise": leak, "Villeurbanne": leak,  # whichever is picked
                             "9:00": "When does the Lyon shop open?", "18:00": "When does the Lyon shop close?",
                             "14:00": "When does the shop close on public holidays?"})
    settings = drafting.DraftSettings(knowledge_base="docs", count=10, seed=0)
    result = drafting.draft_into_dataset(project, writer, settings, "drafted", embed=fake_embedder)
    records, version = DatasetStore(project).load("drafted")
    assert result.drafted == len(records) >= 2 and version == result.version == 1
    assert all(r["suggestion"] and r["tags"] == ["drafted"] and r["comment"].startswith("Drafted ") for r in records)
    assert {r["comment"].split(" from ", 1)[1].split(" —")[0] for r in records} <= {"hours.md", "returns.md"}
    leak = next(r for r in records if r["prompt"].startswith("Within how many days"))
    assert leak["status"] == "rejected" and "evaluation question" in leak["comment"] and result.rejected_as_leaks == 1
    assert all(r["status"] == "unlabeled" for r in records if r is not leak)
    assert writer.prompts[0].text.startswith(drafting.INSTRUCTION)  # a base model reads the few-shot text prompt
    again = drafting.draft_into_dataset(project, writer, drafting.DraftSettings(count=2, seed=5), "drafted",
                                        embed=fake_embedder)
    assert again.version == 2 and len(DatasetStore(project).load("drafted")[0]) == len(records) + again.drafted


def test_drafts_the_model_cannot_answer_from_their_passage_are_dropped():
    off_topic = "What is the largest animal in the world?"
    writer = QuestionWriter({"9:00": "When does the Lyon shop open?", "18:00": "When does the Lyon shop close?",
                             "14:00": off_topic, "2 weeks": off_topic, "August": off_topic, "Lyon": off_topic,
                             "Monday": off_topic, "Saturday": off_topic}, off_topic=(off_topic,))
    rows = [{"source": f"hours-{i}.md", "heading": "", "text": HOURS} for i in range(12)]
    drafts = drafting.draft_pairs(writer, rows, drafting.DraftSettings(count=10, seed=3))
    assert off_topic in writer.written  # it was drafted …
    assert drafts and off_topic not in [r["prompt"] for r in drafts]  # … and dropped by the check
    assert sum(p.text.endswith("Answer:") for p in writer.prompts) >= len(drafts)  # each kept draft was checked
    unchecked = drafting.draft_pairs(QuestionWriter(writer.questions, (off_topic,)), rows,
                                     drafting.DraftSettings(count=10, seed=3, round_trip=False))
    assert off_topic in [r["prompt"] for r in unchecked]
    assert drafting.agrees(" 9:00 on weekdays\n", "9:00") and drafting.agrees("The Green Promise", "Green Promise")
    assert not drafting.agrees("the blue whale", "14:00") and not drafting.agrees("", "14:00")


def test_the_progress_follows_the_passages_read_when_most_drafts_are_dropped():
    """A newcomer saw "Drafted 7 of 50 pairs" at a seventh of the bar after ten minutes of a run that was nearly
    through its passages."""
    off_topic = "What is the largest animal in the world?"
    writer = QuestionWriter({"9:00": "When does the Lyon shop open?"}, off_topic=(off_topic,))
    writer.questions = {answer: off_topic for answer in ("18:00", "14:00", "2 weeks", "August", "Lyon", "Monday",
                                                           "Saturday")} | writer.questions
    rows = [{"source": f"hours-{i}.md", "heading": "", "text": HOURS} for i in range(40)]
    events = []
    drafting.draft_pairs(writer, rows, drafting.DraftSettings(count=10, seed=3),
                         progress=lambda fraction, message: events.append((fraction, message)))
    fractions = [fraction for fraction, _ in events]
    assert fractions == sorted(fractions) and fractions[-1] >= 0.9  # through the passages, not at a tenth
    last = events[-1][1]
    assert str(last).startswith("Drafted ") and "passages read" in str(last)
    assert last.params["read"] == last.params["passages"]


def test_drafting_needs_documents_and_a_pair_dataset(project, fake_embedder):
    writer = QuestionWriter({})
    with pytest.raises(StudioError, match="no indexed documents"):
        drafting.draft_into_dataset(project, writer, drafting.DraftSettings(), "drafted")
    with pytest.raises(StudioError, match="between 1 and 5,000"):
        drafting.DraftSettings(count=0)


def test_the_cli_drafts_and_refuses_bad_options(project, fake_embedder, monkeypatch):
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode())]))
    monkeypatch.setattr(drafting, "writer_backend", lambda project, source: QuestionWriter(
        {"9:00": "When does the Lyon shop open?", "18:00": "When does the Lyon shop close?"}))
    monkeypatch.setattr("core.models.embedder.embed", fake_embedder)
    runner = CliRunner()
    result = runner.invoke(cli.app, ["data", "draft", project.name, "--count", "2"])
    assert result.exit_code == 0, result.output
    assert "into 'drafted' (version 1)" in result.stdout
    assert runner.invoke(cli.app, ["data", "draft", project.name, "--count", "0"]).exit_code == 2
    assert runner.invoke(cli.app, ["data", "draft", project.name, "--endpoint", "http://x/v1"]).exit_code == 2


def test_the_labeling_page_starts_a_draft_job_and_shows_its_result(project, fake_embedder, monkeypatch):
    from core.jobs import Job
    from tests.apptest_helpers import button, open_page

    assert any("No indexed documents yet" in i.value for i in open_page("labeling").info)  # nothing to draft from
    at, key, started = labeling_page_with_hours(project, monkeypatch)
    at.number_input(key=key + "draft_count").set_value(20).run()
    at.text_input(key=key + "draft_dataset").set_value("from docs").run()
    button(at, "Draft pairs").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [(_, settings, dataset, writer)] = started
    assert (settings.knowledge_base, settings.count, dataset) == ("docs", 20, "from docs") and writer.kind == "embedded"
    event = {"drafted": 12, "dataset": "from docs", "version": 1, "rejected": 2}
    job = Job.start(drafting.jobs_folder(project), ["-c", f"import json; print(json.dumps({event!r}))"], label="d")
    for _ in range(300):
        if job.status().state != "running":
            break
        import time
        time.sleep(0.1)
    at = open_page("labeling")
    assert any("Drafted 12 pairs into 'from docs' (version 1); 2 rejected" in s.value for s in at.success)


@pytest.mark.parametrize("sentence, answer, expected", [
    ("The Lyon shop opens at 9:00, Monday to Saturday.", "9:00", "The Lyon shop opens at what time, Monday to Saturday?"),
    ("Tesla was born in 1856 in Smiljan.", "1856", "Tesla was born in when in Smiljan?"),
    ("The repair costs $45 for members.", "$45", "The repair costs how much for members?"),
    ("Unused items can be returned within 30 days.", "30 days", "Unused items can be returned within how long?"),
    ("The shop sold 1,200 bikes and 40% were electric.", "1,200", "The shop sold how many bikes and 40% were electric?"),
    ("The shop sold 1,200 bikes and 40% were electric.", "40%", "The shop sold 1,200 bikes and what percentage were electric?"),
    ("The sale ends on 3 March.", "3 March", "The sale ends on when?"),
    ("The \"Green Promise\" programme recycles old tyres.", "Green Promise",
     "The \"what\" programme recycles old tyres?"),
    ("Sản phẩm được bảo hành 12 tháng.", "12 tháng", "Sản phẩm được bảo hành bao lâu?"),
    ("Khách hàng có thể đổi hàng trong 30 ngày kể từ ngày mua.", "30 ngày",
     "Khách hàng có thể đổi hàng trong bao lâu kể từ ngày mua?"),
    ("Cửa hàng mở cửa lúc 8:30 mỗi ngày.", "8:30", "Cửa hàng mở cửa lúc mấy giờ mỗi ngày?"),
    ("At 9:00.", "9:00", None),                          # too little left to ask about
    ("The shop opens at nine.", "9:00", None),            # the sentence does not state it
])
def test_cloze_questions_blank_the_answer_with_its_question_word(sentence, answer, expected):
    assert drafting.cloze_question(sentence, answer) == expected


def test_a_long_sentence_keeps_the_words_around_the_blank():
    sentence = " ".join(f"w{i}" for i in range(40)) + " Lyon " + " ".join(f"v{i}" for i in range(40)) + "."
    question = drafting.cloze_question(sentence, "Lyon")
    words = question.split()
    assert len(words) == drafting.CLOZE_WORDS and "what" in words and question.endswith("?")
    assert words.index("what") == drafting.CLOZE_WORDS // 2


class NoModel:
    def generate_batch(self, prompts, settings, should_stop=None):
        raise AssertionError("fill-in-the-blank drafting asks no model")


def test_cloze_drafting_needs_no_model_and_every_question_is_answered_by_its_passage(project, fake_embedder):
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode()), ("returns.md", RETURNS.encode())]))
    DatasetStore(project).create("eval", "eval", [new_record("eval", question="x", reference="y")])
    settings = drafting.DraftSettings(knowledge_base="docs", count=10, seed=0, writer="cloze")
    result = drafting.draft_into_dataset(project, NoModel(), settings, "drafted", embed=fake_embedder)
    records, _ = DatasetStore(project).load("drafted")
    assert result.drafted == len(records) >= 2
    passages = {"hours.md": HOURS, "returns.md": RETURNS}
    for record in records:
        assert record["suggestion"] and record["tags"] == ["drafted", drafting.CLOZE_TAG]
        assert record["prompt"].endswith("?") and record["response"] not in record["prompt"]
        source = record["comment"].split(" from ", 1)[1].split(" —")[0]
        # put the answer back in the blank: the passage states that sentence
        asked = record["prompt"].rstrip("?")
        word = next(w for w in ("what time", "how long", "how many", "how much", "when", "what")
                    if w in asked.casefold())
        start = asked.casefold().index(word)
        restored = asked[:start] + record["response"] + asked[start + len(word):]
        assert restored[1:] in passages[source], (record["prompt"], record["response"])
    assert not any(r["response"] in ("2",) for r in records)  # a bare small number asks about nothing
    with pytest.raises(StudioError, match="Unknown question writer"):
        drafting.DraftSettings(writer="oracle")


def test_the_cli_drafts_fill_in_the_blank_questions_without_loading_a_model(project, fake_embedder, monkeypatch):
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode())]))
    monkeypatch.setattr(drafting, "writer_backend", lambda *args: pytest.fail("no model is loaded for cloze"))
    monkeypatch.setattr("core.models.embedder.embed", fake_embedder)
    result = CliRunner().invoke(cli.app, ["data", "draft", project.name, "--count", "3", "--writer", "cloze"])
    assert result.exit_code == 0, result.output
    records, _ = DatasetStore(project).load("drafted")
    assert len(records) == 3 and all(drafting.CLOZE_TAG in r["tags"] for r in records)
    assert CliRunner().invoke(cli.app, ["data", "draft", project.name, "--writer", "oracle"]).exit_code != 0


def labeling_page_with_hours(project, monkeypatch):
    """The Labeling page of a project whose knowledge base holds the opening hours, with drafting jobs recorded
    instead of started: (page, widget key prefix, the start_job calls)."""
    from core.rag.kb import KnowledgeBase
    from tests.apptest_helpers import open_page

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode())]))
    started = []
    monkeypatch.setattr(drafting, "start_job", lambda *args: started.append(args))
    return open_page("labeling"), f"labeling.{project.slug}.", started


def test_the_labeling_page_offers_fill_in_the_blank_drafting(project, fake_embedder, monkeypatch):
    from tests.apptest_helpers import button

    at, key, started = labeling_page_with_hours(project, monkeypatch)
    at.radio(key=key + "draft_writer").set_value("cloze").run()
    assert any("with the answer replaced by what, when or" in c.value for c in at.caption)
    button(at, "Draft pairs").click().run()
    assert not at.exception, [e.value for e in at.exception]
    [(_, settings, dataset, _)] = started
    assert settings.writer == "cloze" and dataset == "drafted"


def test_the_drafting_job_writes_fill_in_the_blank_pairs_without_a_model(project, fake_embedder, monkeypatch, capsys):
    import json
    from dataclasses import asdict

    from core.models.source import ModelSource
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(project, "docs")
    kb.ingest(kb.add_files([("hours.md", HOURS.encode()), ("returns.md", RETURNS.encode())]))
    monkeypatch.setattr(drafting, "writer_backend", lambda *args: pytest.fail("no model is loaded for cloze"))
    monkeypatch.setattr("core.models.embedder.embed", fake_embedder)
    settings = drafting.DraftSettings(count=4, writer="cloze")
    code = drafting.main([str(project.path), json.dumps(asdict(settings)), "drafted",
                          json.dumps(ModelSource(kind="embedded").to_dict()), ""])
    assert code == 0, capsys.readouterr()
    assert len(DatasetStore(project).load("drafted")[0]) == 4

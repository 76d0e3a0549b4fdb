"""Fine-tuning data: records -> masked examples whose prompt part is exactly what inference feeds the model,
the preparation report, train/eval split, length-grouped batches and the padding collator."""

from __future__ import annotations

import random

import pytest

from conftest import TINY_CHAT_TEMPLATE, build_tokenizer
from core.data.split import MIN_EXAMPLES
from core.errors import TemplateError, TrainingError
from core.finetune.data import (Example, PreparationReport, batch_order, check_size, collate, encode_record,
                                padding_fraction, prepare_examples, split_records, training_messages)
from core.i18n import Msg
from core.models.base import CompletionLabels
from core.prompt import PromptSettings, build_messages

PROMPT = PromptSettings(system_prompt="You help {company}.", template="Q: {question}", variables={"company": "ACME"})
LABELS = CompletionLabels()
IGNORE = -100


@pytest.fixture(scope="module")
def tokenizers():
    return {True: build_tokenizer(TINY_CHAT_TEMPLATE), False: build_tokenizer()}


def sft(i=0, prompt="What is the capital of France?", response="The capital of France is Paris.", **extra) -> dict:
    return {"id": f"r{i}", "prompt": prompt, "response": response, "status": "accepted", "split": None, **extra}


def chat(*turns, **extra) -> dict:
    roles = ["user", "assistant"] * len(turns)
    return {"id": "c1", "messages": [{"role": r, "content": c} for r, c in zip(roles, turns)], "status": "unlabeled",
            **extra}


def labeled(tokenizer, ids, labels) -> str:
    return tokenizer.decode([t for t in labels if t != IGNORE])


def prompt_length(labels) -> int:
    return next(i for i, t in enumerate(labels) if t != IGNORE)


# The answer as the model must write it: the chat template's end of turn, or " answer" + EOS in the completion format.
ENDINGS = {True: lambda a: f"{a}</s>\n", False: lambda a: f" {a}</s>"}

PARITY_RECORDS = [
    sft(),
    sft(1, context="Paris has been the capital since 987.", prompt="Since when?", response="Since 987."),
    sft(2, prompt="Thủ đô của Việt Nam là gì?", response="Thủ đô của Việt Nam là Hà Nội."),
    sft(3, prompt="How many days are in a week?", response="  Seven days.  "),
]


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "base"])
@pytest.mark.parametrize("record", PARITY_RECORDS, ids=lambda r: r["id"])
def test_prompt_part_is_exactly_what_inference_feeds_the_model(tiny_backend, chat_template, record):
    backend = tiny_backend("llama", chat_template)
    tokenizer = backend.tokenizer
    rendered = backend.render(build_messages(PROMPT, record["prompt"], [], record.get("context") or ""), LABELS)
    expected = tokenizer(rendered.text, add_special_tokens=rendered.add_special_tokens)["input_ids"]

    ids, labels = encode_record(record, "sft", tokenizer, PROMPT, LABELS)
    n = prompt_length(labels)
    assert ids[:n] == expected
    assert (ids[0] == tokenizer.bos_token_id) is (not chat_template)  # BOS from the completion format only
    assert labels[:n] == [IGNORE] * n and IGNORE not in labels[n:]
    assert labels[n:] == ids[n:]
    assert labeled(tokenizer, ids, labels) == ENDINGS[chat_template](record["response"].strip())
    if not chat_template:
        assert ids[-1] == tokenizer.eos_token_id


@pytest.mark.parametrize("chat_template, expected", [
    (True, "Xin chào</s>\nfine, thanks</s>\nBye!</s>\n"),
    (False, " Xin chào\n\n fine, thanks\n\n Bye!</s>"),
], ids=["chat-template", "base"])
def test_multi_turn_chat_trains_on_every_assistant_turn(tokenizers, chat_template, expected):
    tokenizer = tokenizers[chat_template]
    record = chat("hello there", "Xin chào", "how are you today?", "fine, thanks", "goodbye", "Bye!")
    ids, labels = encode_record(record, "chat", tokenizer, PROMPT, LABELS)
    assert labeled(tokenizer, ids, labels) == expected
    # Three labeled runs (one per answer), separated by masked user turns.
    runs = sum(1 for i, t in enumerate(labels) if t != IGNORE and (i == 0 or labels[i - 1] == IGNORE))
    assert runs == 3
    masked = tokenizer.decode([i for i, t in zip(ids, labels) if t == IGNORE])
    for user_turn in ("hello there", "how are you today?", "goodbye", "You help ACME."):
        assert user_turn in masked and user_turn not in expected


def test_a_template_that_rewrites_earlier_turns_falls_back_to_the_last_answer():
    # Earlier answers render as "[old]" once a later turn follows, so turn-by-turn prefixes do not line up.
    template = ("{% for m in messages %}<|{{ m['role'] }}|>\n"
                "{% if m['role'] == 'assistant' and not loop.last %}[old]{% else %}{{ m['content'] }}{% endif %}</s>\n"
                "{% endfor %}{% if add_generation_prompt %}<|assistant|>\n{% endif %}")
    tokenizer = build_tokenizer(template)
    ids, labels = encode_record(chat("hi", "first answer", "and?", "second answer"), "chat", tokenizer, PROMPT, LABELS)
    assert labeled(tokenizer, ids, labels) == "second answer</s>\n"
    assert "[old]" in tokenizer.decode(ids)


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "base"])
def test_completion_only_false_labels_everything(tokenizers, chat_template):
    tokenizer = tokenizers[chat_template]
    ids, labels = encode_record(sft(), "sft", tokenizer, PROMPT, LABELS, completion_only=False)
    assert labels == ids and IGNORE not in labels


@pytest.mark.parametrize("record, kind, prompt, system", [
    (sft(), "sft", PROMPT, "You help ACME."),
    (sft(system="  Answer in one word.  "), "sft", PROMPT, "Answer in one word."),
    (sft(system="Custom {x}.", context="Some passage."), "sft", PROMPT, "Custom {x}.\n\nSome passage."),
    (sft(system="Custom.", context="Some passage."),
     "sft", PromptSettings(system_prompt="Use: {context}", template="{question}", variables={}),
     "Custom.\n\nSome passage."),  # the record's system wins; the context is kept
    (sft(), "sft", PromptSettings(system_prompt="", variables={}), None),
    (chat("hi", "hello"), "chat", PROMPT, "You help ACME."),
    (chat("hi", "hello"), "chat", PromptSettings(system_prompt="For {company}: {context}", variables={"company": "X"}),
     "For X:"),
    (chat("hi", "hello"), "chat", PromptSettings(system_prompt="", variables={}), None),
    ({"messages": [{"role": "system", "content": "Own system."}, {"role": "user", "content": "hi"},
                   {"role": "assistant", "content": "hello"}]}, "chat", PROMPT, "Own system."),
])
def test_system_message(record, kind, prompt, system):
    messages = training_messages(record, kind, prompt)
    systems = [m["content"] for m in messages if m["role"] == "system"]
    assert systems == ([system] if system else [])
    assert messages[0]["role"] == ("system" if system else "user")
    assert messages[-1]["role"] == "assistant"


def test_sft_messages_are_the_inference_messages_plus_the_answer():
    record = sft(context="Paris is in France.")
    expected = build_messages(PROMPT, record["prompt"], [], "Paris is in France.")
    assert training_messages(record, "sft", PROMPT) == expected + [{"role": "assistant",
                                                                    "content": record["response"]}]
    padded = chat("  hi  ", "  hello  ")
    assert [m["content"] for m in training_messages(padded, "chat", PROMPT)] == ["You help ACME.", "  hi  ", "hello"]


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "base"])
def test_vietnamese_survives_encode_and_decode(tokenizers, chat_template):
    tokenizer = tokenizers[chat_template]
    question, answer = "Làm sao để đặt lại mật khẩu?", "Mở trang cài đặt và chọn đặt lại mật khẩu. Đ Ư ợ ỹ"
    ids, labels = encode_record(sft(prompt=question, response=answer), "sft", tokenizer, PROMPT, LABELS)
    assert question in tokenizer.decode(ids)
    assert labeled(tokenizer, ids, labels) == ENDINGS[chat_template](answer)


@pytest.mark.parametrize("chat_template", [True, False], ids=["chat-template", "base"])
def test_truncation_report(tokenizers, chat_template):
    tokenizer = tokenizers[chat_template]
    long = " ".join(["The quick brown fox jumps over the lazy dog."] * 20)
    records = [
        sft(0), sft(1, prompt="How many days are in a week?", response="Seven days."),
        sft(2, response=long),  # truncated, keeps part of its answer
        sft(3, prompt=long),  # the prompt alone is too long: dropped
        sft(4, status="rejected"), sft(5, response="  "),  # skipped
        chat("hi", "hello"),  # wrong fields for an sft record: skipped
    ]
    max_length = 64
    examples, report = prepare_examples(records, "sft", tokenizer, PROMPT, LABELS, max_length)
    assert (report.total, report.used, report.truncated, report.dropped_too_long, report.skipped_invalid) == \
        (7, 3, 1, 1, 3)
    assert [e.record_id for e in examples] == ["r0", "r1", "r2"]
    assert all(len(e.input_ids) == len(e.labels) <= max_length for e in examples)
    assert len(examples[2].input_ids) == max_length
    assert report.target_tokens == sum(t != IGNORE for e in examples for t in e.labels)
    untruncated = encode_record(records[0], "sft", tokenizer, PROMPT, LABELS)
    assert (examples[0].input_ids, examples[0].labels) == untruncated
    summary = report.summary()
    assert isinstance(summary, Msg)
    assert "3 of 7 examples used" in summary and "1 truncated at 64 tokens" in summary and "1 dropped" in summary


def test_summary_when_everything_is_used(tokenizers):
    examples, report = prepare_examples([sft(0), sft(1)], "sft", tokenizers[True], PROMPT, LABELS, 256)
    assert report.summary() == f"All 2 examples used ({report.target_tokens} answer tokens to learn from)."
    assert report == PreparationReport(2, 2, 0, 0, 0, report.target_tokens, 256)


@pytest.mark.parametrize("kind, records, max_length, fragments", [
    ("preference", [sft()], 64, ["preference tuning", "training pairs or chat"]),
    ("eval", [sft()], 64, ["evaluating", "training pairs or chat"]),
    ("sft", [], 64, ["no records"]),
    ("sft", [sft(0, prompt="x " * 200), sft(1, prompt="y " * 200)], 64, ["All 2 examples are too long",
                                                                          "Raise the max length", "64"]),
    ("sft", [sft(0, status="rejected"), sft(1, response="")], 64, ["None of the 2 records", "rejected"]),
    ("chat", [{"id": "a", "messages": [{"role": "user", "content": "only a question"}]}], 64,
     ["None of the 1 records", "user and one assistant"]),
    ("sft", [sft(0, status="rejected"), sft(1, prompt="x " * 200)], 64, ["1 skipped as rejected",
                                                                         "1 dropped", "raise the max length"]),
])
def test_preparation_errors_say_what_to_do(tokenizers, kind, records, max_length, fragments):
    with pytest.raises(TrainingError) as caught:
        prepare_examples(records, kind, tokenizers[True], PROMPT, LABELS, max_length)
    message = caught.value.args[0]
    assert isinstance(message, Msg)
    for fragment in fragments:
        assert fragment in message


def test_a_broken_prompt_is_reported_not_counted_as_invalid_records(tokenizers):
    broken = PromptSettings(template="Q: {question} {missing}")
    with pytest.raises(TemplateError):
        prepare_examples([sft()], "sft", tokenizers[True], broken, LABELS, 64)


def rows(n: int, splits=None) -> list[dict]:
    return [sft(i, split=(splits[i] if splits else None)) for i in range(n)]


def test_split_honours_split_fields():
    records = rows(6, ["train", "eval", None, "eval", "train", "eval"])
    records[5]["status"] = "rejected"
    for fraction in (0.0, 0.2, 0.5):  # the records' own split wins over the share
        train, held_out = split_records(records, fraction, seed=1)
        assert [r["id"] for r in train] == ["r0", "r2", "r4"]
        assert [r["id"] for r in held_out] == ["r1", "r3"]


def test_split_is_seeded_when_no_record_has_one():
    records = rows(40)
    train, held_out = split_records(records, 0.25, seed=7)
    assert len(held_out) == 10 and len(train) == 30
    assert sorted(r["id"] for r in train + held_out) == sorted(r["id"] for r in records)
    again = split_records(records, 0.25, seed=7)
    assert [r["id"] for r in again[1]] == [r["id"] for r in held_out]
    assert {r["id"] for r in split_records(records, 0.25, seed=8)[1]} != {r["id"] for r in held_out}
    assert all(r["split"] is None for r in records)  # the caller's records are not changed


@pytest.mark.parametrize("n, fraction, expected", [(40, 0.0, (40, 0)), (2, 0.01, (1, 1)), (3, 0.5, (1, 2)),
                                                   (10, 0.1, (9, 1)), (1, 0.5, (1, 0)), (0, 0.1, (0, 0))])
def test_split_sizes(n, fraction, expected):
    train, held_out = split_records(rows(n), fraction, seed=0)
    assert (len(train), len(held_out)) == expected


@pytest.mark.parametrize("n, ok", [(0, False), (MIN_EXAMPLES - 1, False), (MIN_EXAMPLES, True), (500, True)])
def test_check_size(n, ok):
    if ok:
        check_size(n)
        return
    with pytest.raises(TrainingError, match=f"at least {MIN_EXAMPLES} training examples"):
        check_size(n)


@pytest.mark.parametrize("group", [True, False], ids=["grouped", "random"])
@pytest.mark.parametrize("batch_size", [1, 4, 7])
def test_batch_order_covers_every_index_once_and_is_deterministic(group, batch_size):
    lengths = [random.Random(i).randint(1, 500) for i in range(403)]
    batches = batch_order(lengths, batch_size, seed=3, epoch=0, group_by_length=group)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    assert all(1 <= len(b) <= batch_size for b in batches)
    assert sum(len(b) < batch_size for b in batches) <= (2 if group else 1)  # the last of each mega-batch
    assert batch_order(lengths, batch_size, seed=3, epoch=0, group_by_length=group) == batches
    if batch_size > 1:
        assert batch_order(lengths, batch_size, seed=3, epoch=1, group_by_length=group) != batches
        assert batch_order(lengths, batch_size, seed=4, epoch=0, group_by_length=group) != batches


def test_grouped_batches_have_much_less_padding():
    lengths = [random.Random(i).choice([8, 12, 30, 60, 200, 480]) + random.Random(-i).randint(0, 5) for i in range(800)]
    grouped = padding_fraction(batch_order(lengths, 8, 0, 0, True), lengths)
    plain = padding_fraction(batch_order(lengths, 8, 0, 0, False), lengths)
    assert grouped < 0.1 < 0.5 < plain


@pytest.mark.parametrize("batches, lengths, expected", [
    ([[0, 1]], [4, 4], 0.0), ([[0, 1]], [2, 6], 4 / 12), ([[0], [1]], [2, 6], 0.0), ([], [], 0.0),
])
def test_padding_fraction(batches, lengths, expected):
    assert padding_fraction(batches, lengths) == pytest.approx(expected)


def test_collate_pads_on_the_right_and_masks_padding():
    examples = [Example([5, 6, 7, 8], [IGNORE, IGNORE, 7, 8], "a"), Example([9, 10], [IGNORE, 10], "b")]
    batch = collate(examples, pad_id=0)
    assert {k: tuple(v.shape) for k, v in batch.items()} == {"input_ids": (2, 4), "attention_mask": (2, 4),
                                                            "labels": (2, 4)}
    assert batch["input_ids"].tolist() == [[5, 6, 7, 8], [9, 10, 0, 0]]
    assert batch["attention_mask"].tolist() == [[1, 1, 1, 1], [1, 1, 0, 0]]
    assert batch["labels"].tolist() == [[IGNORE, IGNORE, 7, 8], [IGNORE, 10, IGNORE, IGNORE]]
    assert all(str(v.dtype) == "torch.int64" for v in batch.values())


def test_examples_from_a_real_preparation_collate(tokenizers):
    tokenizer = tokenizers[False]
    examples, _ = prepare_examples([sft(0), sft(1, prompt="How many days are in a week?", response="Seven.")], "sft",
                                   tokenizer, PROMPT, LABELS, 128)
    batch = collate(examples, tokenizer.pad_token_id)
    lengths = batch["attention_mask"].sum(dim=1).tolist()
    assert lengths == [len(e.input_ids) for e in examples]
    for row, example in enumerate(examples):
        assert batch["labels"][row, :lengths[row]].tolist() == example.labels


def test_unreviewed_suggestions_train_nothing_until_accepted(tokenizers):
    from core.data.records import label

    drafted = [sft(0, suggestion=True, status="unlabeled"),
               label(sft(1, suggestion=True, status="unlabeled"), "accepted", "me"), sft(2, status="unlabeled")]
    examples, report = prepare_examples(drafted, "sft", tokenizers[True], PROMPT, LABELS, 256)
    assert [e.record_id for e in examples] == ["r1", "r2"] and report.skipped_invalid == 1
    train, held_out = split_records(drafted, 0.0, seed=1)
    assert [r["id"] for r in train] == ["r1", "r2"] and held_out == []
    with pytest.raises(TrainingError) as caught:
        prepare_examples(drafted[:1], "sft", tokenizers[True], PROMPT, LABELS, 256)
    assert "unreviewed suggestion" in caught.value.args[0]

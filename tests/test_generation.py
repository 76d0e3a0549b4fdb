"""Local generation on tiny random models (llama, gemma3, phi), the shared GenerationStream, and the Assistant."""

from __future__ import annotations

import threading
import time

import pytest

from core import assistant
from core.data import pairs
from core.errors import StudioError
from core.fewshot import FewShotSettings
from core.models.base import CompletionLabels, render_completion
from core.models.generation import GenerationSettings, GenerationStream
from core.models.local import load_folder
from core.prompt import PromptSettings
from core.recipe import Recipe

ARCHITECTURES = {"llama": "LlamaForCausalLM", "gemma3": "Gemma3ForCausalLM", "phi": "PhiForCausalLM"}
MESSAGES = [
    {"role": "system", "content": "Be brief."},
    {"role": "user", "content": "Xin chào, bạn khỏe không?"},
    {"role": "assistant", "content": "Tôi khỏe."},
    {"role": "user", "content": "What is the capital of France?"},
]
LABELS = CompletionLabels()
GREEDY = GenerationSettings(temperature=0.0, max_new_tokens=24)


@pytest.fixture(params=[(arch, chat) for arch in ARCHITECTURES for chat in (False, True)],
                ids=[f"{arch}-{'chat' if chat else 'base'}" for arch in ARCHITECTURES for chat in (False, True)])
def model(request, tiny_backend):
    arch, chat = request.param
    return arch, chat, tiny_backend(arch, chat)


# --- GenerationStream with a fake producer --------------------------------------------------------------------

def _fake(pieces, result=(7, 3), delay=0.0, fail_after=None):
    """A producer that emits the pieces (optionally slowly), records whether it saw a cancel, then returns."""
    seen = {"emitted": 0, "cancel_seen": False}

    def produce(emit, cancel):
        for i, piece in enumerate(pieces):
            if fail_after is not None and i == fail_after:
                raise RuntimeError("boom in the model")
            if cancel.is_set():
                seen["cancel_seen"] = True
                break
            emit(piece)
            seen["emitted"] += 1
            if delay:
                time.sleep(delay)
        return result

    return produce, seen


@pytest.mark.parametrize("pieces, stop, text", [
    (["Hello ", "world", "\nQuestion: next"], ("\nQuestion:",), "Hello world"),
    (["Hello wor", "ld\nQues", "tion: more", " text"], ("\nQuestion:",), "Hello world"),
    (list("Hello world\nQuestion: more"), ("\nQuestion:",), "Hello world"),  # one character at a time
    (["Hi\n", "Q", "u", "estion", ":", "x"], ("\nQuestion:",), "Hi"),
    (["\nQuestion: at once"], ("\nQuestion:",), ""),
    (["abc###def", "ghi"], ("###", "\nUser:"), "abc"),
    (["one\nUs", "er: two ### three"], ("###", "\nUser:"), "one"),  # the earliest stop wins
    (["một hai ", "ba ###", " bốn"], ("###",), "một hai ba"),
])
def test_stop_strings_are_cut(pieces, stop, text):
    produce, seen = _fake(pieces)
    stream = GenerationStream(produce, stop)
    yielded = list(stream)
    assert stream.text == text
    assert "".join(yielded).strip() == text
    for s in stop:
        assert s not in "".join(yielded)
    assert stream.stopped_by == "stop"
    assert stream.cancel_event.is_set()  # the producer is told to stop generating


@pytest.mark.parametrize("pieces, stop", [
    (["Hello ", "world"], ()),
    (["Hello ", "world\nQuest", "ions are welcome"], ("\nQuestion:",)),  # a near miss is not a stop
    (["ends with a partial stop \nQues"], ("\nQuestion:",)),
])
def test_text_without_stop_is_complete(pieces, stop):
    produce, _ = _fake(pieces, result=(11, 5))
    stream = GenerationStream(produce, stop)
    yielded = list(stream)
    assert "".join(yielded) == "".join(pieces)
    assert stream.text == "".join(pieces).strip()
    assert stream.stopped_by == "end"
    assert (stream.prompt_tokens, stream.output_tokens) == (11, 5)
    stats = stream.stats()
    assert stats["prompt_tokens"] == 11 and stats["output_tokens"] == 5 and stats["stopped_by"] == "end"
    assert stats["total_s"] >= 0 and stats["first_token_s"] >= 0


def test_held_back_text_never_contains_a_stop_prefix_that_later_matches():
    # "\nQ" arrives before we know whether it starts a stop: it must not be shown, then taken back
    produce, _ = _fake(["Answer\n", "Q", "uestion: x"])
    stream = GenerationStream(produce, ("\nQuestion:",))
    for piece in stream:
        assert "\n" not in piece
    assert stream.text == "Answer"


def test_cancel_stops_early():
    produce, seen = _fake([f"w{i} " for i in range(200)], delay=0.005)
    stream = GenerationStream(produce)
    received = []
    for piece in stream:
        received.append(piece)
        if len(received) == 3:
            stream.cancel()
    assert seen["cancel_seen"]
    assert seen["emitted"] < 200
    assert stream.stopped_by == "cancelled"
    assert stream.text.startswith("w0 w1 w2")


def test_reader_leaving_early_cancels_the_producer():
    produce, seen = _fake([f"w{i} " for i in range(500)], delay=0.005)
    stream = GenerationStream(produce)
    iterator = iter(stream)
    next(iterator)
    iterator.close()  # the page changed: the generator is closed
    assert stream.cancel_event.is_set()
    deadline = time.time() + 5
    while not seen["cancel_seen"] and time.time() < deadline:
        time.sleep(0.01)
    assert seen["cancel_seen"]
    assert seen["emitted"] < 500


def test_errors_inside_produce_reach_the_reader():
    produce, _ = _fake(["partial ", "text ", "never shown"], fail_after=2)
    stream = GenerationStream(produce)
    received = []
    with pytest.raises(RuntimeError, match="boom in the model"):
        for piece in stream:
            received.append(piece)
    assert "".join(received) == "partial text "
    assert isinstance(stream.error, RuntimeError)


def test_error_before_any_output():
    produce, _ = _fake(["never"], fail_after=0)
    stream = GenerationStream(produce)
    with pytest.raises(RuntimeError):
        stream.run_to_end()
    assert stream.text == ""


def test_run_to_end_returns_the_text():
    produce, _ = _fake(["  padded ", "answer  "])
    assert GenerationStream(produce).run_to_end() == "padded answer"


# --- tiny local models ----------------------------------------------------------------------------------------

@pytest.mark.parametrize("arch", list(ARCHITECTURES))
def test_model_card(arch, tiny_backend, tiny_model_dir):
    backend = tiny_backend(arch)
    card = backend.card
    assert card.architecture == ARCHITECTURES[arch]
    assert card.parameters == sum(p.numel() for p in backend.model.parameters()) > 0
    assert card.context_length == backend.context_length == 256
    assert card.dtype == "float32"
    assert card.device == "cpu"
    assert card.layers == 2
    assert card.hidden_size == 32
    assert card.vocab_size == len(backend.tokenizer)
    assert card.has_chat_template is False
    assert card.weights_bytes == card.parameters * 4
    assert card.kv_cache_bytes_per_1k_tokens > 0
    assert card.estimated_memory_bytes > card.weights_bytes
    assert card.name == tiny_model_dir(arch).name
    assert tiny_backend(arch, True).card.has_chat_template is True
    assert set(card.to_dict()) >= {"architecture", "parameters", "estimated_memory_bytes"}


def test_load_folder_uses_the_given_name(tiny_model_dir):
    backend = load_folder(tiny_model_dir("llama"), name="My tiny model")
    assert backend.name == backend.card.name == "My tiny model"
    assert backend.approximate_tokens is False


def test_count_tokens(model):
    _, _, backend = model
    text = "Xin chào, bạn có khỏe không? Hello world."
    ids = backend.tokenizer(text, add_special_tokens=False)["input_ids"]
    assert backend.count_tokens(text) == len(ids) > 0
    assert backend.tokenizer.decode(ids) == text  # byte-level BPE round-trips Vietnamese exactly
    rendered = backend.render(MESSAGES, LABELS)
    expected = len(backend.tokenizer(rendered.text, add_special_tokens=rendered.add_special_tokens)["input_ids"])
    assert backend.count_tokens(rendered) == expected
    assert backend.count_tokens("") == 0


def test_render_completion_without_chat_template(tiny_backend):
    backend = tiny_backend("llama", False)
    rendered = backend.render(MESSAGES, LABELS)
    assert rendered.format == "completion"
    assert rendered.text == render_completion(MESSAGES, LABELS)
    assert rendered.text == ("Be brief.\n\nQuestion: Xin chào, bạn khỏe không?\nAnswer: Tôi khỏe.\n\n"
                             "Question: What is the capital of France?\nAnswer:")
    assert rendered.add_special_tokens is True
    assert rendered.stop == ("\nQuestion:", "\nAnswer:")  # a new question, or the answer label again
    assert rendered.messages == tuple(MESSAGES)
    # the BOS token is counted for completion prompts
    assert backend.count_tokens(rendered) == backend.count_tokens(rendered.text) + 1


def test_render_with_chat_template(tiny_backend):
    backend = tiny_backend("gemma3", True)
    rendered = backend.render(MESSAGES, LABELS)
    assert rendered.format == "chat template"
    assert rendered.text == ("<|system|>\nBe brief.</s>\n<|user|>\nXin chào, bạn khỏe không?</s>\n"
                             "<|assistant|>\nTôi khỏe.</s>\n<|user|>\nWhat is the capital of France?</s>\n"
                             "<|assistant|>\n")
    assert rendered.add_special_tokens is False
    assert rendered.stop == ()
    assert backend.count_tokens(rendered) == backend.count_tokens(rendered.text)


def test_stream_yields_text_with_exact_counts(model):
    _, _, backend = model
    rendered = backend.render(MESSAGES, LABELS)
    stream = backend.stream(rendered, GREEDY)
    pieces = list(stream)
    shown = "".join(pieces).strip()
    if stream.stopped_by == "repetition":  # a tiny random model loops: the answer keeps the text before the loop
        assert shown.startswith(stream.text) and stream.text != ""
    else:
        assert pieces and shown == stream.text != ""
    assert stream.prompt_tokens == backend.count_tokens(rendered)
    assert 0 < stream.output_tokens <= GREEDY.max_new_tokens
    assert stream.stopped_by == ("length" if stream.output_tokens == GREEDY.max_new_tokens else "end") or \
        stream.stopped_by in ("stop", "repetition")
    assert stream.first_token_s is not None and stream.total_s >= stream.first_token_s


def test_greedy_is_deterministic(model):
    _, _, backend = model
    rendered = backend.render(MESSAGES, LABELS)
    first = backend.stream(rendered, GREEDY)
    second = backend.stream(rendered, GREEDY)
    assert first.run_to_end() == second.run_to_end()
    assert first.output_tokens == second.output_tokens


def test_max_new_tokens_is_respected(tiny_backend):
    backend = tiny_backend("llama")
    rendered = backend.render(MESSAGES, LABELS)
    short = backend.stream(rendered, GenerationSettings(max_new_tokens=3))
    short.run_to_end()
    long = backend.stream(rendered, GenerationSettings(max_new_tokens=20))
    long.run_to_end()
    assert 0 < short.output_tokens <= 3
    assert short.output_tokens < long.output_tokens <= 20


def test_sampling_runs(tiny_backend):
    backend = tiny_backend("phi")
    stream = backend.stream(backend.render(MESSAGES, LABELS),
                            GenerationSettings(temperature=1.2, top_p=0.9, max_new_tokens=8))
    stream.run_to_end()
    assert 0 < stream.output_tokens <= 8


def _pick_stop(text: str) -> tuple[str, int]:
    """A 3-character piece of the text that first occurs after its start (to use as a stop string)."""
    for start in range(2, len(text) - 3):
        candidate = text[start:start + 3]
        if "\ufffd" not in candidate and candidate.strip() == candidate and text.find(candidate) == start:
            return candidate, start
    raise AssertionError(f"no usable stop string in {text!r}")


def test_stop_string_cuts_real_generation(model):
    _, _, backend = model
    rendered = backend.render(MESSAGES, LABELS)
    full = backend.stream(rendered, GREEDY)
    full_text = "".join(full)  # as shown: a tiny random model may loop, and its answer keeps the text before that
    stop, position = _pick_stop(full_text)
    cut = backend.stream(rendered, GenerationSettings(temperature=0.0, max_new_tokens=24, stop=(stop,)))
    shown = "".join(cut)
    assert stop not in shown
    assert cut.text == full_text[:position].strip()
    assert cut.stopped_by == "stop"
    assert cut.output_tokens < full.output_tokens
    assert cut.prompt_tokens == full.prompt_tokens


def test_output_count_stops_where_the_shown_text_stops(tiny_backend):
    from core.models.local import _count_until_stop

    tok = tiny_backend("llama").tokenizer
    hidden = tok.convert_tokens_to_ids("<|user|>")  # a special token the streamer does not show
    head = tok("Hello wor", add_special_tokens=False)["input_ids"]
    tail = tok("ld and more text", add_special_tokens=False)["input_ids"]
    generated = head + [hidden] + tail + [tok.eos_token_id]
    assert tok.decode(generated, skip_special_tokens=True) == "Hello world and more text"
    assert _count_until_stop(tok, generated, ()) == len(head) + 1 + len(tail)  # eos is not an output token
    counted = _count_until_stop(tok, generated, ("world",))  # the stop spans the hidden token
    assert len(head) + 1 <= counted < len(head) + 1 + len(tail)
    assert "world" not in tok.decode(generated[:counted], skip_special_tokens=True)
    assert "world" in tok.decode(generated[:counted + 1], skip_special_tokens=True)


def test_cancel_before_reading_stops_generation(model):
    _, _, backend = model
    stream = backend.stream(backend.render(MESSAGES, LABELS), GenerationSettings(max_new_tokens=200))
    stream.cancel()
    stream.run_to_end()
    assert stream.output_tokens <= 1
    assert stream.stopped_by == "cancelled"


def test_cancel_midway(tiny_backend):
    backend = tiny_backend("llama")  # its output has spaces, so the streamer hands out pieces early
    stream = backend.stream(backend.render(MESSAGES, LABELS), GenerationSettings(max_new_tokens=200))
    for _ in stream:
        stream.cancel()
    assert stream.stopped_by == "cancelled"
    assert stream.output_tokens < 200


def test_model_errors_reach_the_reader(tiny_model_dir, monkeypatch):
    backend = load_folder(tiny_model_dir("llama"))  # a private copy: its generate is broken below

    def broken_generate(**kwargs):
        raise RuntimeError("CUDA out of memory (simulated)")

    monkeypatch.setattr(backend.model, "generate", broken_generate)
    stream = backend.stream(backend.render(MESSAGES, LABELS), GREEDY)
    with pytest.raises(RuntimeError, match="out of memory"):
        stream.run_to_end()
    assert not backend.lock.locked()  # the next generation is not blocked


def test_one_generation_at_a_time(tiny_backend):
    backend = tiny_backend("gemma3")
    rendered = backend.render(MESSAGES, LABELS)
    results = []

    def run():
        results.append(backend.stream(rendered, GREEDY).run_to_end())

    threads = [threading.Thread(target=run) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert len(results) == 3 and len(set(results)) == 1  # concurrent greedy runs agree


# --- the Assistant end to end ---------------------------------------------------------------------------------

EXAMPLES = [
    {"prompt": "Giờ mở cửa?", "response": "Từ 8 giờ đến 17 giờ."},
    {"prompt": "Do you ship abroad?", "response": "Yes, to most countries."},
    {"prompt": "How do I reset my password?", "response": "Open settings and choose reset password."},
]


def _recipe(**fewshot) -> Recipe:
    return Recipe(
        prompt=PromptSettings(system_prompt="You help {company}.", template="{question}",
                              variables={"company": "ACME"}),
        fewshot=FewShotSettings(**{"enabled": True, "dataset": "examples", "strategy": "fixed", "k": 2, **fewshot}),
        generation=GenerationSettings(max_new_tokens=12),
    )


@pytest.mark.parametrize("arch, chat", [("llama", False), ("gemma3", True), ("phi", False)])
def test_answer_with_fewshot_from_project_dataset(project, tiny_backend, arch, chat):
    pairs.save_pairs(project, "examples", EXAMPLES)
    backend = tiny_backend(arch, chat)
    recipe = _recipe()
    pool = assistant.example_pool(project, recipe)
    assert [row["prompt"] for row in pool] == [row["prompt"] for row in EXAMPLES]
    prepared, stream = assistant.answer(recipe, "Can I return an item?", backend, pool)
    assert [e["prompt"] for e in prepared.examples] == ["Giờ mở cửa?", "Do you ship abroad?"]
    text = prepared.prompt.text
    assert "You help ACME." in text
    assert "Giờ mở cửa?" in text and "Từ 8 giờ đến 17 giờ." in text
    assert "How do I reset my password?" not in text  # k=2
    assert text.index("Giờ mở cửa?") < text.index("Do you ship abroad?") < text.index("Can I return an item?")
    assert prepared.prompt_tokens == backend.count_tokens(prepared.prompt)
    assert prepared.budget.context_window == 256
    assert prepared.budget.answer_reserve == 12
    answer_text = stream.run_to_end()
    assert answer_text
    assert stream.prompt_tokens == prepared.prompt_tokens
    assert 0 < stream.output_tokens <= 12


def test_answer_with_semantic_selection(project, tiny_backend, hash_embedder, monkeypatch):
    import core.models.embedder

    monkeypatch.setattr(core.models.embedder, "embed", hash_embedder)  # no MiniLM in unit tests
    pairs.save_pairs(project, "examples", EXAMPLES)
    recipe = _recipe(strategy="semantic", k=1)
    prepared, stream = assistant.answer(recipe, "I forgot my password, how to reset it?",
                                        tiny_backend("llama"), assistant.example_pool(project, recipe))
    assert [e["prompt"] for e in prepared.examples] == ["How do I reset my password?"]
    assert hash_embedder.calls  # the recipe's strategy used the embedder
    stream.run_to_end()


def test_answer_trims_examples_to_the_recipe_window(project, tiny_backend):
    pairs.save_pairs(project, "examples", EXAMPLES)
    backend = tiny_backend("llama")
    recipe = _recipe(k=3).with_changes(context_window=64)
    assert assistant.context_window(recipe, backend) == 64
    prepared, _ = assistant.answer(recipe, "Can I return an item?", backend, assistant.example_pool(project, recipe))
    assert prepared.budget.context_window == 64
    assert prepared.budget.total <= 64
    assert len(prepared.examples) < 3 and prepared.budget.dropped == 3 - len(prepared.examples)
    assert assistant.context_window(recipe.with_changes(context_window=4096), backend) == 256


def test_answer_without_fewshot_ignores_the_dataset(project, tiny_backend):
    pairs.save_pairs(project, "examples", EXAMPLES)
    recipe = _recipe(enabled=False)
    assert assistant.example_pool(project, recipe) == []
    assert assistant.example_pool(None, _recipe()) == []
    prepared, stream = assistant.answer(recipe, "Hi?", tiny_backend("llama"), [])
    assert all(e.get("starter") for e in prepared.examples)  # the built-in ones at most, none of the dataset
    assert "Giờ mở cửa" not in prepared.prompt.text
    stream.run_to_end()


@pytest.mark.parametrize("question", ["", "   ", "\n"])
def test_answer_needs_a_question(tiny_backend, question):
    with pytest.raises(StudioError, match="Type a question"):
        assistant.answer(Recipe(), question, tiny_backend("llama"), [])


@pytest.mark.parametrize("produced, limit, expected", [(22, 200, "end"), (200, 200, "length"), (5, None, "end")])
def test_an_answer_is_cut_at_max_new_tokens_only_when_it_used_them_all(produced, limit, expected):
    produce, _ = _fake(["A complete answer."], result=(30, produced))
    stream = GenerationStream(produce, (), limit)
    stream.run_to_end()
    assert stream.stopped_by == expected


def test_the_decode_rate_leaves_out_the_time_to_read_the_prompt():
    """A 4-token answer after a 2 s prompt read is not "0.7 tokens/s"."""
    stream = GenerationStream(lambda emit, cancel: (200, 4))
    stream.output_tokens, stream.first_token_s, stream.total_s = 4, 2.0, 2.3
    assert stream.decode_rate() == pytest.approx(3 / 0.3)
    stream.output_tokens = 1
    assert stream.decode_rate() == pytest.approx(1 / 2.3)

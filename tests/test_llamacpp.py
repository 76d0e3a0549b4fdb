"""The llama.cpp engine (core/models/llamacpp.py, core/models/gguf_write.py) on the real embedded model: the same
greedy answers as transformers, adapters written as GGUF, and the engine choice."""

from __future__ import annotations

import numpy as np
import pytest

from core.models import engine, registry
from core.models.base import CompletionLabels
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from test_real_model import REAL_HOME

needs_llama_cpp = pytest.mark.skipif(not engine.llama_cpp_installed(), reason="llama-cpp-python is not installed "
                                     "(make fast)")
QUESTIONS = ["What is the capital of France?", "Name three colours of the rainbow.",
             "Thủ đô của Việt Nam là gì?", "How many days are in a week?"]


@pytest.fixture
def studio_home(monkeypatch):
    REAL_HOME.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("STUDIO_HOME", str(REAL_HOME))
    return REAL_HOME


@pytest.fixture
def engines(studio_home, monkeypatch):
    """(transformers backend, llama.cpp backend) of the embedded model."""
    monkeypatch.setenv("STUDIO_ENGINE", "transformers")
    torch_backend = registry.get_backend(ModelSource())
    monkeypatch.setenv("STUDIO_ENGINE", "llama.cpp")
    fast = registry.get_backend(ModelSource())
    yield torch_backend, fast


def _prompt(backend, question: str):
    return backend.render([{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": question}],
                          CompletionLabels())


@pytest.mark.real_model
@needs_llama_cpp
def test_llama_cpp_gives_the_same_greedy_answers_as_transformers(engines):
    torch_backend, fast = engines
    assert fast.engine == "llama.cpp" and torch_backend.engine == "transformers"
    assert fast.card.dtype == "F16" and fast.card.layers == 18 and fast.card.vocab_size == 262144
    settings = GenerationSettings(max_new_tokens=24)
    prompts = [_prompt(fast, q) for q in QUESTIONS]
    assert [fast.count_tokens(p) for p in prompts] == [torch_backend.count_tokens(p) for p in prompts]
    expected = [r["text"] for r in torch_backend.generate_batch(prompts, settings)]
    assert [r["text"] for r in fast.generate_batch(prompts, settings)] == expected
    streamed = fast.stream(prompts[0], settings)
    assert streamed.run_to_end() == expected[0].strip()
    assert streamed.stats()["stopped_by"] == "stop"  # the completion format's "\nQuestion:" ended it


@pytest.mark.real_model
@needs_llama_cpp
def test_llama_cpp_stream_honours_limits_cancel_and_stop_strings(engines):
    _, fast = engines
    prompt = _prompt(fast, "Write a long story about a bike shop.")
    limited = fast.stream(prompt, GenerationSettings(max_new_tokens=5))
    limited.run_to_end()
    assert limited.output_tokens == 5 and limited.stats()["stopped_by"] == "length"
    stopped = fast.stream(prompt, GenerationSettings(max_new_tokens=60, stop=("shop",)))
    assert "shop" not in stopped.run_to_end() and stopped.stopped_by == "stop"
    cancelled = fast.stream(prompt, GenerationSettings(max_new_tokens=200))
    for piece in cancelled:
        cancelled.cancel()
    assert cancelled.stopped_by == "cancelled" and cancelled.output_tokens < 200
    asked = {"n": 0}

    def stop_after_three():
        asked["n"] += 1
        return asked["n"] > 3

    cut = fast.generate_batch([prompt, prompt], GenerationSettings(max_new_tokens=100), should_stop=stop_after_three)
    assert len(cut) == 2 and all(answer["output_tokens"] <= 6 for answer in cut)  # both stopped within a token


@pytest.mark.real_model
@needs_llama_cpp
def test_question_likelihood_scores_agree_between_engines_and_rank_the_answering_passage_first(engines):
    from core.rag.rerank import llm_scorer

    torch_backend, fast = engines
    passages = ["Bananas are rich in potassium and grow in warm countries.",
                "Paris is the capital and largest city of France.",
                "The Eiffel Tower was finished in 1889 for the World's Fair."]
    slow_scores = llm_scorer(torch_backend)("What is the capital of France?", passages)
    fast_scores = llm_scorer(fast)("What is the capital of France?", passages)
    assert np.allclose(slow_scores, fast_scores, atol=0.05)
    assert int(np.argmax(fast_scores)) == 1
    assert int(np.argmax(llm_scorer(fast)("When was the Eiffel Tower built?", passages))) == 2


@pytest.mark.real_model
@needs_llama_cpp
@pytest.mark.parametrize("rslora", [False, True])
def test_a_lora_adapter_written_as_gguf_changes_llama_cpp_as_it_changes_transformers(studio_home, tmp_path,
                                                                                    rslora, monkeypatch):
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from core.models import convert, gguf_write
    from core.models.llamacpp import LlamaCppModel, engine_file

    folder = convert.ensure_embedded()
    base_gguf = engine_file(ModelSource(), folder)
    tokenizer = AutoTokenizer.from_pretrained(str(folder))
    torch.manual_seed(0)
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False,
                                      use_rslora=rslora))
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.03)
    model.save_pretrained(tmp_path / "adapter")
    gguf_write.write_lora(base_gguf, tmp_path / "adapter", tmp_path / "adapter.gguf")
    ids = tokenizer("Question: Where is the Eiffel tower?\nAnswer:")["input_ids"]
    answer = tokenizer(" It stands in Paris, France.", add_special_tokens=False)["input_ids"]
    merged = model.merge_and_unload()
    with torch.no_grad():
        logits = merged(torch.tensor([ids + answer])).logits[0, len(ids) - 1:-1]
        expected = torch.log_softmax(logits, -1).gather(1, torch.tensor(answer)[:, None]).squeeze(1).numpy()
    tuned = LlamaCppModel("tuned", base_gguf, tokenizer, {1}, tmp_path / "adapter.gguf")
    plain = LlamaCppModel("plain", base_gguf, tokenizer, {1})
    try:
        with_adapter = np.array(tuned.continuation_logprobs([ids], answer)[0])
        without = np.array(plain.continuation_logprobs([ids], answer)[0])
    finally:
        tuned.close()
        plain.close()
    assert with_adapter.shape == expected.shape == (len(answer),)  # every answer token, in order
    error = np.abs(with_adapter - expected).max()
    assert error < 0.15  # the adapter applied, scaled as PEFT scales it
    assert np.abs(without - expected).max() > 4 * error  # and without it the probabilities differ


def test_engine_choice_follows_the_setting_and_what_llama_cpp_can_run(monkeypatch, tmp_path):
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path))  # the setting is saved there, not in the shared model home
    monkeypatch.delenv("STUDIO_ENGINE", raising=False)
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: True)
    monkeypatch.setattr(engine, "_has_gpu", lambda: False)
    embedded, folder = ModelSource(), ModelSource(kind="local", location="/models/x")
    assert engine.preference() == "auto"
    assert engine.choose(embedded).engine == "llama.cpp"
    assert engine.choose(ModelSource(kind="gguf", location="/m.gguf")).engine == "llama.cpp"
    assert engine.choose(folder).engine == "transformers"  # llama.cpp reads GGUF files only
    assert engine.choose(embedded, precision="int8").engine == "transformers"
    soft_prompt = {"config": {"method": "prefix_tuning"}}
    assert engine.choose(embedded, soft_prompt).engine == "transformers"
    assert engine.choose(embedded, {"config": {"method": "lora"}}).engine == "llama.cpp"
    engine.set_preference("transformers")
    assert engine.preference() == "transformers" and engine.choose(embedded).engine == "transformers"
    engine.set_preference("llama.cpp")
    monkeypatch.setattr(engine, "_has_gpu", lambda: True)
    choice = engine.choose(embedded)
    assert choice.engine == "transformers" and "GPU" in str(choice.reason)
    monkeypatch.setenv("STUDIO_ENGINE", "transformers")  # the environment wins over the saved setting
    assert engine.preference() == "transformers"
    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: False)
    monkeypatch.delenv("STUDIO_ENGINE")
    assert "not installed" in str(engine.choose(embedded).reason)
    with pytest.raises(Exception):
        engine.set_preference("vllm")


@pytest.mark.real_model
@needs_llama_cpp
def test_concurrent_chats_decode_together_and_answer_as_alone(engines):
    import threading

    _, fast = engines
    prompts = [_prompt(fast, q) for q in QUESTIONS]
    settings = GenerationSettings(max_new_tokens=16)
    alone = [fast.stream(p, settings).run_to_end() for p in prompts]
    streams = [fast.stream(p, settings) for p in prompts]
    answers = [None] * len(streams)
    threads = [threading.Thread(target=lambda i=i: answers.__setitem__(i, streams[i].run_to_end()))
               for i in range(len(streams))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert fast.batcher.largest_batch >= 2  # they shared steps
    assert answers == alone
    sampled = fast.stream(prompts[0], GenerationSettings(max_new_tokens=12, temperature=0.9, top_p=0.9))
    penalised = fast.stream(prompts[1], GenerationSettings(max_new_tokens=12, repetition_penalty=1.3))
    assert sampled.run_to_end() and penalised.run_to_end()
    assert sampled.output_tokens <= 12 and penalised.output_tokens <= 12


@pytest.mark.real_model
@needs_llama_cpp
def test_a_failing_step_reaches_every_reader_and_the_engine_goes_on(engines, monkeypatch):
    from core.models import llamacpp_batching

    _, fast = engines
    prompt = _prompt(fast, QUESTIONS[0])
    settings = GenerationSettings(max_new_tokens=8)
    broken = {"left": 1}
    real_step = llamacpp_batching.SequenceBatcher._step

    def step_once_broken(self, rows, free):
        if broken["left"]:
            broken["left"] -= 1
            raise RuntimeError("llama_decode returned -1")
        return real_step(self, rows, free)

    monkeypatch.setattr(llamacpp_batching.SequenceBatcher, "_step", step_once_broken)
    with pytest.raises(RuntimeError, match="llama_decode returned -1"):
        fast.stream(prompt, settings).run_to_end()
    assert fast.stream(prompt, settings).run_to_end()  # the next question is answered


@pytest.mark.real_model
@needs_llama_cpp
def test_without_examples_the_base_model_answers_on_the_answer_line_instead_of_copying_passage_labels(engines):
    """With passages and no few-shot examples the 270M base model often started its answer on a new line and copied
    the passage list ("[1] (file.pdf, p. 3)\n[2] …"; 39 of 120 held-out questions of the dev set); the completion
    format's answer may not start with a line break."""
    import dataclasses

    from core.rag.retriever import context_block
    from core.rag.store import Hit

    # The two passages hybrid search kept for the question below in SQuAD v1.1 articles (CC BY-SA 4.0).
    passages = [
        "Private schooling in the United States has been debated by educators, lawmakers and parents, since the "
        "beginnings of compulsory education in Massachusetts in 1852. The Supreme Court precedent appears to favor "
        "educational choice, so long as states may set standards for educational accomplishment. Some of the most "
        "relevant Supreme Court case law on this is as follows: Runyon v. McCrary, 427 U.S. 160 (1976); Wisconsin "
        "v. Yoder, 406 U.S. 205 (1972); Pierce v. Society of Sisters, 268 U.S. 510 (1925); Meyer v. Nebraska, 262 "
        "U.S. 390 (1923).",
        "The other category of schools are those run and partly or fully funded by private individuals, private "
        "organizations and religious groups. The ones that accept government funds are called 'aided' schools. The "
        "private 'un-aided' schools are fully funded by private parties. The standard and the quality of education "
        "is quite high. Technically, these would be categorized as private schools, but many of them have the name "
        "\"Public School\" appended to them, e.g., the Galaxy Public School in Kathmandu. Most of the middle-class "
        "families send their children to such schools, which might be in their own city or far off, like boarding "
        "schools. The medium of education is English, but as a compulsory subject, Nepali and/or the state's "
        "official language is also taught. Preschool education is mostly limited to organized neighbourhood "
        "nursery schools."]
    hits = [Hit(str(i), "d", "Private_school.md", 0, "Private school", text, 1.0) for i, text in enumerate(passages)]
    settings = GenerationSettings(max_new_tokens=40)
    for backend in engines:
        prompt = backend.render([{"role": "system", "content": "You are a helpful assistant for our company. Answer "
                                  "briefly and accurately.\n\n" + context_block(hits, cite=False)},
                                 {"role": "user", "content": "What was the first US state to have compulsory "
                                                             "education?"}],
                                CompletionLabels())
        unconstrained = dataclasses.replace(prompt, format="chat template")  # the same text, no first-token bans
        raw = backend.generate_batch([unconstrained], settings)[0]["text"]
        assert raw.lstrip().startswith("[")  # what it did: a new line, then a copy of the passage list
        answers = [backend.generate_batch([prompt], settings)[0]["text"], backend.stream(prompt, settings).run_to_end()]
        assert all(not answer.startswith(("[", "(")) and "Massachusetts" in answer for answer in answers), answers
        openers = backend.answer_start_tokens[1]
        for opener in (" (", " [", "[", "("):  # Gemma's single tokens that start a passage label's copy
            assert backend.tokenizer.encode(opener, add_special_tokens=False) in ([i] for i in openers)

"""The real embedded models: Gemma 3 270M (converted once from the bundled GGUF) and the MiniLM embedder.

The first run converts the GGUF into a safetensors cache (~45 s on 2 CPU cores). The cache lives in a fixed,
git-ignored folder of the repository (.studio-home, or $STUDIO_TEST_REAL_HOME; test_browser.py shares it),
so every test in this module and later runs reuse it.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from core.models import convert, registry
from core.models.base import CompletionLabels
from core.models.generation import GenerationSettings
from core.models.source import ModelSource

pytestmark = pytest.mark.real_model

REPO = Path(__file__).resolve().parent.parent
REAL_HOME = Path(os.environ.get("STUDIO_TEST_REAL_HOME") or REPO / ".studio-home")


@pytest.fixture
def studio_home(monkeypatch):
    """Overrides the per-test tmp STUDIO_HOME of conftest: this module shares one converted model."""
    REAL_HOME.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("STUDIO_HOME", str(REAL_HOME))
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    return REAL_HOME


@pytest.fixture(scope="module")
def gemma():
    REAL_HOME.mkdir(parents=True, exist_ok=True)
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("STUDIO_HOME", str(REAL_HOME))
        patch.setenv("HF_HUB_OFFLINE", "1")
        events = []
        backend = registry.get_backend(ModelSource(), progress=lambda f, m: events.append((f, m)))
    if events:  # converted in this run: progress went forward and ended ready
        fractions = [f for f, _ in events]
        assert fractions == sorted(fractions) and events[-1] == (1.0, "Ready")
    yield backend
    registry.forget_backend(ModelSource())


def test_model_card(gemma):
    card = gemma.card
    assert card.architecture == "Gemma3ForCausalLM"
    assert card.model_type == "gemma3_text"
    assert 260_000_000 < card.parameters < 275_000_000  # ~268M
    assert card.context_length == gemma.context_length == 32768
    assert card.dtype == ("float32" if card.device == "cpu" else "bfloat16")
    assert card.layers == 18
    assert card.vocab_size == 262144


def test_converted_cache_folder(gemma, studio_home):
    folder = convert.embedded_folder()
    assert folder == REAL_HOME / "models" / "gemma-3-270m"
    assert (folder / convert.READY_MARKER).is_file()
    assert (folder / "config.json").is_file()
    assert (folder / "model.safetensors").stat().st_size > 500_000_000
    assert convert.is_converted(folder)
    assert registry.needs_conversion(ModelSource()) is False
    assert not [p for p in folder.parent.iterdir() if p.name.startswith(".gemma-3-270m.")]  # no staging left


def test_short_greedy_answer(gemma):
    rendered = gemma.render([{"role": "user", "content": "What is the capital of France?"}], CompletionLabels())
    settings = GenerationSettings(temperature=0.0, max_new_tokens=16)
    stream = gemma.stream(rendered, settings)
    text = stream.run_to_end()
    assert text
    assert "paris" in text.lower()
    assert stream.prompt_tokens == gemma.count_tokens(rendered)
    assert 0 < stream.output_tokens <= 16
    assert "\nQuestion:" not in text
    again = gemma.stream(rendered, settings)
    assert again.run_to_end() == text  # greedy is repeatable


def test_concurrent_chats_are_batched_and_answer_as_alone(gemma):
    import threading

    from core.models.local import LocalModel

    backend = LocalModel(gemma.name, gemma.model, gemma.tokenizer)  # its own batcher, the same weights
    settings = GenerationSettings(temperature=0.0, max_new_tokens=24)
    questions = ["What is the capital of France?", "Name a colour of the sky.", "Bạn có sửa xe đạp không?",
                 "How many days are in a week?"]
    prompts = [backend.render([{"role": "user", "content": q}], CompletionLabels()) for q in questions]
    alone = [backend.stream(p, settings).run_to_end() for p in prompts]
    streams = [backend.stream(p, settings) for p in prompts]
    threads = [threading.Thread(target=s.run_to_end) for s in streams]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert [s.text for s in streams] == alone
    assert backend.batcher.largest_batch >= 2  # answered together (all four, unless a thread started late)


def test_embedder_returns_unit_vectors_and_ranks_paraphrases():
    from core.models.embedder import embed

    texts = ["How do I reset my password?", "I forgot my password, how can I change it?",
             "The weather in Hanoi is hot in the summer."]
    vectors = embed(texts)
    assert vectors.shape == (3, 384)
    assert vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-4)
    paraphrase, unrelated = float(vectors[0] @ vectors[1]), float(vectors[0] @ vectors[2])
    assert paraphrase > unrelated + 0.3
    np.testing.assert_allclose(embed(texts[:1])[0], vectors[0], atol=1e-6)  # cached, stable
    assert embed([]).shape == (0, 384)


VIETNAMESE = "Cửa hàng mở cửa từ 8 giờ đến 18 giờ, thứ Hai đến thứ Sáu. Phở bò giá bao nhiêu? Đường phố Hà Nội."


def test_vietnamese_counts_exactly_and_round_trips(gemma):
    tokenizer = gemma.tokenizer
    ids = tokenizer(VIETNAMESE, add_special_tokens=False)["input_ids"]
    assert gemma.count_tokens(VIETNAMESE) == len(ids) > 0
    assert tokenizer.decode(ids) == VIETNAMESE  # every diacritic survives encoding


def test_vietnamese_prompt_streams_with_diacritics_intact(gemma):
    from core import assistant
    from core.models.generation import GenerationSettings
    from core.prompt import PromptSettings
    from core.recipe import Recipe

    recipe = Recipe(prompt=PromptSettings(system_prompt="Bạn là trợ lý của {company}.", variables={"company": "Xe Đạp Sài Gòn"},
                                          user_label="Câu hỏi", assistant_label="Trả lời"),
                    generation=GenerationSettings(max_new_tokens=12))
    prepared, stream = assistant.answer(recipe, "Cửa hàng mở cửa lúc mấy giờ?", gemma, [])
    assert "Bạn là trợ lý của Xe Đạp Sài Gòn." in prepared.prompt.text
    assert prepared.prompt.text.endswith("Câu hỏi: Cửa hàng mở cửa lúc mấy giờ?\nTrả lời:")
    assert prepared.budget.used == gemma.count_tokens(prepared.prompt)
    stream.run_to_end()
    assert stream.output_tokens > 0 and "\nCâu hỏi:" not in stream.text


def test_short_lora_run_on_the_embedded_model_lowers_eval_loss(gemma, tmp_path, monkeypatch):
    """A real LoRA run (about a minute on 2 cores): the sample's pairs train, its eval set measures."""
    import json

    from core.data.records import new_record
    from core.data.store import DatasetStore
    from core.finetune import runs
    from core.models.adapters import AdapterRegistry
    from core.finetune.config import TrainConfig
    from core.recipe import Recipe
    from core.sample import SAMPLE_DIR
    from core.workspace import Workspace

    model_folder = convert.embedded_folder()  # the shared converted model; the project lives in tmp_path
    monkeypatch.setenv("STUDIO_HOME", str(tmp_path / "home"))
    project = Workspace().create("Real tuning")
    # The first 12 training pairs and the first 10 eval questions (the same facts, asked differently) keep the
    # run at about a minute; the full sample sets are several times larger.
    rows = [json.loads(line) for line in (SAMPLE_DIR / "train.jsonl").read_text().splitlines() if line.strip()][:12]
    held_out = [json.loads(line) for line in (SAMPLE_DIR / "eval.jsonl").read_text().splitlines() if line.strip()][:10]
    records = [new_record("sft", prompt=r["prompt"], response=r["response"]) | {"split": "train"} for r in rows]
    records += [new_record("sft", prompt=r["question"], response=r["reference"]) | {"split": "eval"}
                for r in held_out if r.get("reference")]
    DatasetStore(project).create("pairs", "sft", records)
    recipe = Recipe.from_dict(json.loads((SAMPLE_DIR / "recipe.json").read_text())) \
        .with_changes(model=ModelSource(kind="local", location=str(model_folder)))
    config = TrainConfig(dataset="pairs", method="lora", lora_rank=8, lora_alpha=16, epochs=3, batch_size=4,
                         learning_rate=1e-3, max_length=256)
    run = runs.create_run(project, config, recipe)
    events = []
    result = runs.execute(project, run.id, lambda **e: events.append(e))
    evals = [e["eval_loss"] for e in events if e.get("type") == "eval"]
    assert result["finished"]
    assert min(evals[1:]) < evals[0] * 0.9, evals  # at least 10% lower than before training
    assert AdapterRegistry(project).get(run.id).metrics["eval_loss"] == min(evals)

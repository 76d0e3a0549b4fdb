"""Training with retrieved passages: pairs get the context block the recipe's retriever would give them at
inference, so an adapter learns to answer from passages (the "+ adapter + retriever" rung)."""

from __future__ import annotations

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import TrainingError
from core.finetune import runs
from core.finetune.config import TrainConfig
from core.finetune.data import IGNORE, encode_record, with_retrieved_context
from core.models.source import ModelSource
from core.rag import kb as kb_module
from core.rag.kb import KnowledgeBase
from core.rag.retriever import RetrieverSettings
from core.models.generation import GenerationSettings
from core.recipe import Recipe, RecipeStore

DOC = """# Opening hours

The shop opens at 9:00 on weekdays and closes at 18:00.

# Warranty

Frames have a ten-year warranty against defects.
"""


def test_pairs_get_passages_as_asked():
    records = [{"id": "a", "prompt": "When do you open?", "response": "At 9."},
               {"id": "b", "prompt": "Own context?", "response": "Yes.", "context": "Given."},
               {"id": "c", "prompt": "Nothing relevant?", "response": "No."}]
    lookup = {"When do you open?": "Context:\n[1] opens at 9", "Nothing relevant?": ""}.get
    assert with_retrieved_context(records, lookup, "none") == records
    always = with_retrieved_context(records, lookup, "always")
    assert [(r["id"], r.get("context")) for r in always] == [("a+passages", "Context:\n[1] opens at 9"),
                                                             ("b", "Given."), ("c", None)]
    mixed = with_retrieved_context(records, lookup, "mixed")
    assert [r["id"] for r in mixed] == ["a", "a+passages", "b", "c"]
    assert records[0].get("context") is None  # the input is not changed


@pytest.fixture
def indexed_project(project, tiny_model_dir, monkeypatch):
    from conftest import HashEmbedder

    monkeypatch.setattr(kb_module, "_embed", HashEmbedder(dims=384))  # the embedded model's width
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    base = KnowledgeBase(project, "docs")
    base.ingest(base.add_files([("shop.md", DOC.encode("utf-8"))]))
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))),
                    retriever=RetrieverSettings(enabled=True, min_similarity=0.0, k=2),
                    generation=GenerationSettings(max_new_tokens=16))  # the tiny model reads 256 tokens at most
    RecipeStore(project).save(recipe)
    return project, recipe


def test_training_prompt_with_passages_is_the_inference_prompt(indexed_project, tiny_backend):
    from core import assistant

    project, recipe = indexed_project
    backend = tiny_backend("llama")
    question = "When does the shop open on weekdays?"
    lookup = runs.passage_lookup(project, {"retriever": recipe.retriever.to_dict()}, backend.has_chat_template)
    [record] = with_retrieved_context([{"id": "r", "prompt": question, "response": "At 9:00."}], lookup, "always")
    assert "opens at 9:00" in record["context"]
    ids, labels = encode_record(record, "sft", backend.tokenizer, recipe.prompt, recipe.labels)
    adapted = recipe.with_changes(adapter="the-trained-adapter")  # what the adapter is asked (no starter examples)
    prepared = assistant.prepare(adapted, question, backend, [], project)
    assert prepared.sources and not prepared.examples
    expected = backend.tokenizer(prepared.prompt.text, add_special_tokens=prepared.prompt.add_special_tokens)
    n = next(i for i, label in enumerate(labels) if label != IGNORE)
    assert ids[:n] == expected["input_ids"]


def test_runs_with_passages_need_documents_and_pairs(project, tiny_model_dir, indexed_project):
    project, recipe = indexed_project
    DatasetStore(project).create("pairs", "sft", [new_record("sft", prompt=f"When do you open {i}?", response="9.")
                                                  for i in range(10)])
    DatasetStore(project).create("chats", "chat", [])
    config = TrainConfig(dataset="pairs", retrieval_context="mixed", epochs=1, batch_size=4, lora_rank=4,
                         eval_fraction=0.0, precision="fp32", max_length=256)
    run = runs.create_run(project, config, recipe)
    events = []
    prepared = runs.prepare(project, run.spec, run.config, lambda **e: events.append(e))
    assert len(prepared.train) == 20  # each pair without and with passages
    with pytest.raises(TrainingError, match="training pairs only"):
        runs.create_run(project, config.with_changes(dataset="chats"), recipe)
    empty = recipe.with_changes(retriever=RetrieverSettings(enabled=True, knowledge_base="other"))
    with pytest.raises(TrainingError, match="indexed documents"):
        runs.create_run(project, config, empty)
    with pytest.raises(Exception, match="passage setting"):
        TrainConfig(retrieval_context="sometimes")


@pytest.mark.parametrize("chat_template", [False, True], ids=["base", "chat-template"])
def test_only_models_with_a_chat_template_are_asked_to_cite(indexed_project, tiny_backend, chat_template):
    """A small base model cannot follow "cite like [1]": it made answers longer and worse (bench/README.md)."""
    from core import assistant
    from core.rag.retriever import CITE_INSTRUCTION, PLAIN_INSTRUCTION

    project, recipe = indexed_project
    backend = tiny_backend("llama", chat_template)
    prepared = assistant.prepare(recipe, "When does the shop open on weekdays?", backend, [], project)
    asked, not_asked = (CITE_INSTRUCTION, PLAIN_INSTRUCTION) if chat_template else (PLAIN_INSTRUCTION, CITE_INSTRUCTION)
    assert asked in prepared.prompt.text and not_asked not in prepared.prompt.text

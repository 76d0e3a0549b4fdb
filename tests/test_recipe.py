"""The Assistant recipe: defaults, validation, JSON round trip and versioned saving."""

from __future__ import annotations

import json

import pytest

from core.errors import ModelLoadError, ProjectNotFoundError, StudioError
from core.fewshot import FewShotSettings
from core.models.generation import GenerationSettings
from core.models.source import ModelSource
from core.prompt import PromptSettings
from core.rag.retriever import RetrieverSettings
from core.recipe import DEFAULT_RECIPE, SCHEMA_VERSION, Recipe, RecipeStore, list_recipes


def _custom_recipe() -> Recipe:
    return Recipe(
        name="support_vi-2",
        model=ModelSource(kind="openai", location="http://localhost:11434/v1", model_name="llama3.2",
                          api_key_env="MY_KEY"),
        adapter="run-123",
        prompt=PromptSettings(system_prompt="Bạn là trợ lý của {company}.", template="Hỏi: {question}",
                              variables={"company": "Công ty ABC"}, user_label="Hỏi", assistant_label="Đáp"),
        fewshot=FewShotSettings(enabled=True, dataset="faq", strategy="mmr", k=4, seed=9, mmr_lambda=0.3),
        generation=GenerationSettings(temperature=0.7, top_p=0.9, max_new_tokens=64, repetition_penalty=1.2,
                                      stop=("\nHỏi:", "###")),
        context_window=2048,
        retriever=RetrieverSettings(enabled=True, knowledge_base="handbook", mode="fts", k=3, min_similarity=0.4,
                                    no_answer="Tôi không tìm thấy thông tin này."),
        tools=[{"name": "tra_cuu_don", "description": "Tra cứu đơn hàng.",
                "parameters": {"type": "object", "properties": {"ma": {"type": "string"}}, "required": ["ma"]}}],
    )


def test_default_recipe():
    recipe = Recipe()
    assert recipe.name == DEFAULT_RECIPE == "assistant"
    assert recipe.model == ModelSource() and recipe.model.kind == "embedded"
    assert recipe.adapter is None and not recipe.retriever.enabled
    assert recipe.context_window == 4096  # a CPU-friendly working context, raised by the user when needed
    assert recipe.fewshot.enabled is False
    assert recipe.generation.temperature == 0.0
    assert recipe.labels.user == "Question" and recipe.labels.assistant == "Answer"
    data = recipe.to_dict()
    assert data["schema"] == SCHEMA_VERSION
    assert set(data) == {"schema", "name", "model", "adapter", "prompt", "fewshot", "generation",
                         "context_window", "retriever", "tools"}
    assert data["tools"] == [] and recipe.tools == ()


@pytest.mark.parametrize("recipe", [Recipe(), _custom_recipe()], ids=["default", "custom"])
def test_round_trip(recipe):
    data = recipe.to_dict()
    assert Recipe.from_dict(data) == recipe
    # through real JSON too (tuples become lists, unicode survives)
    assert Recipe.from_dict(json.loads(json.dumps(data, ensure_ascii=False))) == recipe


def test_labels_follow_the_prompt():
    labels = _custom_recipe().labels
    assert (labels.user, labels.assistant, labels.stop) == ("Hỏi", "Đáp", "\nHỏi:")


def test_from_dict_fills_missing_sections_with_defaults():
    recipe = Recipe.from_dict({"name": "partial", "generation": {"temperature": 1.0}})
    assert recipe.name == "partial"
    assert recipe.generation == GenerationSettings(temperature=1.0)
    assert recipe.prompt == PromptSettings()
    assert recipe.model == ModelSource()
    assert Recipe.from_dict({}) == Recipe()  # a missing key means the default, also for the context window
    assert Recipe.from_dict({"context_window": None}).context_window is None  # explicit: the model's maximum


def test_with_changes_returns_a_new_recipe():
    recipe = Recipe()
    changed = recipe.with_changes(adapter="run-1")
    assert changed.adapter == "run-1" and recipe.adapter is None
    with pytest.raises(StudioError):
        recipe.with_changes(name="bad name")


@pytest.mark.parametrize("factory, error, fragment", [
    (lambda: GenerationSettings(temperature=-0.1), StudioError, "Temperature"),
    (lambda: GenerationSettings(temperature=2.5), StudioError, "Temperature"),
    (lambda: GenerationSettings(top_p=0.0), StudioError, "Top-p"),
    (lambda: GenerationSettings(top_p=1.01), StudioError, "Top-p"),
    (lambda: GenerationSettings(max_new_tokens=0), StudioError, "Max new tokens"),
    (lambda: GenerationSettings(max_new_tokens=8193), StudioError, "Max new tokens"),
    (lambda: GenerationSettings(repetition_penalty=0.4), StudioError, "Repetition penalty"),
    (lambda: GenerationSettings(repetition_penalty=2.1), StudioError, "Repetition penalty"),
    (lambda: FewShotSettings(strategy="bm25"), StudioError, "Unknown selection strategy"),
    (lambda: FewShotSettings(k=100), StudioError, "between 0 and 50"),
    (lambda: ModelSource(kind="local"), ModelLoadError, "Enter where the model is"),
    (lambda: ModelSource(kind="gguf", location="   "), ModelLoadError, "Enter where the model is"),
    (lambda: ModelSource(kind="openai", model_name="x"), ModelLoadError, "base URL"),
    (lambda: ModelSource(kind="openai", location="http://x/v1"), ModelLoadError, "model name"),
    (lambda: ModelSource(kind="ollama", location="x"), ModelLoadError, "Unknown model source 'ollama'"),
    (lambda: Recipe(name="my recipe"), StudioError, "letters, digits"),
    (lambda: Recipe(name=""), StudioError, "letters, digits"),
    (lambda: Recipe(name="x" * 41), StudioError, "at most 40"),
    (lambda: Recipe(name="../escape"), StudioError, "letters, digits"),
    (lambda: Recipe(name="công-thức"), StudioError, "letters, digits"),
    (lambda: Recipe(context_window=63), StudioError, "at least 64"),
    (lambda: Recipe.from_dict({"generation": {"temperature": 3}}), StudioError, "Temperature"),
    (lambda: Recipe.from_dict({"model": {"kind": "nope"}}), ModelLoadError, "Unknown model source"),
])
def test_invalid_values_raise(factory, error, fragment):
    with pytest.raises(error, match=fragment):
        factory()


@pytest.mark.parametrize("factory", [
    lambda: GenerationSettings(temperature=0.0, top_p=1.0, max_new_tokens=1, repetition_penalty=0.5),
    lambda: GenerationSettings(temperature=2.0, top_p=0.01, max_new_tokens=8192, repetition_penalty=2.0),
    lambda: FewShotSettings(k=0, mmr_lambda=0.0),
    lambda: FewShotSettings(k=50, mmr_lambda=1.0),
    lambda: ModelSource(kind="hub", location="google/gemma-3-270m"),
    lambda: Recipe(name="A_b-9", context_window=64),
    lambda: Recipe(name="x" * 40),
])
def test_boundary_values_accepted(factory):
    factory()


def test_generation_stop_strings_drop_empties_and_round_trip():
    settings = GenerationSettings(stop=("", "\nUser:", ""))
    assert settings.stop == ("\nUser:",)
    data = settings.to_dict()
    assert data["stop"] == ["\nUser:"]
    assert GenerationSettings.from_dict(data) == settings
    assert GenerationSettings.from_dict({**data, "unknown": 1}) == settings


def test_model_source_helpers(monkeypatch):
    source = ModelSource(kind="openai", location="http://h/v1", model_name="m", api_key_env="STUDIO_TEST_KEY")
    assert source.api_key() == ""
    monkeypatch.setenv("STUDIO_TEST_KEY", "sekret")
    assert source.api_key() == "sekret"
    assert "sekret" not in json.dumps(source.to_dict())  # keys never stored in the recipe
    assert source.describe() == "m at http://h/v1"
    assert not source.trainable and ModelSource().trainable
    assert ModelSource().key != ModelSource(kind="local", location="/x").key
    assert ModelSource.from_dict(source.to_dict()) == source


# --- versioned store -----------------------------------------------------------------------------------------

def test_load_without_saves_gives_default(project):
    store = RecipeStore(project)
    assert store.versions() == [] and store.latest() is None
    assert store.load() == Recipe()
    assert RecipeStore(project, "other").load() == Recipe(name="other")
    assert list_recipes(project) == [DEFAULT_RECIPE]


def test_save_creates_versions(project):
    store = RecipeStore(project)
    first = Recipe()
    second = first.with_changes(generation=GenerationSettings(temperature=0.5))
    assert store.save(first, note="start", author="alice") == 1
    assert store.save(second, note="warmer", author="bob") == 2
    assert sorted(p.name for p in store.folder.iterdir()) == ["v0001.json", "v0002.json"]
    versions = store.versions()
    assert [(v.number, v.note, v.author) for v in versions] == [(1, "start", "alice"), (2, "warmer", "bob")]
    assert versions[0].saved_at <= versions[1].saved_at
    assert store.load() == second
    assert store.load(1) == first
    assert store.load(2) == second
    assert store.latest().number == 2


def test_unchanged_save_makes_no_new_version(project):
    store = RecipeStore(project)
    recipe = _custom_recipe().with_changes(name=DEFAULT_RECIPE)
    assert store.save(recipe) == 1
    assert store.save(Recipe.from_dict(recipe.to_dict()), note="same again") == 1
    assert len(store.versions()) == 1
    assert store.save(recipe.with_changes(adapter=None)) == 2
    assert store.save(recipe) == 3  # going back to an earlier state is a new version, not an overwrite
    assert [v.number for v in store.versions()] == [1, 2, 3]


def test_load_unknown_version(project):
    store = RecipeStore(project)
    store.save(Recipe())
    with pytest.raises(StudioError, match="no version 7"):
        store.load(7)


def test_saved_file_is_readable_json(project):
    store = RecipeStore(project)
    store.save(_custom_recipe().with_changes(name=DEFAULT_RECIPE), note="ghi chú")
    data = json.loads((store.folder / "v0001.json").read_text(encoding="utf-8"))
    assert data["note"] == "ghi chú"
    assert data["recipe"]["prompt"]["variables"] == {"company": "Công ty ABC"}
    assert data["recipe"]["schema"] == SCHEMA_VERSION
    assert "Công ty ABC" in (store.folder / "v0001.json").read_text(encoding="utf-8")


def test_save_never_overwrites_a_version_saved_in_between(project, monkeypatch):
    store = RecipeStore(project)
    store.save(Recipe())
    stale_latest = store.latest()
    # another session saves v0002 between this session's read of the latest version and its write
    RecipeStore(project).save(Recipe().with_changes(adapter="theirs"), note="theirs")
    monkeypatch.setattr(store, "latest", lambda: stale_latest)
    assert store.save(Recipe().with_changes(adapter="mine")) == 3  # the next free number
    assert RecipeStore(project).load(2).adapter == "theirs"  # their version was not overwritten
    assert RecipeStore(project).load(3).adapter == "mine"


def test_recipes_are_listed_per_name(project):
    RecipeStore(project, "beta").save(Recipe(name="beta"))
    RecipeStore(project, "alpha").save(Recipe(name="alpha"))
    (project.subdir("recipes") / "empty").mkdir()
    assert list_recipes(project) == ["alpha", "beta"]


def test_saving_into_a_deleted_project(workspace):
    project = workspace.create("Short lived")
    store = RecipeStore(project)
    store.save(Recipe())
    workspace.delete(project, "Short lived")
    with pytest.raises(ProjectNotFoundError):
        store.save(Recipe().with_changes(adapter="x"))
    assert not project.path.exists()  # saving did not resurrect the folder

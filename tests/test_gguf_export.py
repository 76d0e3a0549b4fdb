"""GGUF export of a tuned assistant (core/finetune/gguf_export.py): the Modelfile and guide, refusals, and on the
real embedded model a file llama.cpp runs whose answers the Evaluation page's export parity compares."""

from __future__ import annotations

import uuid

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import StudioError
from core.evaluate import runs, variants
from core.finetune import gguf_export
from core.models import engine
from core.models.source import ModelSource
from core.prompt import PromptSettings
from core.recipe import Recipe, RecipeStore
from test_real_model import REAL_HOME


def test_the_modelfile_carries_the_recipes_prompt_format_and_settings():
    from core.models.generation import GenerationSettings

    recipe = Recipe(prompt=PromptSettings(system_prompt="You help {company} customers. Say \"\"\"hi\"\"\".",
                                          template="Customer asks: {question}", variables={"company": "Lumen"}),
                    generation=GenerationSettings(temperature=0.0, max_new_tokens=64, stop=("###",)),
                    context_window=2048)
    text = gguf_export.modelfile(recipe, chat_template=None)
    assert "FROM ./model.gguf" in text
    assert "Question: Customer asks: {{ .Prompt }}\nAnswer:{{ end }}{{ .Response }}" in text  # no space: as studied
    assert 'SYSTEM """You help Lumen customers. Say \'\'\'hi\'\'\'."""' in text
    assert 'PARAMETER stop "Question:"' in text and 'PARAMETER stop "###"' in text
    assert "PARAMETER num_predict 64" in text and "PARAMETER num_ctx 2048" in text
    assert "TEMPLATE" not in gguf_export.modelfile(recipe, chat_template="{{ messages }}")  # the model's own
    literal = Recipe(prompt=PromptSettings(template="{{{{raw}}}} {question}"))
    assert '{{ "{{" }}raw}} {{ .Prompt }}' in gguf_export.modelfile(literal, None)  # braces stay text in Go
    assert "Question: Customer asks: What are your opening hours?\nAnswer:" in gguf_export.guide(recipe, "Q8_0", None,
                                                                                              None)


def test_only_models_read_from_gguf_can_be_written_back(project):
    recipe = Recipe(model=ModelSource(kind="local", location="/models/some-folder"))
    with pytest.raises(StudioError, match="convert_hf_to_gguf"):
        gguf_export.export_gguf(project, recipe)


@pytest.fixture
def real_project(monkeypatch):
    from core.workspace import Workspace

    REAL_HOME.mkdir(parents=True, exist_ok=True)
    monkeypatch.setenv("STUDIO_HOME", str(REAL_HOME))
    monkeypatch.setenv("STUDIO_ENGINE", "llama.cpp")
    project = Workspace().create(f"GGUF export {uuid.uuid4().hex[:6]}")
    yield project
    Workspace().delete(project, project.name)


def _random_lora(project) -> str:
    """A registered LoRA adapter with random (non-zero) weights on the embedded model."""
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    from core.finetune.adapters import register
    from core.finetune.config import TrainConfig
    from core.models import convert
    from core.models.adapters import folder_fingerprint

    folder = convert.ensure_embedded()
    model = get_peft_model(AutoModelForCausalLM.from_pretrained(str(folder), dtype=torch.float32),
                           LoraConfig(r=4, lora_alpha=8, target_modules="all-linear", init_lora_weights=False))
    torch.manual_seed(1)
    with torch.no_grad():
        for name, parameter in model.named_parameters():
            if "lora_B" in name:
                parameter.normal_(0, 0.01)
    config = TrainConfig(dataset="pairs", method="lora", lora_rank=4, lora_alpha=8)
    register(project, "random-lora", model, config, {"base_model": ModelSource().to_dict(),
                                                     "base_fingerprint": folder_fingerprint(folder)})
    return "random-lora"


@pytest.mark.real_model
@pytest.mark.skipif(not engine.llama_cpp_installed(), reason="llama-cpp-python is not installed (make fast)")
def test_an_exported_gguf_answers_like_base_plus_adapter(real_project):
    adapter = _random_lora(real_project)
    recipe = Recipe(adapter=adapter).with_changes(generation=Recipe().generation.__class__(max_new_tokens=24))
    RecipeStore(real_project).save(recipe)
    questions = ["What is the capital of France?", "Name a colour of the sky.", "How many legs has a spider?"]
    DatasetStore(real_project).create("eval", "eval", [new_record("eval", question=q, reference="x") for q in questions])
    folder = gguf_export.export_gguf(real_project, recipe, "F16")
    assert sorted(p.name for p in folder.iterdir()) == ["Modelfile", "PROMPT_FORMAT.md", "model.gguf",
                                                        "studio-export.json"]
    assert "random-lora merged in" in (folder / "PROMPT_FORMAT.md").read_text()
    [export] = variants.merged_exports(real_project)
    assert export.gguf == str(folder / "model.gguf") and export.quantization == "F16" and export.adapter == adapter
    pair = variants.export_parity(real_project, recipe, export)
    assert pair[1].recipe.model == ModelSource(kind="gguf", location=export.gguf)
    evaluation = runs.create_eval_run(real_project, "eval", pair, runs.EvalOptions(semantic=False))
    runs.execute(real_project, evaluation.id, lambda **event: None)
    answers = {}
    for row in evaluation.results():
        answers.setdefault(row["record_id"], {})[row["variant"]] = row["answer"]
    assert all(len(set(both.values())) == 1 for both in answers.values())  # F16: the same greedy answers
    assert evaluation.models()[pair[1].key]["engine"] == "llama.cpp"

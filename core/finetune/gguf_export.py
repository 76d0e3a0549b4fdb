"""A tuned assistant as one GGUF file for llama.cpp, Ollama and LM Studio.

exports/<name>/model.gguf         the recipe's model with its adapter merged, at the chosen quantization
exports/<name>/Modelfile          `ollama create NAME -f Modelfile`: the file, the recipe's system prompt, prompt
                                  format, stop strings and generation settings
exports/<name>/PROMPT_FORMAT.md   how the studio writes prompts, and how to run the file in each tool
exports/<name>/studio-export.json what it was made from (the Evaluation page re-scores it next to base + adapter)

Only models read from a GGUF file (the embedded model, a GGUF source) can be written back: their metadata and
tokenizer come from that file (core.models.gguf_write). Retrieved passages and few-shot examples are chosen per
question by the studio, so they are not part of the file; the guide says so.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from core import atomic
from core.errors import StudioError
from core.finetune.adapters import EXPORT_MANIFEST
from core.i18n import Msg
from core.models.base import CompletionLabels, render_completion
from core.prompt import build_messages, fill
from core.recipe import Recipe
from core.workspace import Project

GGUF_FILE = "model.gguf"
MODELFILE = "Modelfile"
GUIDE = "PROMPT_FORMAT.md"
EXPORT = Msg("export")


def export_name(recipe: Recipe, quantization: str) -> str:
    base = re.sub(r"[^A-Za-z0-9_-]+", "-", recipe.adapter or "base").strip("-")[:60] or "base"
    return f"{recipe.name}-{base}-{quantization.lower()}-gguf"


def export_gguf(project: Project, recipe: Recipe, quantization: str = "Q8_0", destination: Path | None = None,
                progress=None) -> Path:
    """The export folder (see the module docstring) for the recipe's model and adapter."""
    from core.models import gguf_write
    from core.models.adapters import AdapterRegistry, source_folder
    from core.models.registry import gguf_file

    progress = progress or (lambda fraction, message: None)
    if recipe.model.kind not in ("embedded", "gguf"):
        raise StudioError(Msg("GGUF export writes models that were read from a GGUF file (the embedded model or a "
                              "GGUF source). For this model, save the merged folder and convert it with llama.cpp's "
                              "convert_hf_to_gguf.py."))
    info = AdapterRegistry(project).get(recipe.adapter) if recipe.adapter else None
    if info is not None and (info.is_reward or info.method in ("prompt_tuning", "prefix_tuning")):
        raise StudioError(Msg("Soft prompts and reward models cannot be merged into the weights, so they have no "
                              "GGUF form; export the adapter instead."))
    target = Path(destination) if destination else project.child("exports", export_name(recipe, quantization), EXPORT)
    progress(0.02, Msg("Loading the model"))
    folder = source_folder(recipe.model)
    template = gguf_file(recipe.model)
    state = gguf_write.merged_state(folder, info)
    staging = target.with_name(f".{target.name}.tmp")
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir(parents=True)
    try:
        gguf_write.write_model(template, state, staging / GGUF_FILE, quantization,
                               lambda fraction, message: progress(0.05 + 0.9 * fraction, message))
        chat = _chat_template(folder)
        (staging / MODELFILE).write_text(modelfile(recipe, chat), encoding="utf-8")
        (staging / GUIDE).write_text(guide(recipe, quantization, chat, info), encoding="utf-8")
        atomic.write_json(staging / EXPORT_MANIFEST, {
            "format": "gguf", "file": GGUF_FILE, "quantization": quantization, "adapter": recipe.adapter,
            "base_model": recipe.model.to_dict(), "recipe": recipe.to_dict(), "created": time.time()})
        shutil.rmtree(target, ignore_errors=True)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    progress(1.0, Msg("Done"))
    return target


def _chat_template(folder: Path) -> str | None:
    from transformers import AutoTokenizer

    return getattr(AutoTokenizer.from_pretrained(str(folder)), "chat_template", None) or None


def _quoted(text: str) -> str:
    """A Modelfile value in triple quotes (which cannot hold three quotes in a row)."""
    return '"""' + text.replace('"""', "'''") + '"""'


def _go_literal(text: str) -> str:
    """Text placed in an Ollama (Go) template as it is: its braces cannot start an action."""
    return text.replace("{{", '{{ "{{" }}')


def modelfile(recipe: Recipe, chat_template: str | None) -> str:
    """The Ollama Modelfile: the recipe's system prompt and settings; for a model without a chat template, the
    studio's completion format (`Question: … Answer:`) as the TEMPLATE, with its stop string."""
    settings, labels = recipe.generation, recipe.labels
    values = {**recipe.prompt.variables, "context": "", "question": ""}
    system = fill(recipe.prompt.system_prompt, values).strip()
    lines = [f"# {recipe.name}: exported by the LLM Customization Studio. Create it with:",
             "#   ollama create NAME -f Modelfile", f"FROM ./{GGUF_FILE}"]
    stops = list(settings.stop)
    if chat_template is None:
        question = _go_literal(fill(recipe.prompt.template, {**values, "question": "\0"})).replace("\0",
                                                                                               "{{ .Prompt }}")
        lines.append("TEMPLATE " + _quoted("{{ if .System }}{{ .System }}\n\n{{ end }}{{ if .Prompt }}"
                                           f"{labels.user}: {question}\n{labels.assistant}:{{{{ end }}}}"
                                           "{{ .Response }}"))
        stops.insert(0, labels.stop.strip())  # Ollama reads no escapes: "Question:" instead of "\nQuestion:"
    if system:
        lines.append("SYSTEM " + _quoted(system))
    lines += [f"PARAMETER temperature {settings.temperature:g}", f"PARAMETER top_p {settings.top_p:g}",
              f"PARAMETER num_predict {settings.max_new_tokens}",
              f"PARAMETER repeat_penalty {settings.repetition_penalty:g}"]
    if recipe.context_window:
        lines.append(f"PARAMETER num_ctx {recipe.context_window}")
    lines += [f"PARAMETER stop {_json_string(stop)}" for stop in dict.fromkeys(stops)]
    return "\n".join(lines) + "\n"


def _json_string(text: str) -> str:
    import json

    return json.dumps(text, ensure_ascii=False)


def example_prompt(recipe: Recipe, chat_template: str | None, question: str = "What are your opening hours?") -> str:
    messages = build_messages(recipe.prompt, question, [])
    if chat_template is None:
        return render_completion(messages, CompletionLabels(recipe.labels.user, recipe.labels.assistant))
    return "(the model's own chat template, applied by the tool)\n" + "\n".join(
        f"{m['role']}: {m['content']}" for m in messages)


def guide(recipe: Recipe, quantization: str, chat_template: str | None, info) -> str:
    tuned = f"the adapter {info.label} merged in" if info is not None else "no adapter"
    parts = [f"# {recipe.name} as GGUF ({quantization})", "",
             f"`{GGUF_FILE}` is the recipe's model with {tuned}, quantized to {quantization}.", "",
             "## The prompt format the studio uses", "",
             "The model was tuned and evaluated with prompts written exactly like this; other tools must write "
             "the same, or answers drift:", "", "```", example_prompt(recipe, chat_template), "```", ""]
    if chat_template is None:
        parts += [f"The answer ends at `{recipe.labels.stop.strip()}` (a new question) or at the end-of-text token.",
                  ""]
    parts += ["## Run it", "",
              "- **Ollama**: `ollama create my-assistant -f Modelfile`, then `ollama run my-assistant`. The "
              "Modelfile carries the system prompt, the template, the stop strings and the generation settings.",
              "- **LM Studio**: load `model.gguf`; set the system prompt above and, for a model without a chat "
              "template, a plain prompt format with the `Question:` / `Answer:` labels and the stop string.",
              "- **llama.cpp**: `llama-cli -m model.gguf -p \"<the prompt above>\" -n "
              f"{recipe.generation.max_new_tokens} --temp {recipe.generation.temperature:g}`.", "",
              "## Not in the file", "",
              "- Retrieved passages: the studio searches the knowledge base for each question; tools that only "
              "run the model answer without them.",
              "- Few-shot examples: the studio picks them per question.", ""]
    return "\n".join(parts)


# ---- as a background job: `python -m core.finetune.gguf_export PROJECT_DIR RECIPE_JSON QUANTIZATION` --------------

def jobs_folder(project: Project) -> Path:
    return project.subdir("runs") / "export"


def start_job(project: Project, recipe: Recipe, quantization: str):
    """The export in a background job (the Fine-tune page shows its progress and can cancel it)."""
    import json

    from core.jobs import Job

    return Job.start(jobs_folder(project), ["-m", "core.finetune.gguf_export", str(project.path),
                                            json.dumps(recipe.to_dict()), quantization], label="Export GGUF")


def latest_job(project: Project):
    from core.jobs import Job

    folder = jobs_folder(project)
    started = sorted(p for p in folder.glob("*") if p.is_dir()) if folder.exists() else []
    return Job(started[-1]) if started else None


def main(argv: list[str]) -> int:
    import json

    from core.jobs import print_event, run_job

    folder, recipe_json, quantization = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()

    def work(should_stop) -> dict:  # Cancel ends the process: a half-written export is of no use
        target = export_gguf(project, Recipe.from_dict(json.loads(recipe_json)), quantization,
                             progress=lambda fraction, message: print_event(progress=fraction, message=message))
        return {"folder": str(target)}

    return run_job(work, lambda reason: Msg("The GGUF export failed ({reason}).", reason=reason), "GGUF export",
                   stoppable=False)


if __name__ == "__main__":
    import sys

    sys.exit(main(sys.argv[1:]))

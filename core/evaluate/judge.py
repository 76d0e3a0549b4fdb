"""LLM-as-judge (off by default): an OpenAI-compatible endpoint grades each answer from 1 to 5 with a rubric the
analyst can edit. The grade is stored as `judge` in [0, 1] ((grade - 1) / 4)."""

from __future__ import annotations

import re

from core.i18n import Msg

DEFAULT_RUBRIC = ("Grade the assistant's answer against the reference answer. 5: correct and complete; 4: correct "
                  "but missing a detail; 3: partly correct; 2: mostly wrong; 1: wrong, made up or off-topic.")
JUDGE_TEMPLATE = ("{rubric}\n\nQuestion: {question}\nReference answer: {reference}\nAssistant's answer: {answer}\n\n"
                  "Reply with one number from 1 to 5 and nothing else.")


def parse_grade(text: str) -> float | None:
    """The first grade 1-5 in the judge's reply, scaled to [0, 1]; None when there is none."""
    found = re.search(r"\b([1-5])(?:\.\d+)?\b", text or "")
    return (int(found.group(1)) - 1) / 4 if found else None


def judge_prompt(rubric: str, question: str, reference: str, answer: str) -> str:
    return JUDGE_TEMPLATE.format(rubric=(rubric or DEFAULT_RUBRIC).strip(), question=question,
                                 reference=reference or "(none)", answer=answer)


def judge_rows(rows: list[dict], records: dict, options) -> bool:
    """Grade the rows that have no judge score yet; True when any changed. Endpoint errors stop grading (the
    grades so far are kept; running again grades the rest)."""
    from core.errors import StudioError
    from core.models.base import CompletionLabels
    from core.models.generation import GenerationSettings
    from core.models.registry import get_backend
    from core.models.source import ModelSource
    from core.secrets import get_secret

    source = ModelSource.from_dict(options.judge_model)
    if source.kind != "openai":
        raise StudioError(Msg("The judge must be an OpenAI-compatible endpoint."))
    if source.api_key_env and not get_secret(source.api_key_env):
        raise StudioError(Msg("The judge's API key is not set: put it in the environment variable {variable} or in "
                              "a secrets.toml file, then run the evaluation again.", variable=source.api_key_env))
    judge = get_backend(source)
    settings = GenerationSettings(temperature=0.0, max_new_tokens=8)
    changed = False
    for row in rows:
        if "judge" in row["scores"]:
            continue
        prompt = judge.render([{"role": "user", "content": judge_prompt(options.judge_rubric, row["question"],
                                                                         row["reference"], row["answer"])}],
                              CompletionLabels())
        grade = parse_grade(judge.stream(prompt, settings).run_to_end())
        if grade is not None:
            row["scores"]["judge"] = grade
            changed = True
    return changed

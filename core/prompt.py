"""Prompt templates with {variables}: parsing, validation and rendering into chat messages."""

from __future__ import annotations

import string
from dataclasses import dataclass, field

from core.errors import TemplateError
from core.i18n import Msg

BUILTIN_VARIABLES = ("question", "context")  # filled per request; {context} holds retrieved passages


@dataclass(frozen=True)
class PromptSettings:
    system_prompt: str = field(default="You are a helpful assistant for {company}. Answer briefly and accurately.",
                               metadata={"help": "Instructions the model reads before every question."})
    template: str = field(default="{question}", metadata={"help": "How each question is wrapped; must contain {question}."})
    variables: dict = field(default_factory=lambda: {"company": "our company"},
                            metadata={"help": "Values for your own {variables}."})
    user_label: str = field(default="Question", metadata={"help": "Label before questions for base models."})
    assistant_label: str = field(default="Answer", metadata={"help": "Label before answers for base models."})
    starter_examples: bool = field(default=True, metadata={
        "help": "For a model without a chat template and no adapter: when no example of yours is in the prompt, two "
                "built-in examples show it how a question is answered."})

    def to_dict(self) -> dict:
        return {"system_prompt": self.system_prompt, "template": self.template, "variables": dict(self.variables),
                "user_label": self.user_label, "assistant_label": self.assistant_label,
                "starter_examples": self.starter_examples}

    @classmethod
    def from_dict(cls, data: dict | None) -> "PromptSettings":
        data = data or {}
        return cls(**{k: data[k] for k in cls.__dataclass_fields__ if k in data})


def template_variables(text: str) -> list[str]:
    """Variable names in order of first use; raises TemplateError on broken braces."""
    names: list[str] = []
    try:
        for _, name, spec, conversion in string.Formatter().parse(text):
            if name is None:
                continue
            if not name.isidentifier():
                raise TemplateError(Msg("'{{{name}}}' is not a valid variable name; use letters, digits and _ "
                                        "(write {{{{ and }}}} for literal braces).", name=name))
            if spec or conversion:
                raise TemplateError(Msg("Remove the ':' or '!' inside {{{name}}}; variables take no format options.",
                                        name=name))
            if name not in names:
                names.append(name)
    except ValueError as exc:
        raise TemplateError(Msg("The braces do not match ({reason}); write {{{{ and }}}} for literal braces.",
                                reason=str(exc))) from exc
    return names


@dataclass(frozen=True)
class TemplateCheck:
    errors: list[str]
    warnings: list[str]

    @property
    def ok(self) -> bool:
        return not self.errors


def check_prompt(settings: PromptSettings) -> TemplateCheck:
    errors, warnings = [], []
    if not settings.template.strip():
        errors.append(Msg("The template is empty; write at least {question}."))
    for label, text in ((Msg("system prompt"), settings.system_prompt), (Msg("template"), settings.template)):
        try:
            names = template_variables(text)
        except TemplateError as exc:
            errors.append(Msg("In the {where}: {problem}", where=label, problem=exc.args[0]))
            continue
        for name in names:
            if name not in BUILTIN_VARIABLES and name not in settings.variables:
                errors.append(Msg("Unknown variable {{{name}}} in the {where}: add it under Variables or remove it.",
                                  name=name, where=label))
            elif name in settings.variables and not str(settings.variables[name]).strip():
                warnings.append(Msg("Variable {{{name}}} has no value yet; it will be left empty.", name=name))
    if settings.template.strip() and "question" not in _safe_names(settings.template):
        errors.append(Msg("The template must contain {question} where the user's question goes."))
    if "question" in _safe_names(settings.system_prompt):
        warnings.append(Msg("{question} in the system prompt repeats the question; usually it belongs in the template."))
    unused = [n for n in settings.variables if n not in _safe_names(settings.system_prompt + settings.template)]
    if unused:
        warnings.append(Msg("Variables not used anywhere: {names}.", names=", ".join(unused)))
    return TemplateCheck(errors, warnings)


def _safe_names(text: str) -> list[str]:
    try:
        return template_variables(text)
    except TemplateError:
        return []


def fill(text: str, values: dict) -> str:
    names = template_variables(text)
    return text.format(**{n: values.get(n, "") for n in names})


def build_messages(settings: PromptSettings, question: str, examples: list[tuple[str, str]],
                   context: str = "") -> list[dict]:
    """System prompt, then each example as a user/assistant turn, then the question. Retrieved passages go
    where the prompt says {context}, else at the end of the system prompt."""
    check = check_prompt(settings)
    if not check.ok:
        raise TemplateError(check.errors[0])
    values = {**settings.variables, "context": context}
    messages = []
    system = fill(settings.system_prompt, {**values, "question": question}).strip()
    if context and "context" not in _safe_names(settings.system_prompt + settings.template):
        system = f"{system}\n\n{context}".strip()
    if system:
        messages.append({"role": "system", "content": system})
    for example_question, example_answer in examples:
        messages.append({"role": "user", "content": fill(settings.template, {**values, "question": example_question})})
        messages.append({"role": "assistant", "content": example_answer})
    messages.append({"role": "user", "content": fill(settings.template, {**values, "question": question})})
    return messages

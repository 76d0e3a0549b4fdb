"""Prompt templates: variables, validation, chat messages and the plain completion format."""

from __future__ import annotations

import pytest

from core.errors import TemplateError
from core.models.base import CompletionLabels, render_completion
from core.prompt import PromptSettings, build_messages, check_prompt, fill, template_variables


@pytest.mark.parametrize("text, names", [
    ("", []),
    ("no variables at all", []),
    ("{question}", ["question"]),
    ("{company} says: {question} ({company})", ["company", "question"]),
    ("Literal {{braces}} and {name}", ["name"]),
    ("{b}{a}{b}{c}", ["b", "a", "c"]),
    ("Xin chào {tên_khách}: {question}", ["tên_khách", "question"]),
])
def test_template_variables(text, names):
    assert template_variables(text) == names


@pytest.mark.parametrize("text, fragment", [
    ("{question", "braces do not match"),
    ("question}", "braces do not match"),
    ("{}", "not a valid variable name"),
    ("{0}", "not a valid variable name"),
    ("{a.b}", "not a valid variable name"),
    ("{a[0]}", "not a valid variable name"),
    ("{two words}", "not a valid variable name"),
    ("{question:>10}", "no format options"),
    ("{question!r}", "no format options"),
])
def test_template_variables_errors(text, fragment):
    with pytest.raises(TemplateError, match=fragment):
        template_variables(text)


def _settings(**changes) -> PromptSettings:
    base = dict(system_prompt="You help {company}.", template="Q: {question}", variables={"company": "ACME"})
    base.update(changes)
    return PromptSettings(**base)


def test_default_settings_are_valid():
    check = check_prompt(PromptSettings())
    assert check.ok, check.errors
    assert check.warnings == []


@pytest.mark.parametrize("changes, fragment", [
    (dict(template=""), "template is empty"),
    (dict(template="   "), "template is empty"),
    (dict(template="Q: {question} {product}"), "Unknown variable {product} in the template"),
    (dict(system_prompt="You help {brand}."), "Unknown variable {brand} in the system prompt"),
    (dict(template="Tell me about {company}"), "must contain {question}"),
    (dict(template="Q: {question"), "In the template: The braces do not match"),
    (dict(system_prompt="You help {company"), "In the system prompt: The braces do not match"),
    (dict(template="Q: {question:10}"), "no format options"),
    (dict(template="Q: {question!s}"), "no format options"),
    (dict(template="Q: {0} {question}"), "not a valid variable name"),
])
def test_check_prompt_errors(changes, fragment):
    check = check_prompt(_settings(**changes))
    assert not check.ok
    assert any(fragment in error for error in check.errors), check.errors


@pytest.mark.parametrize("changes, fragment", [
    (dict(variables={"company": ""}), "Variable {company} has no value yet"),
    (dict(variables={"company": "   "}), "Variable {company} has no value yet"),
    (dict(variables={"company": "ACME", "unused": "x", "spare": "y"}), "Variables not used anywhere: unused, spare"),
    (dict(system_prompt="Repeat {question} for {company}."), "{question} in the system prompt"),
])
def test_check_prompt_warnings_do_not_block(changes, fragment):
    check = check_prompt(_settings(**changes))
    assert check.ok, check.errors
    assert any(fragment in warning for warning in check.warnings), check.warnings


def test_empty_template_reports_only_the_empty_error():
    check = check_prompt(_settings(template=""))
    assert check.errors == ["The template is empty; write at least {question}."]


def test_fill_leaves_missing_values_empty_and_keeps_literal_braces():
    assert fill("{a}-{b} {{x}}", {"a": "1"}) == "1- {x}"


def test_build_messages_without_examples():
    messages = build_messages(_settings(), "Giờ mở cửa?", [])
    assert messages == [
        {"role": "system", "content": "You help ACME."},
        {"role": "user", "content": "Q: Giờ mở cửa?"},
    ]


def test_build_messages_with_examples_in_order():
    settings = _settings(template="[{company}] {question}")
    examples = [("Hours?", "9 to 5."), ("Phí ship?", "Miễn phí.")]
    messages = build_messages(settings, "Refunds?", examples)
    assert messages == [
        {"role": "system", "content": "You help ACME."},
        {"role": "user", "content": "[ACME] Hours?"},
        {"role": "assistant", "content": "9 to 5."},
        {"role": "user", "content": "[ACME] Phí ship?"},
        {"role": "assistant", "content": "Miễn phí."},
        {"role": "user", "content": "[ACME] Refunds?"},
    ]


def test_build_messages_skips_empty_system_prompt():
    messages = build_messages(_settings(system_prompt="   ", variables={}), "Hi", [])
    assert messages == [{"role": "user", "content": "Q: Hi"}]


def test_build_messages_does_not_format_braces_inside_the_question():
    # a question with braces is user text, not a template
    messages = build_messages(_settings(), "What does {company} mean in {x}?", [])
    assert messages[-1]["content"] == "Q: What does {company} mean in {x}?"


@pytest.mark.parametrize("changes", [dict(template=""), dict(template="no question here"), dict(template="{oops")])
def test_build_messages_refuses_invalid_settings(changes):
    with pytest.raises(TemplateError):
        build_messages(_settings(**changes), "Hi", [])


def test_prompt_settings_round_trip_ignores_unknown_keys():
    settings = _settings(variables={"company": "Công ty ABC"}, user_label="Hỏi", assistant_label="Đáp")
    data = settings.to_dict()
    assert PromptSettings.from_dict(data) == settings
    assert PromptSettings.from_dict({**data, "future_field": 1}) == settings
    assert PromptSettings.from_dict(None) == PromptSettings()
    data["variables"]["company"] = "changed"  # to_dict copies the variables
    assert settings.variables["company"] == "Công ty ABC"


@pytest.mark.parametrize("messages, labels, expected", [
    (
        [{"role": "user", "content": "Hi"}],
        CompletionLabels(),
        "Question: Hi\nAnswer:",
    ),
    (
        [{"role": "system", "content": "  Be brief.  "}, {"role": "user", "content": " Hi "}],
        CompletionLabels(),
        "Be brief.\n\nQuestion: Hi\nAnswer:",
    ),
    (
        [{"role": "system", "content": "   "}, {"role": "user", "content": "Hi"}],
        CompletionLabels(),
        "Question: Hi\nAnswer:",
    ),
    (
        [{"role": "system", "content": "S"},
         {"role": "user", "content": "Thủ đô?"}, {"role": "assistant", "content": " Hà Nội. "},
         {"role": "user", "content": "Q2"}],
        CompletionLabels("Hỏi", "Đáp"),
        "S\n\nHỏi: Thủ đô?\nĐáp: Hà Nội.\n\nHỏi: Q2\nĐáp:",
    ),
])
def test_render_completion(messages, labels, expected):
    assert render_completion(messages, labels) == expected


@pytest.mark.parametrize("labels, stop, again", [
    (CompletionLabels(), "\nQuestion:", "\nAnswer:"),
    (CompletionLabels("User", "Bot"), "\nUser:", "\nBot:"),
    (CompletionLabels("Hỏi", "Đáp"), "\nHỏi:", "\nĐáp:"),
])
def test_completion_stop_is_the_next_user_label(labels, stop, again):
    assert labels.stop == stop
    assert labels.stops == (stop, again)  # a base model without examples answers, writes the label, answers again
    rendered = render_completion([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"},
                                  {"role": "user", "content": "c"}], labels)
    assert stop in rendered  # the stop marks the start of the next (invented) turn
    assert not rendered.endswith(stop)

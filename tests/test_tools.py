"""Tools in the recipe: validation, normalization, merging, and how each prompt format offers them to the model."""

from __future__ import annotations

import json
import re

import pytest

from core import assistant
from core.errors import StudioError
from core.fewshot import FewShotSettings
from core.models.base import CompletionLabels
from core.models.endpoint import EndpointModel
from core.models.generation import GenerationSettings
from core.models.local import LocalModel
from core.models.source import ModelSource
from core.prompt import PromptSettings
from core.recipe import Recipe, RecipeStore
from core.tools import (INSTRUCTION, merge_tools, normalize_tools, parse_tools_json, tool_line, tool_names,
                        tool_problems, tools_block, tools_json, with_tools_block)

STATUS = {"type": "function", "function": {
    "name": "check_repair_status", "description": "Repair status by order number.",
    "parameters": {"type": "object", "properties": {"order": {"type": "string", "description": "Like W-20417."}},
                   "required": ["order"]}}}
BOOK = {"type": "function", "function": {
    "name": "book_service", "description": "Book a workshop slot.",
    "parameters": {"type": "object", "properties": {
        "service": {"type": "string", "enum": ["basic", "full"]}, "date": {"type": "string"}},
        "required": ["service"]}}}
BARE_BOOK = dict(BOOK["function"])
MESSAGES = [{"role": "system", "content": "You help a bike shop."}, {"role": "user", "content": "Where is W-1?"}]
LABELS = CompletionLabels()
# A tiny template that, like real tool-aware templates, reads `tools` when it is defined.
TOOLS_TEMPLATE = (
    "{% if tools is defined and tools %}<|system|>\nTools:{% for tool in tools %} {{ tool['function']['name'] }}"
    "{% endfor %}</s>\n{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)
REFUSING_TEMPLATE = (  # mentions tools, then refuses them: the text block takes over
    "{% if tools %}{{ raise_exception('no tools with a system message') }}{% endif %}"
    "{% for message in messages %}<|{{ message['role'] }}|>\n{{ message['content'] }}</s>\n{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


# ---- validation and normalization -------------------------------------------------------------------------------

def test_normalize_keeps_the_openai_shape_and_copies():
    tools = [STATUS, BOOK]
    normalized = normalize_tools(tools)
    assert normalized == (STATUS, BOOK) and isinstance(normalized, tuple)
    normalized[0]["function"]["parameters"]["required"].append("x")
    assert STATUS["function"]["parameters"]["required"] == ["order"]  # a copy, not the caller's dicts


def test_bare_form_is_normalized():
    assert normalize_tools([BARE_BOOK]) == (BOOK,)
    assert normalize_tools([{"name": "ping"}]) == ({"type": "function", "function": {"name": "ping"}},)
    assert normalize_tools([{"name": "ping", "description": None}]) == (
        {"type": "function", "function": {"name": "ping"}},)


@pytest.mark.parametrize("tools", [None, [], ()])
def test_no_tools(tools):
    assert tool_problems(tools) == [] and normalize_tools(tools) == ()


@pytest.mark.parametrize("tools, fragment", [
    ([{"type": "function", "function": {"description": "no name"}}], "Tool 1 has no name"),
    ([{"description": "bare, no name"}], "Tool 1 has no name"),
    ([STATUS, {"type": "function", "function": {"name": "   "}}], "Tool 2 has no name"),
    ([{"name": "book service"}], "Tool name 'book service' may use only letters"),
    ([{"name": "x" * 65}], "at most 64"),
    ([{"name": "đặt_lịch"}], "may use only letters"),
    (["book_service"], "Tool 1 is not a JSON object"),
    ([STATUS, 3], "Tool 2 is not a JSON object"),
    ({"name": "book_service"}, "must be a JSON list"),
    ("book_service", "must be a JSON list"),
    ([{"type": "retrieval", "function": {"name": "x"}}], 'must have "type": "function"'),
    ([{"type": "function"}], 'no "function" object'),
    ([{"type": "function", "function": "book_service"}], 'no "function" object'),
    ([{"name": "x", "parameters": ["a"]}], "parameters of tool 1 must be a JSON object"),
    ([{"name": "x", "description": 3}], "description of tool 1 must be text"),
    ([STATUS, STATUS], "'check_repair_status' is listed twice"),
    ([{"name": "x", "parameters": {"default": {1, 2}}}], "not JSON"),
])
def test_bad_tools_are_refused_with_a_sentence(tools, fragment):
    problems = tool_problems(tools)
    assert problems and fragment in problems[0]
    with pytest.raises(StudioError, match="^" + re.escape(problems[0])):
        normalize_tools(tools)


def test_good_names_pass():
    assert tool_names([{"name": "a"}, {"name": "Book-Service_2"}, {"name": "x" * 64}]) == ["a", "Book-Service_2",
                                                                                        "x" * 64]


@pytest.mark.parametrize("text, expected", [
    ("", ()), ("  \n", ()), ("[]", ()),
    (json.dumps([STATUS, BARE_BOOK]), (STATUS, BOOK)),
    (json.dumps(BARE_BOOK), (BOOK,)),  # one tool without the list
])
def test_parse_tools_json(text, expected):
    assert parse_tools_json(text) == expected


@pytest.mark.parametrize("text, fragment", [
    ('[{"name": "x",}]', "not valid JSON (line 1, column"),
    ("[{'name': 'x'}]", "not valid JSON"),
    ('"book_service"', "must be a JSON list"),
    ('[{"name": "bad name"}]', "may use only letters"),
])
def test_parse_tools_json_errors(text, fragment):
    with pytest.raises(StudioError, match=re.escape(fragment)):
        parse_tools_json(text)


def test_tools_json_round_trips():
    assert tools_json(()) == ""
    assert parse_tools_json(tools_json((STATUS, BOOK))) == (STATUS, BOOK)


def test_merge_dedupes_by_name_and_the_question_wins():
    newer_status = {"name": "check_repair_status", "description": "Newer."}
    merged = merge_tools([STATUS, BOOK], [newer_status, {"name": "ping"}])
    assert tool_names(merged) == ["check_repair_status", "book_service", "ping"]
    assert merged[0]["function"]["description"] == "Newer."
    assert merge_tools([], None) == () and merge_tools([STATUS], None) == (STATUS,)


# ---- the text block ---------------------------------------------------------------------------------------------

def test_tool_line_is_compact_and_complete():
    assert tool_line(BOOK) == ('- book_service: Book a workshop slot. Arguments: service (string, required, '
                               'one of ["basic", "full"]); date (string).')
    assert tool_line(STATUS) == ("- check_repair_status: Repair status by order number. Arguments: "
                                 "order (string, required): Like W-20417.")
    assert tool_line(normalize_tools([{"name": "ping"}])[0]) == "- ping: No arguments."
    array = normalize_tools([{"name": "tag", "description": "Tags a bike", "parameters": {"properties": {
        "ids": {"type": "array", "items": {"type": "integer"}, "description": "a; b."},
        "n": {"type": ["integer", "null"]}}}}])
    assert tool_line(array[0]) == "- tag: Tags a bike. Arguments: ids (array of integer): a, b; n (integer|null)."


def test_block_and_where_it_goes():
    block = tools_block([STATUS, BOOK])
    assert block.splitlines()[0] == INSTRUCTION and len(block.splitlines()) == 3
    assert tools_block([]) == "" and with_tools_block(MESSAGES, []) == MESSAGES
    with_block = with_tools_block(MESSAGES, [STATUS])
    assert with_block[0]["content"] == "You help a bike shop.\n\n" + tools_block([STATUS])
    assert with_block[1:] == MESSAGES[1:] and MESSAGES[0]["content"] == "You help a bike shop."  # not mutated
    no_system = with_tools_block(MESSAGES[1:], [STATUS])
    assert no_system[0] == {"role": "system", "content": tools_block([STATUS])} and no_system[1:] == MESSAGES[1:]


# ---- the recipe -------------------------------------------------------------------------------------------------

def test_recipe_round_trip_with_tools(project):
    recipe = Recipe(tools=[STATUS, BARE_BOOK])
    assert recipe.tools == (STATUS, BOOK)
    data = recipe.to_dict()
    assert data["tools"] == [STATUS, BOOK]
    assert Recipe.from_dict(json.loads(json.dumps(data))) == recipe
    RecipeStore(project).save(recipe)
    assert RecipeStore(project).load().tools == (STATUS, BOOK)


def test_old_recipe_without_tools_loads():
    data = Recipe().to_dict()
    del data["tools"]
    assert Recipe.from_dict(data).tools == () and Recipe.from_dict(data) == Recipe()
    assert Recipe.from_dict({"tools": None}).tools == ()


@pytest.mark.parametrize("tools, fragment", [
    ([{"name": "bad name"}], "may use only letters"),
    ({"name": "x"}, "must be a JSON list"),
    ([{"type": "function", "function": {}}], "has no name"),
])
def test_recipe_refuses_bad_tools(tools, fragment):
    with pytest.raises(StudioError, match=fragment):
        Recipe(tools=tools)
    with pytest.raises(StudioError, match=fragment):
        Recipe.from_dict({"tools": tools})


# ---- rendering on tiny models -----------------------------------------------------------------------------------

def _backend_with_template(tiny_backend, template: str) -> LocalModel:
    """The tiny llama with its own tokenizer copy carrying `template` (the shared backend stays untouched)."""
    from transformers import AutoTokenizer

    base = tiny_backend("llama")
    tokenizer = AutoTokenizer.from_pretrained(base.tokenizer.name_or_path)
    tokenizer.chat_template = template
    return LocalModel("tiny-tools", base.model, tokenizer)


def test_completion_format_puts_the_block_in_the_prompt(tiny_backend):
    backend = tiny_backend("llama")
    plain = backend.render(MESSAGES, LABELS)
    rendered = backend.render(MESSAGES, LABELS, tools=[STATUS, BARE_BOOK])
    assert rendered.format == "completion" and rendered.stop == plain.stop and rendered.add_special_tokens
    assert rendered.tools == (STATUS, BOOK)
    assert rendered.text.startswith("You help a bike shop.\n\n" + INSTRUCTION)
    assert "- check_repair_status:" in rendered.text and "- book_service:" in rendered.text
    assert rendered.text.endswith("Question: Where is W-1?\nAnswer:")
    assert backend.count_tokens(rendered) > backend.count_tokens(plain)
    assert backend.render(MESSAGES, LABELS, tools=[]) == plain and plain.tools == ()


def test_template_without_tools_gets_the_block_in_the_system_message(tiny_backend):
    backend = tiny_backend("llama", chat_template=True)
    assert not backend.template_takes_tools
    rendered = backend.render(MESSAGES, LABELS, tools=[STATUS])
    assert rendered.format == "chat template"
    assert "<|system|>\nYou help a bike shop.\n\n" + INSTRUCTION in rendered.text
    assert rendered.messages[0]["content"].endswith(tool_line(STATUS))


def test_template_with_tools_receives_them(tiny_backend):
    backend = _backend_with_template(tiny_backend, TOOLS_TEMPLATE)
    assert backend.template_takes_tools
    rendered = backend.render(MESSAGES, LABELS, tools=[STATUS, BARE_BOOK])
    assert rendered.format == "chat template" and rendered.tools == (STATUS, BOOK)
    assert rendered.text.startswith("<|system|>\nTools: check_repair_status book_service</s>\n")
    assert INSTRUCTION not in rendered.text and rendered.messages == tuple(MESSAGES)
    assert "Tools:" not in backend.render(MESSAGES, LABELS).text


def test_template_that_refuses_tools_falls_back_to_the_block(tiny_backend):
    backend = _backend_with_template(tiny_backend, REFUSING_TEMPLATE)
    assert backend.template_takes_tools
    rendered = backend.render(MESSAGES, LABELS, tools=[STATUS])
    assert INSTRUCTION in rendered.text and rendered.tools == (STATUS,)


def test_endpoint_puts_the_block_in_the_system_message():
    backend = EndpointModel(ModelSource(kind="openai", location="http://127.0.0.1:9/v1", model_name="m"))
    plain = backend.render(MESSAGES, LABELS)
    rendered = backend.render(MESSAGES, LABELS, tools=[STATUS])
    assert rendered.messages[0]["content"] == "You help a bike shop.\n\n" + tools_block([STATUS])
    assert rendered.tools == (STATUS,) and INSTRUCTION in rendered.text
    assert backend.count_tokens(rendered) > backend.count_tokens(plain)


# ---- the assistant: recipe tools, a question's tools and the budget ----------------------------------------------

def _recipe(**changes) -> Recipe:
    return Recipe(prompt=PromptSettings(system_prompt="You help {company}.", variables={"company": "ACME"}),
                  generation=GenerationSettings(max_new_tokens=4), **changes)


# The tiny byte-level tokenizer spends about three tokens per word, and the tiny models read 256 tokens.
OLD, NEW, PING = {"name": "status", "description": "Old."}, {"name": "status", "description": "New."}, {"name": "ping"}


def test_prepare_merges_recipe_and_question_tools_and_counts_them(tiny_backend):
    backend = tiny_backend("llama")
    plain = assistant.prepare(_recipe(), "Where is W-1?", backend, [])
    with_recipe_tools = assistant.prepare(_recipe(tools=[OLD]), "Where is W-1?", backend, [])
    merged = assistant.prepare(_recipe(tools=[OLD]), "Where is W-1?", backend, [], tools=[NEW, PING])
    assert plain.prompt.tools == () and INSTRUCTION not in plain.prompt.text
    assert with_recipe_tools.prompt.tools == normalize_tools([OLD])
    assert tool_names(merged.prompt.tools) == ["status", "ping"]
    assert "- status: New." in merged.prompt.text and "Old." not in merged.prompt.text
    # the budget sees the block: it counts with the system prompt, and the question costs the same
    assert plain.prompt_tokens < with_recipe_tools.prompt_tokens < merged.prompt_tokens
    assert with_recipe_tools.prompt_tokens == backend.count_tokens(with_recipe_tools.prompt)
    assert with_recipe_tools.budget.system_tokens > plain.budget.system_tokens
    assert with_recipe_tools.budget.question_tokens == plain.budget.question_tokens
    assert assistant.recipe_tools(_recipe(tools=[STATUS]), [BARE_BOOK]) == (STATUS, BOOK)
    assert assistant.recipe_tools(_recipe(tools=[STATUS])) == (STATUS,)


def test_answer_with_question_tools_streams(tiny_backend):
    prepared, stream = assistant.answer(_recipe(), "Where is W-1?", tiny_backend("llama"), [], tools=[PING])
    assert prepared.prompt.tools == normalize_tools([PING])
    stream.run_to_end()
    assert stream.prompt_tokens == prepared.prompt_tokens


def test_answer_rejects_bad_question_tools(tiny_backend):
    with pytest.raises(StudioError, match="may use only letters"):
        assistant.answer(_recipe(), "Where is W-1?", tiny_backend("llama"), [], tools=[{"name": "bad name"}])


def test_fewshot_trims_examples_to_make_room_for_tools(tiny_backend):
    backend = tiny_backend("llama")
    pool = [{"prompt": f"Question number {i} about shipping?", "response": f"Answer {i}: two days."} for i in range(6)]
    recipe = _recipe(fewshot=FewShotSettings(enabled=True, k=6))
    without = assistant.prepare(recipe, "Where is W-1?", backend, pool)
    with_tools = assistant.prepare(recipe, "Where is W-1?", backend, pool, tools=[OLD])
    assert with_tools.budget.fits and with_tools.budget.total <= 256
    assert without.budget.dropped == 0 and with_tools.budget.dropped > 0
    assert len(with_tools.examples) < len(without.examples)


def test_with_tools_nothing_found_still_lets_the_model_answer(project, tiny_backend, monkeypatch):
    """A question for a tool rarely matches a document: the model may call the tool instead of "not found"."""
    from core.rag.retriever import RetrieverSettings

    monkeypatch.setattr(assistant, "retrieve", lambda project, recipe, question: [])
    recipe = _recipe(retriever=RetrieverSettings(enabled=True, no_answer="Not found."))
    prepared, stream = assistant.answer(recipe, "Where is W-1?", tiny_backend("llama"), [], project)
    assert prepared.nothing_found and stream.run_to_end() == "Not found."
    prepared, stream = assistant.answer(recipe, "Where is W-1?", tiny_backend("llama"), [], project, tools=[PING])
    assert prepared.nothing_found and stream.stopped_by != "not found"
    stream.run_to_end()

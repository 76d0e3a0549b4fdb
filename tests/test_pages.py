"""AppTest of every page, started from studio/app.py, on tiny random models (no hub, no GPU)."""

from __future__ import annotations

import json
import time
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from core.data.pairs import load_pairs, save_pairs
from core.feedback import list_feedback
from core.fewshot import FewShotSettings
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore
from core.workspace import Workspace

ROOT = Path(__file__).resolve().parent.parent
APP = str(ROOT / "studio" / "app.py")
PAGES = ["projects", "model", "prompt", "fewshot", "retriever", "retrieval_test", "datasets", "labeling", "feedback", "chat", "finetune",
         "retrieval_opt", "evaluate", "share"]
EXAMPLES = [{"prompt": f"Question number {i} about shipping?", "response": f"Answer {i}: we ship in two days."}
            for i in range(6)]


def run_page(page: str, timeout: float = 120) -> AppTest:
    at = AppTest.from_file(APP, default_timeout=timeout).run()
    if page != "projects":
        at.switch_page(f"../pages/{page}.py").run()
    return at


def assert_clean(at: AppTest) -> None:
    assert not at.exception, [e.value for e in at.exception]


@pytest.fixture
def tiny_project(workspace, tiny_model_dir):
    """An open project whose saved recipe uses a tiny local llama and has few-shot examples."""
    project = workspace.create("Tiny shop")
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))))
    recipe = recipe.with_changes(generation=recipe.generation.__class__(max_new_tokens=8))
    RecipeStore(project).save(recipe, note="tiny")
    save_pairs(project, "examples", EXAMPLES)
    return project


@pytest.mark.parametrize("page", PAGES)
def test_page_without_project_points_to_projects(page):
    at = run_page(page)
    assert_clean(at)
    if page != "projects":
        assert any("Create or pick a project first" in i.value for i in at.info)


@pytest.mark.parametrize("page", PAGES)
def test_page_renders_with_project(page, tiny_project):
    at = run_page(page)
    assert_clean(at)
    assert not at.error, [e.value for e in at.error]
    assert at.title


def test_create_project_and_duplicate_name_refused(workspace):
    at = run_page("projects")
    at.text_input[0].set_value("Support bot")
    next(b for b in at.button if b.label == "Create project").click().run()
    assert_clean(at)
    assert [p.name for p in workspace.list_projects()] == ["Support bot"]
    at.text_input[0].set_value("support BOT")
    next(b for b in at.button if b.label == "Create project").click().run()
    assert any("already exists" in e.value for e in at.error)


def test_sample_project_from_the_ui(workspace):
    at = run_page("projects")
    next(b for b in at.button if b.label == "Create the sample project").click().run()
    assert_clean(at)
    project = workspace.list_projects()[0]
    assert len(load_pairs(project, "examples")) >= 10
    assert RecipeStore(project).latest().recipe.prompt.variables["company"] == "Lumen Bikes"
    # It arrives ready for the retriever rungs: its documents index in the background at once.
    from core.rag import ingest_job
    from core.rag.kb import KnowledgeBase

    job = ingest_job.latest_job(project, "docs")
    assert job is not None
    deadline = time.time() + 300
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.5)
    assert job.status().state == "done", job.status()
    base = KnowledgeBase(project, "docs")
    assert base.documents() and not base.pending()


def test_delete_needs_the_typed_name(workspace, tiny_project):
    at = run_page("projects")
    delete = next(b for b in at.button if b.label == "Delete project")
    assert delete.disabled
    at.text_input(key="projects.delete_confirm").set_value("Tiny shop").run()
    next(b for b in at.button if b.label == "Delete project").click().run()
    assert_clean(at)
    assert workspace.list_projects() == []


def test_project_deleted_in_another_tab(workspace, tiny_project):
    at = run_page("prompt")
    workspace.delete(tiny_project, "Tiny shop")  # the other tab
    at.run()
    assert_clean(at)
    assert any("deleted or renamed in another tab" in e.value for e in at.error)


def test_prompt_unknown_variable_and_missing_question(tiny_project):
    at = run_page("prompt")
    key = f"prompt.{tiny_project.slug}."
    at.text_area(key=key + "system").set_value("You work for {shop}.").run()
    at.text_area(key=key + "template").set_value("Customer says: hello").run()
    errors = " ".join(e.value for e in at.error)
    assert "Unknown variable {shop}" in errors
    assert "must contain {question}" in errors
    assert next(b for b in at.button if b.label == "Save as new recipe version").disabled


def test_prompt_run_streams_and_save_makes_a_version(tiny_project):
    at = run_page("prompt")
    key = f"prompt.{tiny_project.slug}."
    at.text_area(key=key + "system").set_value("You answer for {company}. Be brief.").run()
    at.text_area(key=key + "question").set_value("When do you ship?").run()
    next(b for b in at.button if b.label == "Run").click().run()
    assert_clean(at)
    assert len(at.chat_message) == 2
    assert any("prompt tokens" in c.value for c in at.caption)
    at.text_input(key=key + "note").set_value("shorter").run()
    next(b for b in at.button if b.label == "Save as new recipe version").click().run()
    versions = RecipeStore(tiny_project).versions()
    assert [v.number for v in versions] == [1, 2]
    assert versions[-1].recipe.prompt.system_prompt == "You answer for {company}. Be brief."
    assert versions[-1].note == "shorter"
    assert versions[-1].recipe.prompt.starter_examples  # on by default
    at.toggle(key=key + "starter_examples").set_value(False).run()
    next(b for b in at.button if b.label == "Save as new recipe version").click().run()
    assert_clean(at)
    assert not RecipeStore(tiny_project).latest().recipe.prompt.starter_examples


def test_prompt_tools_invalid_json_is_refused_and_valid_tools_are_saved(tiny_project):
    at = run_page("prompt")
    key = f"prompt.{tiny_project.slug}."
    assert any(c.value == "No tools: the model answers in text." for c in at.caption)
    at.text_area(key=key + "tools").set_value('[{"name": "book_service",}]').run()
    assert_clean(at)
    assert any("The tools are not valid JSON (line 1" in e.value for e in at.error)
    assert next(b for b in at.button if b.label == "Save as new recipe version").disabled
    at.text_area(key=key + "tools").set_value('[{"name": "book service"}]').run()
    assert any("may use only letters" in e.value for e in at.error)
    assert [v.number for v in RecipeStore(tiny_project).versions()] == [1]  # nothing saved
    tools = [{"type": "function", "function": {"name": "check_repair_status", "parameters": {"type": "object"}}},
             {"name": "book_service", "description": "Book a slot."}]
    at.text_area(key=key + "tools").set_value(json.dumps(tools)).run()
    assert not at.error, [e.value for e in at.error]
    assert any(c.value == "2 tools: check_repair_status, book_service" for c in at.caption)
    next(b for b in at.button if b.label == "Save as new recipe version").click().run()
    assert_clean(at)
    saved = RecipeStore(tiny_project).latest().recipe
    assert [tool["function"]["name"] for tool in saved.tools] == ["check_repair_status", "book_service"]
    assert saved.tools[1] == {"type": "function", "function": {"name": "book_service", "description": "Book a slot."}}


def test_prompt_table_of_questions_is_saved_as_a_trial(tiny_project):
    from core.trials import list_trials

    at = run_page("prompt")
    at.text_area(key=f"prompt.{tiny_project.slug}.questions").set_value("One?\nTwo?").run()
    next(b for b in at.button if b.label.startswith("Answer 2")).click().run()
    assert_clean(at)
    trials = list_trials(tiny_project)
    assert len(trials) == 1 and [r["question"] for r in trials[0]["rows"]] == ["One?", "Two?"]
    assert at.dataframe


def test_fewshot_budget_trims_examples_to_the_window(tiny_project):
    store = RecipeStore(tiny_project)
    store.save(store.load().with_changes(context_window=80), note="small window")
    at = run_page("fewshot")
    key = f"fewshot.{tiny_project.slug}."
    at.toggle(key=key + "enabled").set_value(True).run()
    at.slider(key=key + "k").set_value(6).run()
    at.text_input(key=key + "question").set_value("Do you ship?").run()
    load = [b for b in at.button if b.label == "Load the model to measure"]  # absent once another test loaded it
    if load:
        load[0].click().run()
    assert_clean(at)
    assert any("did not fit in the context window" in w.value for w in at.warning)
    assert any("tokens planned" in c.value for c in at.caption)


def test_fewshot_page_says_when_the_starter_examples_stand_in(tiny_project):
    at = run_page("fewshot")
    key = f"fewshot.{tiny_project.slug}."
    at.toggle(key=key + "enabled").set_value(False).run()
    at.text_input(key=key + "question").set_value("Do you ship?").run()
    load = [b for b in at.button if b.label == "Load the model to measure"]
    if load:
        load[0].click().run()
    assert_clean(at)
    assert any("two built-in starter examples" in i.value for i in at.info)
    prompt_text = next(c.value for c in at.code)
    assert "Eiffel Tower" in prompt_text  # the preview shows what the model reads


def test_fewshot_grid_edit_and_save(tiny_project):
    at = run_page("fewshot")
    assert next(b for b in at.button if b.label == "Save examples").disabled
    assert len(load_pairs(tiny_project, "examples")) == 6


def test_fewshot_import_adds_the_examples_once(tiny_project):
    """After adding, the file field is empty: a second click could not add the same rows again."""
    at = run_page("fewshot")
    key = f"fewshot.{tiny_project.slug}."
    data = "question,answer\nDo you ship abroad?,Yes, to the EU.\nCan I pay by card?,Yes.\n".encode()
    at.file_uploader(key=key + "upload.0").set_value(("more.csv", data, "text/csv")).run()
    assert_clean(at)
    next(b for b in at.button if b.label == "Add 2 examples").click().run()
    assert_clean(at)
    assert [r["prompt"] for r in load_pairs(tiny_project, "examples")][-2:] == ["Do you ship abroad?",
                                                                               "Can I pay by card?"]
    assert len(load_pairs(tiny_project, "examples")) == 8
    assert not [b for b in at.button if b.label.startswith("Add 2")]
    notice = "The assistant does not use these examples yet"
    assert any(notice in i.value for i in at.info)  # the saved recipe has few-shot off
    store = RecipeStore(tiny_project)
    store.save(store.load().with_changes(fewshot=FewShotSettings(enabled=True)), note="examples on")
    assert not any(notice in i.value for i in run_page("fewshot").info)


def test_chat_answer_and_thumbs_down_with_correction(tiny_project):
    at = run_page("chat")
    at.chat_input[0].set_value("Do you ship abroad?").run()
    assert_clean(at)
    assert len(at.chat_message) == 2
    at.feedback[0].set_value(0).run()  # thumbs down
    at.text_area[0].set_value("Yes, to 30 countries.").run()
    next(b for b in at.button if b.label == "Send feedback").click().run()
    assert_clean(at)
    entries = list_feedback(tiny_project)
    assert len(entries) == 1
    assert entries[0]["rating"] == -1 and entries[0]["correction"] == "Yes, to 30 countries."
    assert entries[0]["question"] == "Do you ship abroad?" and entries[0]["recipe_version"] == 1


def test_model_page_card_and_bad_folder(tiny_project, tmp_path):
    at = run_page("model")
    assert_clean(at)
    assert any("`LlamaForCausalLM`" in m.value for m in at.markdown)
    assert any(m.label == "Parameters" for m in at.metric)
    at.text_input[0].set_value(str(tmp_path / "missing")).run()
    next(b for b in at.button if b.label == "Use this model").click().run()
    assert any("does not exist" in e.value for e in at.error)
    assert RecipeStore(tiny_project).latest().number == 1  # nothing saved


def test_model_page_unreachable_endpoint(tiny_project):
    at = run_page("model")
    at.radio(key=f"model.kind.{tiny_project.slug}").set_value("openai").run()
    at.text_input[0].set_value("http://127.0.0.1:9/v1").run()
    at.text_input[1].set_value("some-model").run()
    next(b for b in at.button if b.label == "Use this model").click().run()
    assert_clean(at)
    assert any("Could not reach" in e.value for e in at.error)


def test_pages_do_not_import_torch_at_load(tmp_path):
    """Opening a page before the model is needed must stay fast: no torch or transformers import."""
    script = textwrap.dedent(f"""
        import json, os, sys
        os.environ["STUDIO_HOME"] = {str(tmp_path)!r}
        from core.workspace import Workspace
        from core.recipe import Recipe, RecipeStore
        ws = Workspace(); project = ws.create("P"); RecipeStore(project).save(Recipe())  # the only project opens
        from streamlit.testing.v1 import AppTest
        seen = {{}}
        for page in {PAGES!r}:
            at = AppTest.from_file({APP!r}, default_timeout=60).run()
            if page != "projects":
                at.switch_page(f"../pages/{{page}}.py").run()
            seen[page] = [m for m in ("torch", "transformers") if m in sys.modules] + [str(e.value) for e in at.exception]
        print(json.dumps(seen))
    """)
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    seen = json.loads(out.stdout.strip().splitlines()[-1])
    assert seen == {page: [] for page in PAGES}


def test_fewshot_discard_changes_puts_every_control_back(tiny_project):
    """The toggle, strategy and count stayed as edited while the budget bar showed the saved recipe."""
    saved = RecipeStore(tiny_project).load().fewshot
    at = run_page("fewshot")
    key = f"fewshot.{tiny_project.slug}."
    at.toggle(key=key + "enabled").set_value(not saved.enabled).run()
    at.radio(key=key + "strategy").set_value("mmr" if saved.strategy != "mmr" else "fixed").run()
    at.slider(key=key + "k").set_value(saved.k + 3).run()
    next(b for b in at.button if b.label == "Discard changes").click().run()
    assert_clean(at)
    assert at.toggle[0].value == saved.enabled
    assert next(r for r in at.radio if r.label == "Strategy").value == saved.strategy
    assert next(s for s in at.slider if s.label == "Examples per question").value == saved.k
    assert next(b for b in at.button if b.label == "Discard changes").disabled
    assert all(w.key is None or not w.key.startswith(key + "enabled") for w in at.toggle)  # new widgets, new keys


def test_chat_marks_the_passage_the_answer_is_drawn_from(tiny_project, monkeypatch):
    from core import assistant
    from core.fewshot import Budget
    from core.rag.store import Hit

    hits = (Hit("c1", "d1", "hours.md", 0, "Hours", "Open Monday to Saturday, 9:00 to 18:00.", 1.0, 0.6),
            Hit("c2", "d2", "shipping.md", 0, "", "Orders ship within two business days.", 1.0, 0.5))
    prepared = assistant.PreparedPrompt(None, [], Budget(2048, 10, (), 5, 64, 0, False), hits, True)
    monkeypatch.setattr(assistant, "answer", lambda *a, **k: (prepared, assistant.fixed_answer(
        "Within two business days.", 20)))
    at = run_page("chat")
    at.chat_input[0].set_value("When do orders ship?").run()
    assert_clean(at)
    assert any(e.label == "Sources (2) · answer drawn from [2]" for e in at.expander)
    marked = [m.value for m in at.markdown if m.value.startswith("**[")]
    assert marked == ["**[1]** hours.md · Hours", "**[2]** shipping.md ✓ the answer is drawn from this passage"]


def test_chat_says_so_when_an_answer_was_only_a_loop(tiny_project, monkeypatch):
    """"1000000…" was cut to "10", shown as the answer to "How long does a charge last?"."""
    from core import assistant
    from core.fewshot import Budget
    from core.models.generation import GenerationStream

    def produce(emit, cancel):
        for piece in ["1"] + ["0"] * 80:
            if cancel.is_set():
                break
            emit(piece)
        return 40, 81

    prepared = assistant.PreparedPrompt(None, [], Budget(2048, 10, (), 5, 64, 0, False), (), False)
    monkeypatch.setattr(assistant, "answer", lambda *a, **k: (prepared, GenerationStream(produce, (), 200)))
    at = run_page("chat")
    at.chat_input[0].set_value("How long does a charge last?").run()
    assert_clean(at)
    captions = [c.value for c in at.caption]
    assert any(c.startswith("The model gave no usable answer: it repeated itself.") for c in captions)
    assert any(c.endswith("stopped: the answer repeated itself") for c in captions)


def test_model_page_names_the_engine_and_keeps_the_setting(tiny_project, monkeypatch):
    from core.models import engine

    monkeypatch.delenv("STUDIO_ENGINE")
    at = run_page("model")
    assert_clean(at)
    assert any("Answers come from **transformers**" in m.value for m in at.markdown)  # a folder, not a GGUF file
    at.radio(key="model.engine").set_value("transformers").run()
    assert_clean(at)
    assert engine.preference() == "transformers"
    assert any("transformers was chosen on the Model page." in c.value for c in at.caption)


def test_model_page_offers_to_install_llama_cpp_when_it_is_missing(tiny_project, monkeypatch):
    from core.models import engine, install_engine

    monkeypatch.setattr(engine, "llama_cpp_installed", lambda: False)
    started = []
    monkeypatch.setattr(install_engine, "start_job", lambda: started.append(True))
    at = run_page("model")
    assert any("llama.cpp is not installed" in i.value for i in at.info)
    next(b for b in at.button if b.label == "Install the fast engine").click().run()
    assert_clean(at)
    assert started == [True]


def test_chat_suggests_examples_when_the_embedded_base_model_has_none(workspace):
    from core.fewshot import FewShotSettings

    project = workspace.create("First try")
    store = RecipeStore(project)
    store.save(Recipe(), note="defaults")
    hint = "it answers in the form its examples show"
    at = run_page("chat")
    assert_clean(at)
    assert any(hint in m.value for m in at.markdown)
    store.save(Recipe().with_changes(fewshot=FewShotSettings(enabled=True, dataset="examples")), note="examples")
    at = run_page("chat")
    assert_clean(at)
    assert not any(hint in m.value for m in at.markdown)


def test_chat_offers_to_answer_from_documents_the_recipe_does_not_use(tiny_project):
    """A newcomer uploads documents on 3 · Retriever and asks on the Chat page: the saved recipe's retriever was off,
    so answers ignored the documents without a word."""
    from core.rag.kb import KnowledgeBase

    kb = KnowledgeBase(tiny_project, "handbook")
    manifest = kb.manifest()
    manifest["documents"] = {"faq.md": {"chunks": 3}, "prices.csv": {"chunks": 9}}
    kb._write(manifest)
    notice = "**Your documents are not used.** The knowledge base 'handbook' holds 2 document(s)"
    at = run_page("chat")
    assert_clean(at)
    assert any(m.value.startswith(notice) for m in at.markdown)
    next(b for b in at.button if b.label == "Answer from the documents").click().run()
    assert_clean(at)
    store = RecipeStore(tiny_project)
    saved = store.latest()
    assert saved.number == 2 and saved.recipe.retriever.enabled and saved.recipe.retriever.knowledge_base == "handbook"
    assert saved.recipe.model == store.load(1).model  # the recipe the chat used, with its retriever on
    assert not any(m.value.startswith(notice) for m in at.markdown)


def test_document_uploader_states_the_studios_size_limit(tiny_project, monkeypatch):
    # Streamlit's uploader would otherwise say "200MB per file" while the studio refuses larger documents itself.
    monkeypatch.setenv("STUDIO_MAX_DOCUMENT_MB", "12")
    at = run_page("retriever")
    assert_clean(at)
    uploaders = [e for e in at.get("file_uploader")]
    assert uploaders and uploaders[0].proto.max_upload_size_mb == 12

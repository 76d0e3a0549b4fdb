"""The Fine-tune page with streamlit's AppTest: settings and estimates, the timing estimate appearing once its
job ends, a running (fake) job with live curves and cancel, and the adapter list with attach."""

from __future__ import annotations

import json
import time
from functools import partial
from unittest import mock

import pytest
from streamlit.runtime.scriptrunner import RerunData
from streamlit.testing.v1 import local_script_runner

from apptest_helpers import button, open_page
from core.data.records import new_record
from core.data.store import DatasetStore
from core.finetune import runs
from core.finetune.config import TrainConfig
from core.models.adapters import AdapterRegistry
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

PAIRS = [(f"Question {i}: when do orders ship to region {i}?", f"Orders to region {i} ship in {i % 5 + 1} days.")
         for i in range(16)]


@pytest.fixture
def tuning_project(workspace, tiny_model_dir):
    project = workspace.create("Tuning shop")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    DatasetStore(project).create("pairs", "sft", [new_record("sft", prompt=q, response=a) for q, a in PAIRS])
    return project


def fake_running_run(project) -> runs.Run:
    """A run whose job prints a few step and eval events, then waits (as a long training would)."""
    run = runs.create_run(project, TrainConfig(dataset="pairs", epochs=1), RecipeStore(project).load())
    events = [{"type": "step", "step": s, "total_steps": 10, "epoch": 1, "loss": 3.0 - 0.2 * s, "lr": 1e-4,
               "tokens_per_s": 500.0, "eta_s": 60.0, "progress": s / 10} for s in range(1, 5)]
    events += [{"type": "eval", "step": 0, "eval_loss": 3.1, "best_eval": 3.1},
               {"type": "eval", "step": 4, "eval_loss": 2.5, "best_eval": 2.5},
               {"progress": 0.4, "message": "Training", "message_template": "Training", "message_params": {}}]
    script = "import json,sys,time\n" + "".join(f"print(json.dumps({e!r}), flush=True)\n" for e in events) + \
             "time.sleep(120)\n"
    from core.jobs import Job

    Job.start(run.folder / "jobs", ["-c", script], label="fake training")
    deadline = time.time() + 30
    while len(run.events()) < 6 and time.time() < deadline:
        time.sleep(0.1)
    return run


def test_page_shows_method_choice_recommendation_and_estimates(tuning_project):
    at = open_page("finetune")
    assert any("Suggested" in m.value for m in at.markdown)
    assert at.radio[0].value == "lora"
    labels = [m.label for m in at.metric]
    assert "Memory needed" in labels and "Updates" in labels
    button(at, "Use the suggestion").click().run()
    assert not at.exception
    at.radio[0].set_value("partial").run()
    assert any("Blocks to train" in n.label for n in at.number_input)
    at.radio[0].set_value("bitfit").run()
    assert not at.exception


def rerun_fragment(at, key: str):
    """What the browser does on a fragment's `run_every` tick: rerun that fragment alone, not the page. AppTest
    has no call for it, so its next run asks for a fragment-scoped rerun of the fragments with that key."""
    ids = list(at._fragment_storage._ids_by_target_key.get(key, {}))
    assert ids, f"no fragment with key {key} on the page"
    scoped = partial(RerunData, fragment_id_queue=ids, is_fragment_scoped_rerun=True)
    with mock.patch.object(local_script_runner, "RerunData", scoped):
        return at.run()


def test_timing_estimate_shows_by_itself_once_the_timing_job_ends(tuning_project, tmp_path):
    """The polling fragment notices the timing job ended and reruns the page: no other control is touched."""
    from core.jobs import Job

    gate = tmp_path / "finish"
    event = {"type": "calibration", "seconds_per_step": 0.5, "tokens_per_s": 800.0, "progress": 1.0}
    script = (f"import json,os,time\nprint(json.dumps({event!r}), flush=True)\n"
              f"while not os.path.exists({str(gate)!r}): time.sleep(0.05)\n")
    job = Job.start(runs.runs_folder(tuning_project) / "_timing" / "jobs", ["-c", script], label="Timing")
    at = open_page("finetune")
    assert any(c.value == "Timing a few training steps…" for c in at.caption)
    assert not any(i.value.startswith("About ") for i in at.info)
    rerun_fragment(at, "finetune.timing")  # still running: the fragment keeps waiting
    assert not at.exception, [e.value for e in at.exception]
    assert any(c.value == "Timing a few training steps…" for c in at.caption)
    gate.write_text("go")
    deadline = time.time() + 30
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert job.status().state == "done"
    rerun_fragment(at, "finetune.timing")
    assert not at.exception, [e.value for e in at.exception]
    assert not any(c.value == "Timing a few training steps…" for c in at.caption)
    assert any(i.value.startswith("About ") and "0.5 s each, 800 tokens/s" in i.value for i in at.info)


def finished_timing(project, event: dict) -> None:
    """A finished "Measure the time" job that reported `event`."""
    from core.jobs import Job

    job = Job.start(runs.runs_folder(project) / "_timing" / "jobs",
                    ["-c", f"import json; print(json.dumps({event!r}), flush=True)"], label="Timing")
    deadline = time.time() + 30
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)


def test_the_estimate_includes_finding_passages_and_the_eval_passes(tuning_project):
    finished_timing(tuning_project, {"type": "calibration", "seconds_per_step": 0.5, "tokens_per_s": 800.0,
                                     "prepare_s": 240.0, "eval_s": 300.0, "progress": 1.0})
    at = open_page("finetune")
    assert not at.exception, [e.value for e in at.exception]
    assert any("4 min to find passages and load the model, 5 min for the eval passes" in c.value for c in at.caption)


def test_a_time_limit_goes_into_the_run_config_and_the_estimate(tuning_project):
    finished_timing(tuning_project, {"type": "calibration", "seconds_per_step": 10.0, "tokens_per_s": 40.0,
                                     "progress": 1.0})
    at = open_page("finetune")
    assert json.loads(next(c.value for c in at.code if c.language == "json"))["max_minutes"] == 0
    assert not any("time limit" in c.value for c in at.caption)  # 2 minutes: not long enough to suggest one
    at.number_input(key=f"finetune.{tuning_project.slug}.max_minutes").set_value(1).run()
    assert not at.exception, [e.value for e in at.exception]
    assert json.loads(next(c.value for c in at.code if c.language == "json"))["max_minutes"] == 1
    updates = next(m.value for m in at.metric if m.label == "Updates")
    assert any(f"The 1-minute time limit ends it sooner, after about 6 of the {updates} updates." == c.value
               for c in at.caption)


def test_a_long_estimate_suggests_a_time_limit(tuning_project):
    finished_timing(tuning_project, {"type": "calibration", "seconds_per_step": 600.0, "tokens_per_s": 1.0,
                                     "progress": 1.0})
    at = open_page("finetune")
    assert any(c.value.startswith("That is long for this machine. A time limit") for c in at.caption)
    at.number_input(key=f"finetune.{tuning_project.slug}.max_minutes").set_value(30).run()
    assert not any(c.value.startswith("That is long") for c in at.caption)
    assert any("30-minute time limit ends it sooner, after about 3 of the" in c.value for c in at.caption)


def test_a_run_ended_by_its_time_limit_says_so(tuning_project):
    from core.jobs import Job

    run = runs.create_run(tuning_project, TrainConfig(dataset="pairs", epochs=1, max_minutes=5),
                          RecipeStore(tuning_project).load())
    events = [{"type": "step", "step": 3, "total_steps": 10, "epoch": 1, "loss": 2.0, "lr": 1e-4,
               "tokens_per_s": 500.0, "eta_s": 1.0, "progress": 0.99},
              {"type": "time_limit", "step": 3, "minutes": 5, "message": "limit"}, {"type": "done", "progress": 1.0}]
    job = Job.start(run.folder / "jobs", ["-c", "import json\n" + "".join(
        f"print(json.dumps({e!r}), flush=True)\n" for e in events)], label="fake training")
    deadline = time.time() + 30
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)
    at = open_page("finetune")
    assert any("· at most 5 min" in c.value for c in at.caption)
    assert any("stopped by its time limit at step 3 of 10" in m.value for m in at.markdown)


def test_running_job_shows_progress_curve_and_cancel(tuning_project):
    run = fake_running_run(tuning_project)
    at = open_page("finetune")
    assert not at.exception, [e.value for e in at.exception]
    assert any(m.label == "Training loss" and m.value == "2.200" for m in at.metric)
    assert any(m.label == "Eval loss" and m.value == "2.500" for m in at.metric)
    assert button(at, "Start training").disabled  # one run at a time
    button(at, "Cancel").click().run()
    deadline = time.time() + 30
    while run.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)
    assert run.status().state == "cancelled"


def test_stop_and_keep_asks_the_running_job_to_save_its_adapter(tuning_project):
    run = fake_running_run(tuning_project)
    try:
        at = open_page("finetune")
        button(at, "Stop and keep the adapter").click().run()
        assert not at.exception, [e.value for e in at.exception]
        assert run.keep_requested and run.status().state == "running"  # the job sees it at its next step
        assert any("save the best adapter" in c.value for c in at.caption)
    finally:
        run.cancel()


def test_a_killed_command_line_run_shows_as_stopped_with_resume_and_keep(tuning_project):
    """kill -9 of `studio train`: an attached job without exit code or stderr.log (it used to crash the page)."""
    import subprocess
    import sys

    run = runs.create_run(tuning_project, TrainConfig(dataset="pairs", epochs=1), RecipeStore(tuning_project).load())
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    folder = run.folder / "jobs" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    (folder / "job.json").write_text(json.dumps({"pid": gone.pid, "argv": [], "label": "x", "attached": True}))
    (folder / "events.jsonl").write_text(json.dumps({"type": "step", "step": 2, "total_steps": 10, "epoch": 1,
                                                     "loss": 2.0, "lr": 1e-4, "tokens_per_s": 10.0, "eta_s": 9.0,
                                                     "progress": 0.2}) + "\n")
    (run.folder / "checkpoint").mkdir()
    (run.folder / "checkpoint" / "state.json").write_text("{}")
    at = open_page("finetune")
    assert not at.exception, [e.value for e in at.exception]
    assert any("cancelled" in m.value and "step 2 of 10" in m.value for m in at.markdown)
    assert button(at, "Resume") and button(at, "Keep the adapter as it is")


def test_finished_run_adapter_can_be_attached(tuning_project):
    recipe = RecipeStore(tuning_project).load()
    run = runs.create_run(tuning_project, TrainConfig(dataset="pairs", epochs=1, lora_rank=2, max_length=64,
                                                      precision="fp32"), recipe)
    runs.execute(tuning_project, run.id, lambda **e: None)
    (run.folder / "jobs").mkdir(exist_ok=True)
    at = open_page("finetune")
    assert AdapterRegistry(tuning_project).exists(run.id)
    table = next(d for d in at.dataframe if "Attached" in str(d.value.columns.tolist()))
    assert table.proto.placeholder == "–"  # a metric an adapter lacks is drawn as "–", not "None"
    button(at, "Attach to the recipe").click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert RecipeStore(tuning_project).load().adapter == run.id
    assert button(at, "Detach from the recipe")


def test_endpoint_model_gets_a_clear_message(workspace):
    project = workspace.create("Endpoint shop")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="openai", location="http://127.0.0.1:9/v1",
                                                       model_name="m")))
    at = open_page("finetune")
    assert any("cannot be fine-tuned" in e.value for e in at.error)


def test_config_download_is_the_run_config(tuning_project):
    at = open_page("finetune")
    code = [c.value for c in at.code if c.language == "json"]
    assert code and json.loads(code[0])["dataset"] == "pairs"
    assert any("studio train" in c.value for c in at.code)


def add_preferences(project, count: int) -> None:
    """`count` preference pairs whose chosen answer is always the longer one (a length bias)."""
    DatasetStore(project).create("prefs", "preference", [
        new_record("preference", prompt=q, chosen=a, rejected="No.") for q, a in (PAIRS * 2)[:count]])


def test_a_preference_dataset_offers_the_preference_objectives_and_checks(tuning_project):
    add_preferences(tuning_project, 20)
    at = open_page("finetune")
    K = f"finetune.{tuning_project.slug}."
    at.selectbox(key=K + "dataset").set_value("prefs").run()
    assert not at.exception, [e.value for e in at.exception]
    objective = at.radio(key=K + "objective.preference")
    assert [o.split(":")[0] for o in objective.options] == ["DPO", "ORPO", "KTO", "Reward model"]
    assert objective.value == "dpo"
    assert any("longer" in w.value for w in at.warning)  # the length-bias check
    assert any(n.label == "Beta" for n in at.number_input)
    assert not button(at, "Start training").disabled
    assert json.loads(next(c.value for c in at.code if c.language == "json"))["objective"] == "dpo"
    objective.set_value("reward").run()
    assert at.radio(key=K + "reward_method").options[0].startswith("LoRA")
    assert len(at.radio(key=K + "reward_method").options) == 2


def test_too_few_pairs_or_ratings_block_the_start(tuning_project):
    from core.feedback import record_feedback

    add_preferences(tuning_project, 3)
    record_feedback(tuning_project, question="Do you ship abroad?", answer="Yes, to 30 countries.", rating=1)
    at = open_page("finetune")
    K = f"finetune.{tuning_project.slug}."
    at.selectbox(key=K + "dataset").set_value("prefs").run()
    assert any("at least 8" in e.value for e in at.error)
    assert button(at, "Start training").disabled
    at.selectbox(key=K + "dataset").set_value("").run()  # the Chat page's thumbs up and down
    assert not at.exception, [e.value for e in at.exception]
    assert len(at.radio(key=K + "objective.feedback").options) == 1  # KTO only
    assert any("only 1 usable" in e.value.lower() for e in at.error)
    assert button(at, "Start training").disabled


def test_a_finished_dpo_run_shows_reward_curves_and_its_adapter(tuning_project):
    add_preferences(tuning_project, 16)
    recipe = RecipeStore(tuning_project).load()
    from core.jobs import Job

    run = runs.create_run(tuning_project, TrainConfig(dataset="prefs", objective="dpo", epochs=1, lora_rank=2,
                                                      max_length=64, precision="fp32"), recipe)
    job = Job.attach(run.folder / "jobs", "dpo")  # as `studio train` records a run, so the page reads its events
    runs.execute(tuning_project, run.id, job.record)
    job.finish(0)
    reward = runs.create_run(tuning_project, TrainConfig(dataset="prefs", objective="reward", epochs=1, lora_rank=2,
                                                         max_length=64, precision="fp32"), recipe)
    runs.execute(tuning_project, reward.id, lambda **e: None)
    at = open_page("finetune")
    K = f"finetune.{tuning_project.slug}."
    at.selectbox(key=K + "run").set_value(run.id).run()
    labels = [m.label for m in at.metric]
    assert "Reward margin" in labels and "Chosen preferred" in labels
    at.selectbox(key=K + "adapter").set_value(reward.id).run()
    assert not at.exception, [e.value for e in at.exception]
    assert not any(b.label == "Attach to the recipe" for b in at.button)  # a reward model scores, it does not answer
    assert any("Rank with reward model" in c.value for c in at.caption)


def test_the_form_starts_with_the_settings_the_suggestion_names(workspace, tiny_model_dir):
    """The suggestion said "LoRA (rank 8)" while the form held 16: the numbers must agree."""
    project = workspace.create("Many pairs")
    RecipeStore(project).save(Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama")))))
    pairs = [new_record("sft", prompt=f"Question number {i}?", response=f"Answer {i}.") for i in range(300)]
    DatasetStore(project).create("pairs", "sft", pairs)
    at = open_page("finetune")
    suggested = next(m.value for m in at.markdown if "Suggested" in m.value)
    assert "rank 8" in suggested
    assert at.radio[0].value == "lora"
    assert next(n for n in at.number_input if n.label == "Rank").value == 8
    assert next(n for n in at.number_input if n.label == "Alpha").value == 16
    assert next(n for n in at.number_input if n.label == "Epochs").value == 5


def test_gguf_export_is_explained_and_its_finished_job_shows_where_and_how(tuning_project):
    from core.finetune import gguf_export
    from core.jobs import Job

    recipe = RecipeStore(tuning_project).load()
    run = runs.create_run(tuning_project, TrainConfig(dataset="pairs", epochs=1, lora_rank=2, max_length=64,
                                                      precision="fp32"), recipe)
    runs.execute(tuning_project, run.id, lambda **e: None)
    at = open_page("finetune")
    assert any("GGUF export writes models that were read from a GGUF file" in c.value for c in at.caption)  # a folder model
    target = tuning_project.subdir("exports") / "assistant-run-q8_0-gguf"
    target.mkdir(parents=True)
    (target / gguf_export.MODELFILE).write_text("FROM ./model.gguf\n")
    job = Job.start(gguf_export.jobs_folder(tuning_project),
                    ["-c", f"import json; print(json.dumps({{'folder': {str(target)!r}}}))"], label="export")
    deadline = time.time() + 30
    while job.status().state == "running" and time.time() < deadline:
        time.sleep(0.1)
    at = open_page("finetune")
    assert any("GGUF export ready" in m.value and str(target) in m.value for m in at.markdown)
    assert any("ollama create my-assistant -f Modelfile" in c.value for c in at.code)


def test_a_recipe_that_retrieves_trains_with_its_passages_by_default(tuning_project, monkeypatch):
    from conftest import HashEmbedder
    from core.rag import kb as kb_module
    from core.rag.kb import KnowledgeBase
    from core.rag.retriever import RetrieverSettings

    def shown_config():
        at = open_page("finetune")
        assert not at.exception, [e.value for e in at.exception]
        return json.loads([c.value for c in at.code if c.language == "json"][0])

    assert shown_config()["retrieval_context"] == "none"  # no retriever: nothing to add
    monkeypatch.setattr(kb_module, "_embed", HashEmbedder(dims=384))
    monkeypatch.setattr(kb_module, "_count_tokens", lambda: (lambda text: len(text.split())))
    recipes = RecipeStore(tuning_project)
    recipes.save(recipes.load().with_changes(retriever=RetrieverSettings(enabled=True)))
    assert shown_config()["retrieval_context"] == "none"  # the retriever is on, but no documents are indexed
    base = KnowledgeBase(tuning_project, "docs")
    base.ingest(base.add_files([("shop.md", b"# Shop\n\nThe shop opens at nine and closes at six on weekdays.")]))
    config = shown_config()
    assert config["retrieval_context"] == "mixed" and config["max_length"] == 1024


def test_a_batch_too_big_for_the_free_memory_gets_a_button_with_one_that_fits(tuning_project, tiny_model_dir,
                                                                              monkeypatch):
    """The warning alone left a newcomer to guess the settings; the button halves the batch until the estimate
    fits and doubles gradient accumulation, so each update still averages as many examples."""
    from core.finetune import estimate

    shape = estimate.ModelShape.from_folder(str(tiny_model_dir("llama")))
    config = TrainConfig()
    need = {b: estimate.estimate_memory(shape, config.with_changes(batch_size=b), config.max_length, "cpu", 1).total
            for b in (1, 2, 4, 64)}
    free = (need[2] + need[4]) // 2  # batch 2 fits, 4 does not
    monkeypatch.setattr(estimate, "available_memory", lambda device: free if device == "cpu" else None)
    at = open_page("finetune")
    batch = next(n for n in at.number_input if n.label == "Batch size")
    accumulation = next(n for n in at.number_input if n.label == "Gradient accumulation")
    assert batch.value <= 2  # the form starts with a batch that fits
    assert not any("needs about" in w.value for w in at.warning)
    accumulated = accumulation.value
    batch.set_value(64).run()
    assert any("needs about" in w.value for w in at.warning)
    offer = next(b for b in at.button if b.label.startswith("Use batch size 2 with gradient accumulation"))
    assert f"averages {64 * accumulated} examples" in offer.label
    offer.click().run()
    assert not at.exception, [e.value for e in at.exception]
    assert next(n for n in at.number_input if n.label == "Batch size").value == 2
    assert next(n for n in at.number_input if n.label == "Gradient accumulation").value == 32 * accumulated
    assert not at.warning, [w.value for w in at.warning]  # nor Streamlit's note on a widget set from state

"""Fine-tuning runs end to end on tiny models: the job, checkpoints, resume after kill -9, the adapter registry,
attaching an adapter to a recipe, merging and exporting."""

from __future__ import annotations

import json
import os
import signal
import time

import pytest

from core.data.records import new_record
from core.data.store import DatasetStore
from core.errors import TrainingError
from core.finetune import runs
from core.finetune.adapters import export_adapter_zip, merge_and_export
from core.finetune.config import TrainConfig
from core.models.adapters import AdapterRegistry
from core.models.source import ModelSource
from core.recipe import Recipe, RecipeStore

PAIRS = [("What is the capital of France?", "Paris."), ("How many days are in a week?", "Seven days."),
         ("How do I reset my password?", "Open the settings page and choose reset password."),
         ("When do orders ship?", "Within two business days."), ("When are refunds processed?", "Within five days."),
         ("What is the weather today?", "Sunny with a light breeze."), ("Thủ đô của Việt Nam là gì?", "Hà Nội."),
         ("What do cats and dogs have in common?", "They are popular pets."),
         ("What do birds do in the morning?", "Birds sing in the morning."),
         ("Where do fish swim?", "In the river near the old bridge."),
         ("What do models read?", "Tokens."), ("Xin chào, bạn có khỏe không?", "Tôi khỏe, cảm ơn bạn.")]


def make_project(project, folder, n_copies: int = 2, kind: str = "sft"):
    records = [new_record("sft", prompt=q, response=a) for _ in range(n_copies) for q, a in PAIRS]
    DatasetStore(project).create("pairs", kind, records if kind == "sft" else [])
    recipe = Recipe(model=ModelSource(kind="local", location=str(folder)))
    RecipeStore(project).save(recipe)
    return recipe


def quick(**changes) -> TrainConfig:
    base = dict(dataset="pairs", method="lora", epochs=2, batch_size=4, learning_rate=5e-3, lora_rank=4,
                lora_alpha=8, max_length=64, eval_fraction=0.2, precision="fp32")
    return TrainConfig(**{**base, **changes})


def test_run_in_process_registers_adapter_and_lowers_eval_loss(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("llama"))
    run = runs.create_run(project, quick(epochs=4), recipe)
    events = []
    result = runs.execute(project, run.id, lambda **e: events.append(e))
    assert result["finished"] and result["adapter"] == run.id
    evals = [e["eval_loss"] for e in events if e.get("type") == "eval"]
    assert len(evals) >= 2 and min(evals[1:]) < evals[0]
    info = AdapterRegistry(project).get(run.id)
    assert info.is_peft and info.manifest["dataset_version"] == 1 and info.manifest["base_fingerprint"]
    assert (info.folder / "adapter_config.json").exists()
    assert any(e.get("type") == "report" for e in events)


def test_attached_adapter_changes_the_recipe_backend(project, tiny_model_dir):
    import torch

    from core import assistant
    from core.models import registry

    recipe = make_project(project, tiny_model_dir("llama"))
    run = runs.create_run(project, quick(learning_rate=5e-2), recipe)
    runs.execute(project, run.id, lambda **e: None)
    base = assistant.recipe_backend(project, recipe)
    tuned = assistant.recipe_backend(project, recipe.with_changes(adapter=run.id))
    assert tuned is not base and tuned is assistant.recipe_backend(project, recipe.with_changes(adapter=run.id))
    ids = base.tokenizer("Question: When do orders ship?\nAnswer:", return_tensors="pt")["input_ids"]
    with torch.no_grad():
        assert not torch.allclose(base.model(ids).logits, tuned.model(ids).logits)
    registry.forget_backend(recipe.model)


def test_merged_export_matches_base_plus_adapter(project, tiny_model_dir, tmp_path):
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    folder = tiny_model_dir("gemma3")
    recipe = make_project(project, folder)
    run = runs.create_run(project, quick(learning_rate=5e-2), recipe)
    runs.execute(project, run.id, lambda **e: None)
    info = AdapterRegistry(project).get(run.id)
    merged_dir = merge_and_export(info, folder, tmp_path / "merged")
    assert (merged_dir / "README.md").read_text().startswith("# ")
    ids = torch.tensor([[1, 5, 9, 30, 42, 7]])
    with torch.no_grad():
        peft_model = PeftModel.from_pretrained(AutoModelForCausalLM.from_pretrained(folder), str(info.folder))
        expected = peft_model(ids).logits
        merged = AutoModelForCausalLM.from_pretrained(merged_dir)(ids).logits
    assert torch.allclose(expected, merged, atol=1e-4)
    archive = export_adapter_zip(info, tmp_path)
    assert archive.exists() and archive.stat().st_size > 0


def test_adapter_for_another_base_is_refused(project, tiny_model_dir):
    from core.models import registry

    recipe = make_project(project, tiny_model_dir("llama"))
    run = runs.create_run(project, quick(epochs=1), recipe)
    runs.execute(project, run.id, lambda **e: None)
    other = recipe.with_changes(model=ModelSource(kind="local", location=str(tiny_model_dir("phi"))),
                                adapter=run.id)
    from core import assistant

    with pytest.raises(TrainingError, match="different base model"):
        assistant.recipe_backend(project, other)
    registry.forget_backend(other.model)


@pytest.mark.parametrize("kind, message", [("preference", "preference"), ("eval", "evaluation set")])
def test_wrong_dataset_kind_is_explained(project, tiny_model_dir, kind, message):
    recipe = make_project(project, tiny_model_dir("llama"), kind=kind)
    with pytest.raises(TrainingError, match=message):
        runs.create_run(project, quick(), recipe)


def test_too_small_dataset_is_explained(project, tiny_model_dir):
    DatasetStore(project).create("pairs", "sft", [new_record("sft", prompt="q", response="a")])
    recipe = Recipe(model=ModelSource(kind="local", location=str(tiny_model_dir("llama"))))
    run = runs.create_run(project, quick(), recipe)
    with pytest.raises(TrainingError, match="at least"):
        runs.execute(project, run.id, lambda **e: None)


def test_endpoint_models_cannot_be_fine_tuned(project, tiny_model_dir):
    make_project(project, tiny_model_dir("llama"))
    recipe = Recipe(model=ModelSource(kind="openai", location="http://127.0.0.1:9/v1", model_name="m"))
    with pytest.raises(TrainingError, match="endpoint"):
        runs.create_run(project, quick(), recipe)


def test_full_disk_while_saving_leaves_no_adapter(project, tiny_model_dir, monkeypatch):
    import errno

    import peft

    recipe = make_project(project, tiny_model_dir("llama"))
    run = runs.create_run(project, quick(epochs=1), recipe)

    def no_space(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(peft.PeftModel, "save_pretrained", no_space)
    with pytest.raises(TrainingError, match="disk is full"):
        runs.execute(project, run.id, lambda **e: None)
    assert AdapterRegistry(project).list() == []
    assert not any(p.name.startswith(".") for p in AdapterRegistry(project).folder.iterdir())
    assert run.has_checkpoint  # resume can register it once space is free


def wait_for(predicate, timeout: float = 120.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        if predicate():
            return
        time.sleep(0.2)
    raise AssertionError("timed out")


def test_kill_9_then_resume_continues_from_the_checkpoint(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("llama"), n_copies=6)
    run = runs.create_run(project, quick(epochs=3, batch_size=2, save_every=2, eval_every=4), recipe)
    job = run.start()
    wait_for(lambda: any(e.get("type") == "checkpoint" and e["step"] >= 4 for e in job.events()))
    pid = json.loads((job.folder / "job.json").read_text())["pid"]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: run.status().state == "cancelled")  # stopped, not a crash: it can resume
    assert run.status().resumable
    saved_step = json.loads((run.folder / "checkpoint" / "state.json").read_text())["state"]["step"]
    job = run.start()
    wait_for(lambda: run.status().state in ("done", "failed"), timeout=240)
    assert run.status().state == "done", run.status()
    resumed = job.events()
    assert any(e.get("message_template", "").startswith("Resumed from the checkpoint") for e in resumed)
    first_step = next(e["step"] for e in resumed if e.get("type") == "step")
    assert first_step == saved_step + 1
    total = next(e["total_steps"] for e in resumed if e.get("type") == "step")
    assert [e for e in resumed if e.get("type") == "step"][-1]["step"] == total


def test_cancel_then_add_epochs(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("llama"), n_copies=6)
    run = runs.create_run(project, quick(epochs=2, batch_size=2, save_every=1000, eval_every=1000), recipe)
    job = run.start()
    wait_for(lambda: any(e.get("type") == "step" and e["step"] >= 3 for e in job.events()))
    run.cancel()
    wait_for(lambda: run.status().state != "running")
    assert run.status().state == "cancelled" and run.status().resumable
    job = run.start()
    wait_for(lambda: run.status().state in ("done", "failed"), timeout=240)
    assert run.status().state == "done", run.status()
    steps_before = run.status().step
    job = run.add_epochs(1)
    wait_for(lambda: job.status().state != "running", timeout=240)
    assert run.status().state == "done"
    assert run.status().step > steps_before
    assert AdapterRegistry(project).get(run.id).metrics["steps"] == run.status().step


def test_stop_and_keep_saves_the_best_adapter_so_far_and_ends_the_run(project, tiny_model_dir):
    recipe = make_project(project, tiny_model_dir("llama"), n_copies=4)
    run = runs.create_run(project, quick(epochs=3, batch_size=2, eval_every=2), recipe)
    with pytest.raises(TrainingError, match="nothing learned"):
        run.request_keep()  # not started: no checkpoint to keep

    def keep_at_step_three(**event) -> None:
        if event.get("type") == "step" and event["step"] == 3:
            assert run.request_keep() is False  # nothing runs as a job: this process is the one training

    result = runs.execute(project, run.id, keep_at_step_three)
    assert result["finished"] and result["stopped_by_user"] and result["steps"] == 3
    info = AdapterRegistry(project).get(run.id)
    assert info.metrics["stopped_by_user"] is True and info.metrics["steps"] == 3
    assert (info.folder / "adapter_config.json").exists()


def test_a_stopped_run_is_finished_from_its_checkpoint_on_the_command_line(project, tiny_model_dir):
    from typer.testing import CliRunner

    from core import cli

    recipe = make_project(project, tiny_model_dir("llama"), n_copies=4)
    run = runs.create_run(project, quick(epochs=3, batch_size=2, save_every=1000, eval_every=1000), recipe)
    steps = []
    stopped = runs.execute(project, run.id, lambda **e: steps.append(e) if e.get("type") == "step" else None,
                           should_stop=lambda: len(steps) >= 2)
    assert not stopped["finished"] and stopped["step"] == 2 and run.has_checkpoint
    result = CliRunner().invoke(cli.app, ["train", project.name, "--finish", run.id])
    assert result.exit_code == 0, result.output
    info = AdapterRegistry(project).get(run.id)
    assert info.metrics["stopped_by_user"] is True and info.metrics["steps"] == 2  # nothing trained further
    again = CliRunner().invoke(cli.app, ["train", project.name, "--finish", run.id])
    assert again.exit_code == 1 and "finished" in again.output
    assert run.keep_requested
    (run.folder / "jobs").mkdir(exist_ok=True)
    run.start().cancel()  # a plain resume drops the request, so it would train to the end
    assert not run.keep_requested


@pytest.mark.skipif(__import__("importlib").util.find_spec("bitsandbytes") is None, reason="needs bitsandbytes")
def test_qlora_is_offered_only_with_cuda():
    """QLoRA is verified on CUDA only. bitsandbytes 0.50.2 now also runs a 4-bit layer in eval mode on a CPU (older
    releases failed in the CPU kernel), but 4-bit on a CPU is slower than bf16 LoRA and untested end to end here."""
    import torch

    from core.finetune.methods import qlora_support

    if torch.cuda.is_available():
        pytest.skip("CUDA machine")
    works, reason = qlora_support()
    assert works is False and "CUDA" in str(reason)


def test_a_command_line_run_shows_on_the_page_as_a_job(project, tiny_model_dir, tmp_path):
    from typer.testing import CliRunner

    from core import cli

    make_project(project, tiny_model_dir("llama"))
    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(quick(epochs=1).to_dict()))
    result = CliRunner().invoke(cli.app, ["train", project.name, "--config", str(config_file)])
    assert result.exit_code == 0, result.output
    [run] = runs.list_runs(project)
    assert run.status().state == "done" and run.latest_job().status().state == "done"
    assert any(e.get("type") == "step" for e in run.events())  # the page draws the curves from these


def test_the_timing_counts_the_preparation_and_the_eval_passes(project, tiny_model_dir):
    """The page said 5 minutes for a run of 13.7: passages, model loading and eval passes were left out."""
    recipe = make_project(project, tiny_model_dir("llama"), n_copies=4)
    config = quick(epochs=2, batch_size=2, eval_every=4)
    spec = {"config": config.with_changes(dataset_version=1).to_dict(), "base_model": recipe.model.to_dict(),
            "prompt": recipe.prompt.to_dict(), "labels": {"user": recipe.labels.user,
                                                          "assistant": recipe.labels.assistant},
            "retriever": recipe.retriever.to_dict()}
    timed = runs.calibrate(project, spec, lambda **e: None)
    assert timed["prepare_s"] > 0 and timed["eval_s"] > 0
    assert timed["estimate_s"] == pytest.approx(timed["prepare_s"] + timed["seconds_per_step"] * timed["total_steps"]
                                                + timed["eval_s"])


def test_a_run_kept_before_its_first_eval_keeps_what_it_learned(project, tiny_model_dir):
    """The eval pass before training is the curve's starting point, not a candidate: keeping its weights kept an
    adapter that changes nothing (LoRA's B matrices are zero at the start)."""
    from safetensors.torch import load_file

    recipe = make_project(project, tiny_model_dir("llama"), n_copies=4)
    run = runs.create_run(project, quick(epochs=3, batch_size=2, eval_every=1000, save_every=1), recipe)

    def keep_at_step_two(**event) -> None:
        if event.get("type") == "step" and event["step"] == 2:
            run.request_keep()

    result = runs.execute(project, run.id, keep_at_step_two)
    assert result["finished"] and result["stopped_by_user"] and result["steps"] == 2
    info = AdapterRegistry(project).get(run.id)
    tensors = load_file(str(next(info.folder.glob("*.safetensors"))))
    lora_b = [t for name, t in tensors.items() if "lora_B" in name]
    assert lora_b and any(float(t.abs().sum()) > 0 for t in lora_b)


def test_a_run_trained_in_this_process_shows_as_finished_or_failed(project, tiny_model_dir):
    """The sample's adapter is trained in the process that sets up its ladder; the Fine-tune page must not list
    that run as never started."""
    recipe = make_project(project, tiny_model_dir("llama"))
    run = runs.create_run(project, quick(epochs=1), recipe)
    assert run.status().state == "new"
    result = runs.execute_recorded(project, run.id, lambda **e: None)
    status = runs.get_run(project, run.id).status()
    assert result["finished"] and status.state == "done" and status.step == status.total > 0

    DatasetStore(project).save("pairs", [new_record("sft", prompt="q", response="a")], 1)
    failing = runs.create_run(project, quick(), recipe)
    with pytest.raises(TrainingError, match="at least"):
        runs.execute_recorded(project, failing.id, lambda **e: None)
    status = runs.get_run(project, failing.id).status()
    assert status.state == "failed" and "at least" in status.error


def test_the_schedule_follows_the_clock_under_a_time_limit():
    from core.finetune.trainer import learning_rate

    config = TrainConfig(learning_rate=1e-3, warmup_ratio=0.1, max_minutes=10)
    assert learning_rate(config, 5, 100) == learning_rate(config, 5, 100, 0.0) == pytest.approx(6e-4)  # the steps'
    assert learning_rate(config, 5, 100, 0.05) == pytest.approx(6e-4)  # the steps are further along
    assert learning_rate(config, 5, 100, 0.5) == learning_rate(config, 50, 100)  # the clock is further along
    assert learning_rate(config, 5, 100, 1.0) == pytest.approx(1e-4)  # the end of the time: 10% of the peak
    assert learning_rate(config, 0, 100, 0.02) == pytest.approx(3e-4)  # warming up on the clock


def test_a_time_limit_ends_the_run_as_finished_with_a_decayed_rate(project, tiny_model_dir, monkeypatch):
    """The run stops when its time is used, scores and keeps what it learned as a finished run, and its last
    updates had the decayed rate of a schedule that ends with the time, not the peak rate of one planned for 100
    epochs. Time is a fake clock: one second per reading."""
    import itertools

    from core.finetune import trainer

    ticks = itertools.count()
    monkeypatch.setattr(trainer.time, "perf_counter", lambda: float(next(ticks)))
    recipe = make_project(project, tiny_model_dir("llama"), n_copies=4)
    run = runs.create_run(project, quick(epochs=100, batch_size=2, max_minutes=1.0), recipe)
    events = []
    result = runs.execute(project, run.id, lambda **e: events.append(e))
    steps = [e for e in events if e.get("type") == "step"]
    assert result["finished"] and result["stopped_by_time"] and not result["stopped_by_user"]
    assert 5 <= result["steps"] == len(steps) < steps[-1]["total_steps"] // 10
    assert steps[-1]["lr"] < 0.2 * 5e-3 < steps[len(steps) // 4]["lr"]
    assert steps[-1]["progress"] > 0.9 and steps[-1]["eta_s"] < 10
    assert [e for e in events if e.get("type") == "eval"][-1]["step"] == result["steps"]  # scored where it stopped
    assert any(e.get("type") == "time_limit" for e in events)
    assert AdapterRegistry(project).get(run.id).manifest["metrics"]["stopped_by_time"] is True
    saved = json.loads((run.folder / "checkpoint" / "state.json").read_text())["state"]
    assert saved["seconds"] >= 60 and saved["stopped_by_time"]

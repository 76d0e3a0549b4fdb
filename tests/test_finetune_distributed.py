"""Training under `accelerate launch` with two CPU processes (gloo): data parallel (`--multi_gpu`) and sharded
(`--use_fsdp`, FSDP2) runs train the same tensors as one process from the same run config, a sharded run resumes
from its checkpoint, and only the main process writes and prints.

On a machine without GPUs, accelerate's `--multi_gpu` / `--use_fsdp` launchers start the processes with
torch.distributed.run (its `--cpu --num_processes N` would start only one, without MPI); current_workers tells
accelerate they are CPU processes.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.errors import TrainingError
from core.finetune import distributed, runs
from core.finetune.distributed import Workers, launch_command
from core.models.adapters import AdapterRegistry

from test_finetune_runs import make_project, quick

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adapter_tensors(project, adapter_id):
    from safetensors.torch import load_file

    info = AdapterRegistry(project).get(adapter_id)
    return load_file(str(info.folder / ("adapter_model.safetensors" if info.is_peft else "weights.safetensors")))


def _launch(mode: str, project, studio_home, *args: str) -> tuple[dict, str]:
    """`accelerate launch MODE --num_processes 2 -m core.cli train PROJECT ARGS` on two CPU processes: (the result the
    main process printed, stdout)."""
    command = [sys.executable, "-m", "accelerate.commands.launch", mode, "--num_processes", "2", "--num_machines",
               "1", "--main_process_port", str(_free_port()), "-m", "core.cli", "train", project.name, *args]
    env = {**os.environ, "STUDIO_HOME": str(studio_home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO),
           "CUDA_VISIBLE_DEVICES": ""}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, done.stdout  # only the main process prints the result
    return results[0], done.stdout


def _assert_same_tensors(project, expected_id, got_id, trained: str) -> None:
    import torch

    expected, got = _adapter_tensors(project, expected_id), _adapter_tensors(project, got_id)
    assert expected.keys() == got.keys()
    moved = [k for k in expected if trained in k and float(expected[k].abs().sum()) > 0]
    assert moved, "the single-process run should have trained the tensors"
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-5, msg=name)


def _assert_same_steps(project, expected_id, got_id) -> None:
    """Every update's loss and gradient norm (before clipping) as in the single-process run: Adam hides a gradient
    scaled by a constant, the norm does not. The history comes from the checkpoint the main process wrote."""
    def steps(run_id):
        state = json.loads((runs.get_run(project, run_id).folder / "checkpoint" / "state.json").read_text())
        return [e for e in state["history"] if e["type"] == "step"]

    expected, got = steps(expected_id), steps(got_id)
    assert [e["step"] for e in got] == [e["step"] for e in expected] == list(range(1, len(expected) + 1))
    for want, have in zip(expected, got):
        assert have["loss"] == pytest.approx(want["loss"], rel=1e-4)
        assert have["grad_norm"] == pytest.approx(want["grad_norm"], rel=1e-3)


def test_data_parallel_processes_train_the_same_adapter_as_one(project, tiny_model_dir, tmp_path, studio_home):
    recipe = make_project(project, tiny_model_dir("llama"))
    config = quick(epochs=2, batch_size=6, grad_accum=2, eval_fraction=0.25, learning_rate=2e-2)
    single = runs.create_run(project, config, recipe)
    runs.execute(project, single.id, lambda **e: None)

    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(config.to_dict()))
    result, out = _launch("--multi_gpu", project, studio_home, "--config", str(config_file))
    assert "Data parallel across 2 processes" in out
    assert result["adapter"] != single.id
    _assert_same_tensors(project, single.id, result["adapter"], "lora_B")
    _assert_same_steps(project, single.id, result["adapter"])


# batch_size 2 on 17 training and 7 eval examples: the last batches have one row, so one process's share is empty
# and it runs a stand-in row (FSDP needs every process in every forward and backward).
SHARDED = dict(epochs=2, batch_size=2, grad_accum=2, eval_fraction=0.3)


@pytest.mark.parametrize("method, learning_rate, trained", [("lora", 2e-2, "lora_B"), ("full", 2e-3, "layers.1.mlp")])
def test_sharded_processes_train_the_same_tensors_as_one(method, learning_rate, trained, project, tiny_model_dir,
                                                          tmp_path, studio_home):
    recipe = make_project(project, tiny_model_dir("llama"))
    config = quick(method=method, learning_rate=learning_rate, **SHARDED)
    single = runs.create_run(project, config, recipe)
    metrics = runs.execute(project, single.id, lambda **e: None)
    assert metrics["train_examples"] % 2 == 1 and metrics["eval_examples"] % 2 == 1

    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(config.to_dict()))
    result, out = _launch("--use_fsdp", project, studio_home, "--config", str(config_file))
    assert "Sharded across 2 processes (FSDP)" in out
    _assert_same_tensors(project, single.id, result["adapter"], trained)
    info = AdapterRegistry(project).get(result["adapter"])
    assert info.is_peft == (method == "lora") and (info.folder / "adapter.json").exists()
    run = runs.get_run(project, result["adapter"])
    assert (run.folder / "best.safetensors").exists()
    _assert_same_steps(project, single.id, run.id)


def test_a_sharded_run_resumes_from_its_checkpoint(project, tiny_model_dir, tmp_path, studio_home):
    recipe = make_project(project, tiny_model_dir("llama"))
    config = quick(method="full", learning_rate=2e-3, max_steps=2, **{**SHARDED, "epochs": 1})
    single = runs.create_run(project, config, recipe)
    runs.execute(project, single.id, lambda **e: None)
    single.update_config(epochs=2, max_steps=0)  # what --add-epochs 1 does
    runs.execute(project, single.id, lambda **e: None)

    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(config.to_dict()))
    first, _ = _launch("--use_fsdp", project, studio_home, "--config", str(config_file))
    assert first["steps"] == 2
    resumed, out = _launch("--use_fsdp", project, studio_home, "--resume", first["adapter"], "--add-epochs", "1")
    assert "Resumed from the checkpoint at step 2" in out and resumed["steps"] > 2
    assert resumed["adapter"] == first["adapter"]
    _assert_same_tensors(project, single.id, resumed["adapter"], "layers.1.mlp")
    _assert_same_steps(project, single.id, resumed["adapter"])


def test_qlora_is_refused_when_sharded():
    with pytest.raises(TrainingError, match="QLoRA cannot be sharded"):
        distributed.check_shardable(quick(method="qlora"))
    distributed.check_shardable(quick(method="lora"))


def test_rows_are_dealt_out_across_processes():
    rows = list(range(7))
    shares = [Workers(rank, 3).share(rows) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == rows
    assert Workers().share(rows) == rows and Workers().is_main and not Workers().parallel


def test_launch_command_quotes_the_project():
    assert launch_command("Lumen Bikes", "run config.json", 4) == (
        "accelerate launch --multi_gpu --num_processes 4 -m core.cli train 'Lumen Bikes' --config 'run config.json'")
    assert launch_command("Lumen Bikes", "run.json", 2, sharded=True) == (
        "accelerate launch --use_fsdp --num_processes 2 -m core.cli train 'Lumen Bikes' --config run.json")

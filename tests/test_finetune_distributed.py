"""Data-parallel training under `accelerate launch`: two CPU processes (gloo) train the same adapter as one process
from the same run config, and only the main process writes."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from core.finetune import runs
from core.finetune.adapters import AdapterRegistry
from core.finetune.distributed import Workers, launch_command

from test_finetune_runs import make_project, quick

REPO = Path(__file__).resolve().parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _adapter_tensors(project, adapter_id):
    from safetensors.torch import load_file

    folder = AdapterRegistry(project).get(adapter_id).folder
    return load_file(str(folder / "adapter_model.safetensors"))


def test_two_processes_train_the_same_adapter_as_one(project, tiny_model_dir, tmp_path, studio_home):
    import torch

    recipe = make_project(project, tiny_model_dir("llama"))
    config = quick(epochs=2, batch_size=6, grad_accum=2, eval_fraction=0.25, learning_rate=2e-2)
    single = runs.create_run(project, config, recipe)
    runs.execute(project, single.id, lambda **e: None)

    config_file = tmp_path / "run.json"
    config_file.write_text(json.dumps(config.to_dict()))
    command = [sys.executable, "-m", "accelerate.commands.launch", "--cpu", "--num_processes", "2",
               "--num_machines", "1", "--main_process_port", str(_free_port()), "-m", "core.cli", "train",
               project.name, "--config", str(config_file)]
    env = {**os.environ, "STUDIO_HOME": str(studio_home), "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    results = [json.loads(line) for line in done.stdout.splitlines() if line.startswith("{")]
    assert len(results) == 1, done.stdout  # only the main process prints the result
    assert done.stdout.count("run ") == 1 or "run " in done.stdout
    parallel_id = results[0]["adapter"]
    assert parallel_id != single.id

    expected, got = _adapter_tensors(project, single.id), _adapter_tensors(project, parallel_id)
    assert expected.keys() == got.keys()
    moved = [k for k in expected if "lora_B" in k and float(expected[k].abs().sum()) > 0]
    assert moved, "the single-process run should have trained the adapter"
    for name in expected:
        torch.testing.assert_close(got[name], expected[name], rtol=1e-3, atol=1e-5, msg=name)
    events = runs.get_run(project, parallel_id).events()
    steps = [e for e in events if e.get("type") == "step"]
    assert [e["step"] for e in steps] == sorted({e["step"] for e in steps})  # one writer: no duplicate steps


def test_rows_are_dealt_out_across_processes():
    rows = list(range(7))
    shares = [Workers(rank, 3).share(rows) for rank in range(3)]
    assert shares == [[0, 3, 6], [1, 4], [2, 5]]
    assert sorted(sum(shares, [])) == rows
    assert Workers().share(rows) == rows and Workers().is_main and not Workers().parallel


def test_launch_command_quotes_the_project():
    assert launch_command("Lumen Bikes", "run config.json", 4) == (
        "accelerate launch --multi_gpu --num_processes 4 -m core.cli train 'Lumen Bikes' --config 'run config.json'")

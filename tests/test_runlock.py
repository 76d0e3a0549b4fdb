"""One training run, one evaluation and one retrieval sweep at a time per project, enforced in core for every
process: a second start is refused naming the run that holds the project; a lock whose process is gone (or whose
job ended) is taken over."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import psutil
import pytest
from typer.testing import CliRunner

from core import atomic, cli, runlock
from core.errors import StudioError
from core.jobs import Job
from core.runlock import RunBusyError, RunLock

SLEEPER = ["-c", "import time; time.sleep(120)"]


@pytest.fixture
def sleeping_jobs(monkeypatch):
    """Job.start launches a process that only sleeps (instead of training or answering); all are killed after."""
    started = []
    real_start = Job.start.__func__

    def start(cls, jobs_dir, argv, label):
        job = real_start(cls, jobs_dir, SLEEPER, label)
        started.append(job)
        return job

    monkeypatch.setattr(Job, "start", classmethod(start))
    yield started
    for job in started:
        try:
            os.killpg(atomic.read_json(job.folder / "job.json")["pid"], signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass


def _finetune_run(project, run_id):
    from core.finetune.runs import Run, runs_folder

    folder = runs_folder(project) / run_id
    folder.mkdir(parents=True)
    atomic.write_json(folder / "run.json", {"id": run_id})
    return Run(folder)


def _eval_run(project, run_id):
    from core.evaluate.runs import EvalRun, runs_folder

    folder = runs_folder(project) / run_id
    folder.mkdir(parents=True)
    atomic.write_json(folder / "spec.json", {})
    return EvalRun(folder)


def _sweep(project, run_id):
    from core.evaluate.sweep import SweepRun, sweeps_folder

    folder = sweeps_folder(project) / run_id
    folder.mkdir(parents=True)
    atomic.write_json(folder / "spec.json", {})
    return SweepRun(folder)


KINDS = {"training": (_finetune_run, "training run"), "evaluation": (_eval_run, "evaluation"),
         "sweep": (_sweep, "retrieval sweep")}


@pytest.mark.parametrize("kind", list(KINDS))
def test_a_second_start_is_refused_naming_the_run_that_holds_the_project(project, sleeping_jobs, kind):
    make, label = KINDS[kind]
    first, second = make(project, "20250101-000000-first"), make(project, "20250101-000001-second")
    first.start()
    with pytest.raises(StudioError, match=f"One {label} runs at a time.*20250101-000000-first"):
        second.start()
    assert len(sleeping_jobs) == 1  # the second never started a process


def test_kinds_do_not_block_each_other(project, sleeping_jobs):
    """A training run and an evaluation may run side by side, as the pages always allowed."""
    _finetune_run(project, "train-1").start()
    _eval_run(project, "eval-1").start()
    _sweep(project, "sweep-1").start()
    assert len(sleeping_jobs) == 3


def test_the_project_is_free_again_once_the_job_ends(project, sleeping_jobs):
    first, second = _eval_run(project, "eval-1"), _eval_run(project, "eval-2")
    job = first.start()
    supervisor = psutil.Process(atomic.read_json(job.folder / "job.json")["pid"])
    deadline = time.monotonic() + 20
    while not supervisor.children() and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(RunBusyError):
        second.start()
    for child in supervisor.children():
        child.kill()  # the work ends; its supervisor records the exit code
    while not (job.folder / "exit").exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    second.start()
    assert RunLock(project.path, "eval").holder()["run"] == "eval-2"


def test_a_killed_supervisor_not_yet_reaped_holds_nothing(project):
    """A job's supervisor killed outright (kill -9) leaves no exit code and, until the server polls it, a zombie
    with its pid."""
    process = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
    try:
        lock = RunLock(project.path, "finetune")
        lock.acquire("run-1", pid=process.pid)
        assert lock.holder()["run"] == "run-1"
        process.kill()
        deadline = time.monotonic() + 20
        while psutil.Process(process.pid).status() != psutil.STATUS_ZOMBIE and time.monotonic() < deadline:
            time.sleep(0.05)
        assert lock.holder() is None
        lock.acquire("run-2")
    finally:
        process.kill()
        process.wait()


def test_a_job_that_fails_to_start_leaves_the_project_free(project, monkeypatch):
    def broken(*args, **kwargs):
        raise OSError("no python")

    monkeypatch.setattr(Job, "start", broken)
    with pytest.raises(OSError):
        _eval_run(project, "eval-1").start()
    assert RunLock(project.path, "eval").holder() is None


def _dead_pid() -> int:
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    return process.pid


@pytest.mark.parametrize("stale", ["dead process", "pid reused", "job ended", "damaged file"])
def test_a_stale_lock_is_taken_over(project, tmp_path, stale):
    lock = RunLock(project.path, "finetune")
    lock.path.parent.mkdir(parents=True, exist_ok=True)
    holder = {"kind": "finetune", "run": "old", "pid": os.getpid(), "pid_started": None, "job": None}
    if stale == "dead process":
        holder["pid"] = _dead_pid()
    elif stale == "pid reused":
        holder["pid_started"] = 1.0  # this pid belonged to a process started long before the current one
    elif stale == "job ended":
        (tmp_path / "job").mkdir()
        (tmp_path / "job" / "exit").write_text("0")
        holder["job"] = str(tmp_path / "job")
    lock.path.write_text("{not json" if stale == "damaged file" else json.dumps(holder), encoding="utf-8")
    assert lock.holder() is None
    lock.acquire("new")
    assert lock.holder()["run"] == "new" and lock.holder()["pid"] == os.getpid()


def test_a_live_holder_is_respected_even_for_the_same_run(project):
    lock = RunLock(project.path, "finetune")
    lock.acquire("run-1")
    with pytest.raises(RunBusyError) as raised:
        RunLock(project.path, "finetune").acquire("run-1")  # two processes must never train one run
    assert raised.value.holder["run"] == "run-1"
    lock.release("run-1")
    assert not lock.path.exists()


def test_holding_releases_the_project_when_the_work_ends_or_fails(project):
    with pytest.raises(ValueError):
        with runlock.holding(project.path, "sweep", "sweep-1"):
            assert RunLock(project.path, "sweep").holder()["run"] == "sweep-1"
            raise ValueError("the sweep failed")
    assert RunLock(project.path, "sweep").holder() is None


def test_the_command_line_is_refused_while_a_page_run_holds_the_project(project, sleeping_jobs):
    from core.data.records import new_record
    from core.data.store import DatasetStore
    from core.evaluate.runs import list_eval_runs
    from core.recipe import Recipe, RecipeStore

    RecipeStore(project).save(Recipe())
    DatasetStore(project).create("faq", "eval", [new_record("eval", question="Do you ship?", reference="Yes.")])
    _eval_run(project, "20250101-000000-page").start()
    result = CliRunner().invoke(cli.app, ["eval", project.name, "--dataset", "faq"])
    assert result.exit_code == 1, result.output
    assert "20250101-000000-page is running now" in result.output and "Traceback" not in result.output
    assert [r.id for r in list_eval_runs(project)] == ["20250101-000000-page"]  # no stray run was made

"""Jobs: a subprocess printing JSON progress events, with status, failure reporting and cancellation."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from core import jobs
from core.jobs import Job

PROGRESS_SCRIPT = """
import json, sys, time
for i, step in enumerate(["Reading", "Converting", "Writing"], start=1):
    print(json.dumps({"progress": i / 4, "message": step}), flush=True)
    time.sleep(0.05)
print("not json, ignored", flush=True)
print(json.dumps({"message": "Finishing"}), flush=True)
"""

FAILING_WITH_EVENT = """
import json, sys
print(json.dumps({"progress": 0.3, "message": "Converting"}), flush=True)
print(json.dumps({"error": "This GGUF file cannot be loaded (bad magic)."}), flush=True)
sys.exit(1)
"""

CRASHING = """
import json
print(json.dumps({"progress": 0.5, "message": "Halfway"}), flush=True)
raise ZeroDivisionError("division by zero in the converter")
"""

SLEEPING = """
import json, os, subprocess, sys, time
child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"])
print(json.dumps({"progress": 0.1, "message": "Sleeping", "child": child.pid}), flush=True)
time.sleep(120)
"""

IGNORES_SIGTERM = """
import json, signal, time
signal.signal(signal.SIGTERM, signal.SIG_IGN)
print(json.dumps({"progress": 0.2, "message": "Stubborn"}), flush=True)
time.sleep(120)
"""


def _wait_dead(pid: int, timeout: float = 15.0) -> None:
    deadline = time.time() + timeout
    while _alive(pid) and time.time() < deadline:
        time.sleep(0.05)
    assert not _alive(pid)


def _wait(job: Job, predicate, timeout: float = 30.0):
    deadline = time.time() + timeout
    while time.time() < deadline:
        status = job.status()
        if predicate(status):
            return status
        time.sleep(0.05)
    raise AssertionError(f"timed out; last status {job.status()}")


def _alive(pid: int) -> bool:
    """True while the process exists and is not a zombie waiting to be reaped."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError, IndexError):
        return False
    return state not in ("Z", "X")


@pytest.fixture
def jobs_dir(tmp_path):
    return tmp_path / "jobs"


def test_successful_job(jobs_dir):
    job = Job.start(jobs_dir, ["-c", PROGRESS_SCRIPT], label="Convert model")
    assert job.folder.parent == jobs_dir and job.id == job.folder.name
    meta = json.loads((job.folder / "job.json").read_text())
    assert meta["label"] == "Convert model" and meta["argv"] == ["-c", PROGRESS_SCRIPT] and meta["pid"] > 0
    first = job.status()
    assert first.state in ("running", "done")
    seen = {first.state}
    status = _wait(job, lambda s: seen.add(s.state) or s.state != "running")
    assert "running" in seen
    assert status.state == "done"
    assert status.progress == 1.0
    assert status.message == "Finishing"
    assert status.error == ""
    events = job.events()
    assert [e.get("message") for e in events] == ["Reading", "Converting", "Writing", "Finishing"]
    assert [e["progress"] for e in events if "progress" in e] == [0.25, 0.5, 0.75]
    assert not _alive(meta["pid"])  # finished jobs are reaped


def test_progress_is_reported_while_running(jobs_dir):
    script = ("import json, time\n"
              "print(json.dumps({'progress': 0.4, 'message': 'Working'}), flush=True)\n"
              "time.sleep(0.5)\n")
    job = Job.start(jobs_dir, ["-c", script], label="x")
    status = _wait(job, lambda s: s.progress > 0 or s.state != "running")
    assert status.state == "running"
    assert (status.progress, status.message) == (0.4, "Working")
    assert _wait(job, lambda s: s.state != "running").state == "done"


def test_status_before_any_event(jobs_dir):
    job = Job.start(jobs_dir, ["-c", "import time; time.sleep(0.3)"], label="x")
    status = job.status()
    assert (status.state, status.progress, status.message) == ("running", 0.0, "Starting")
    _wait(job, lambda s: s.state != "running")


def test_failing_job_reports_its_error_event(jobs_dir):
    job = Job.start(jobs_dir, ["-c", FAILING_WITH_EVENT], label="x")
    status = _wait(job, lambda s: s.state != "running")
    assert status.state == "failed"
    assert status.error == "This GGUF file cannot be loaded (bad magic)."
    assert status.progress == 0.3
    assert status.message == "Converting"


def test_crashing_job_reports_the_last_stderr_line(jobs_dir):
    job = Job.start(jobs_dir, ["-c", CRASHING], label="x")
    status = _wait(job, lambda s: s.state != "running")
    assert status.state == "failed"
    assert "ZeroDivisionError: division by zero in the converter" in status.error
    assert "stderr.log" in status.error
    assert "Traceback" in (job.folder / "stderr.log").read_text()
    assert status.progress == 0.5


def test_a_crash_after_a_progress_bar_names_the_error_not_the_bar(jobs_dir):
    """A drafting job that died after loading its model showed "(Loading weights: 100%|████| 103/103 …)"."""
    script = ("import sys; sys.stderr.write('MemoryError: cannot allocate\\n'); "
              "sys.stderr.write('Loading weights: 100%|##########| 103/103 [00:00<00:00, 7219.35it/s]\\r\\n'); "
              "sys.exit(3)")
    job = Job.start(jobs_dir, ["-c", script], label="x")
    status = _wait(job, lambda s: s.state != "running")
    assert status.state == "failed"
    assert "MemoryError: cannot allocate" in status.error and "Loading weights" not in status.error


def test_job_runs_from_the_repository_root(jobs_dir):
    script = "import json, os; print(json.dumps({'message': os.getcwd()}), flush=True)"
    job = Job.start(jobs_dir, ["-c", script], label="x")
    status = _wait(job, lambda s: s.state != "running")
    assert Path(status.message) == Path(jobs.__file__).resolve().parent.parent


def test_cancel_sleeping_job_kills_it_and_its_children(jobs_dir):
    job = Job.start(jobs_dir, ["-c", SLEEPING], label="x")
    _wait(job, lambda s: s.progress > 0)
    pid = json.loads((job.folder / "job.json").read_text())["pid"]
    child = next(e["child"] for e in job.events() if "child" in e)
    assert _alive(pid) and _alive(child)
    started = time.time()
    job.cancel()
    assert time.time() - started < 1  # the page that pressed Cancel never waits for the job
    status = _wait(job, lambda s: s.state != "running")
    assert status.state == "cancelled"
    assert status.message == "Cancelled"
    assert status.progress == 0.1
    deadline = time.time() + 10
    while (_alive(pid) or _alive(child)) and time.time() < deadline:  # the whole process group got SIGTERM
        time.sleep(0.05)
    assert not _alive(pid) and not _alive(child)


def test_cancel_escalates_when_sigterm_is_ignored(jobs_dir, monkeypatch):
    job = Job.start(jobs_dir, ["-c", IGNORES_SIGTERM], label="x")
    _wait(job, lambda s: s.progress > 0)
    pid = json.loads((job.folder / "job.json").read_text())["pid"]
    process = jobs._processes[job.id]
    real_wait = process.wait

    def short_wait(timeout=None):  # do not spend the real 10 s grace period in a unit test
        return real_wait(timeout=0.5 if timeout else None)

    monkeypatch.setattr(process, "wait", short_wait)
    started = time.time()
    job.cancel()
    assert time.time() - started < 1  # the kill after the grace period happens in the background
    assert (job.status().state, job.status().message) == ("running", "Stopping…")  # nothing may start over it yet
    _wait_dead(pid)
    assert _wait(job, lambda s: s.state != "running").state == "cancelled"


def test_a_job_whose_process_was_killed_shows_as_stopped_not_as_a_crash(tmp_path):
    """kill -9 of a command-line run: no exit code, no stderr.log; the pages must show it as stopped."""
    import subprocess
    import sys

    folder = tmp_path / "jobs" / "20260101-000000-abcdef"
    folder.mkdir(parents=True)
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    (folder / "job.json").write_text(json.dumps({"pid": gone.pid, "argv": [], "label": "x", "attached": True}))
    (folder / "events.jsonl").write_text(json.dumps({"progress": 0.4, "message": "step 40"}) + "\n")
    status = Job(folder).status()
    assert status.state == "cancelled"
    assert status.progress == 0.4
    assert "continue" in str(status.message)
    assert status.error == ""


def test_cancel_after_finish_is_harmless(jobs_dir):
    job = Job.start(jobs_dir, ["-c", "print('{}')"], label="x")
    _wait(job, lambda s: s.state != "running")
    job.cancel()
    assert job.status().state == "done"  # a finished job stays finished; its old pid is never signalled
    assert not (job.folder / "cancelled").exists()


def test_status_from_another_process_while_running(jobs_dir):
    job = Job.start(jobs_dir, ["-c", SLEEPING], label="x")
    _wait(job, lambda s: s.progress > 0)
    process = jobs._processes.pop(job.id)  # as after a server restart: no Popen handle, only the folder
    try:
        status = Job(job.folder).status()
        assert (status.state, status.message) == ("running", "Sleeping")
    finally:
        jobs._processes[job.id] = process
        job.cancel()
    _wait_dead(process.pid)


def test_status_from_another_process_after_success(jobs_dir):
    job = Job.start(jobs_dir, ["-c", "print('{\"message\": \"ok\"}')"], label="x")
    _wait(job, lambda s: s.state != "running")
    jobs._processes.pop(job.id)
    assert Job(job.folder).status().state == "done"


def test_half_written_event_lines_are_skipped(tmp_path):
    folder = tmp_path / "job"
    folder.mkdir()
    (folder / "events.jsonl").write_text('{"progress": 0.2, "message": "a"}\n{"progress": 0.9, "mess')
    assert Job(folder).events() == [{"progress": 0.2, "message": "a"}]
    assert Job(tmp_path / "nothing").events() == []


def test_two_jobs_get_separate_folders(jobs_dir):
    first = Job.start(jobs_dir, ["-c", "pass"], label="a")
    second = Job.start(jobs_dir, ["-c", "pass"], label="b")
    assert first.folder != second.folder
    for job in (first, second):
        assert _wait(job, lambda s: s.state != "running").state == "done"
    assert os.path.isdir(first.folder) and os.path.isdir(second.folder)


def test_an_attached_command_line_job_is_watched_and_cancelled(tmp_path):
    """The `studio` command line records its own work as a job: the page sees progress and Cancel stops it."""
    import subprocess
    import sys
    import time
    from pathlib import Path

    from core.jobs import Job

    script = (
        "import signal, sys, time\n"
        "from pathlib import Path\n"
        "from core.jobs import Job\n"
        "job = Job.attach(Path(sys.argv[1]), 'cli work')\n"
        "stop = []\n"
        "signal.signal(signal.SIGTERM, lambda *_: stop.append(1))\n"
        "step = 0\n"
        "while not stop:\n"
        "    step += 1\n"
        "    job.record(progress=min(step / 1000, 0.9), message=f'step {step}')\n"
        "    time.sleep(0.05)\n"
        "job.record(message='stopped cleanly')\n"
        "job.finish(0)\n")
    jobs_dir = tmp_path / "jobs"
    process = subprocess.Popen([sys.executable, "-c", script, str(jobs_dir)], cwd=Path(__file__).parents[1])
    deadline = time.time() + 30
    while time.time() < deadline and not any(jobs_dir.glob("*/events.jsonl")):
        time.sleep(0.1)
    [folder] = list(jobs_dir.iterdir())
    job = Job(folder)
    assert job.status().state == "running"
    job.cancel()
    process.wait(timeout=30)
    assert job.status().state == "cancelled"
    assert job.events()[-1]["message"] == "stopped cleanly"


def test_a_second_ctrl_c_stops_a_command_line_job_at_once(tmp_path):
    """The first signal asks the work to stop cleanly; work that does not look (a long step) ends on the second."""
    import signal

    from core.cli import common

    asked = []

    def stubborn(emit, should_stop):
        emit(progress=0.1, message="working")
        os.kill(os.getpid(), signal.SIGINT)
        asked.append(should_stop())
        os.kill(os.getpid(), signal.SIGTERM)
        raise AssertionError("the second signal did not stop the work")

    previous = signal.getsignal(signal.SIGINT)
    with pytest.raises(KeyboardInterrupt):
        common.attached(tmp_path / "jobs", "cli work", lambda **e: None, stubborn)
    assert asked == [True]
    assert signal.getsignal(signal.SIGINT) is previous  # handlers are put back
    [folder] = list((tmp_path / "jobs").iterdir())
    assert Job(folder).status().state == "cancelled"

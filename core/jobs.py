"""Long work runs in a subprocess that prints JSON events; the UI reads them from a file and can cancel.

A crash or out-of-memory in the job cannot take the Streamlit server down, and the events file survives
a browser refresh. Later features (ingestion, training, evaluation) reuse this runner.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from core import atomic
from core.i18n import Msg

_processes: dict[str, subprocess.Popen] = {}  # reaped by poll() so finished jobs leave no zombies

PROGRESS_BAR = re.compile(r"\d+%\|")  # a tqdm progress bar's line in stderr


def event_message(event: dict, key: str):
    """The message an event carries under `key`, rebuilt as a Msg when its template travelled with it."""
    if key not in event:
        return None
    template = event.get(f"{key}_template")
    return Msg(template, **event.get(f"{key}_params", {})) if template else event[key]


@dataclass(frozen=True)
class JobStatus:
    state: str  # running | done | failed | cancelled
    progress: float
    message: str
    error: str = ""


class Job:
    def __init__(self, folder: Path):
        self.folder = Path(folder)

    @property
    def id(self) -> str:
        return self.folder.name

    @classmethod
    def start(cls, jobs_dir: Path, argv: list[str], label: str) -> "Job":
        folder = Path(jobs_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        with open(folder / "events.jsonl", "wb") as out, open(folder / "stderr.log", "wb") as err:
            # The job runs under a small supervisor (this module's __main__) that records the exit code, so any
            # process (a restarted server, another tab) can tell a finished job from a killed one.
            process = subprocess.Popen(
                [sys.executable, "-m", "core.jobs", str(folder), *argv], stdout=out, stderr=err,
                start_new_session=True,
                cwd=Path(__file__).resolve().parent.parent,
            )
        _processes[folder.name] = process
        atomic.write_json(folder / "job.json", {"pid": process.pid, "argv": argv, "label": label,
                                                "started": time.time()})
        return cls(folder)

    @classmethod
    def attach(cls, jobs_dir: Path, label: str) -> "Job":
        """A job record for work running in this very process (the `studio` command line), so the pages show
        its progress like a job they started, and Cancel reaches it (SIGTERM)."""
        folder = Path(jobs_dir) / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:6]}"
        folder.mkdir(parents=True)
        atomic.write_json(folder / "job.json", {"pid": os.getpid(), "argv": sys.argv[1:], "label": label,
                                                "started": time.time(), "attached": True})
        return cls(folder)

    def record(self, **fields) -> None:
        """Append an event (an attached job writes its own events file)."""
        with open(self.folder / "events.jsonl", "a", encoding="utf-8") as handle:
            handle.write(event_line(**fields) + "\n")

    def finish(self, code: int) -> None:
        atomic.write_text(self.folder / "exit", str(code))

    def events(self) -> list[dict]:
        path = self.folder / "events.jsonl"
        if not path.exists():
            return []
        events = []
        for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
            try:
                events.append(json.loads(line))
            except ValueError:
                continue  # a half-written last line is read on the next poll
        return events

    def _returncode(self) -> int | None:
        process = _processes.get(self.id)
        if process is not None and process.poll() is None:
            return None
        exit_file = self.folder / "exit"
        if exit_file.exists():
            return int(exit_file.read_text().strip() or -1)
        if process is not None:
            return process.returncode
        try:
            os.kill(atomic.read_json(self.folder / "job.json")["pid"], 0)
            return None
        except ProcessLookupError:
            return -1  # the supervisor itself was killed

    def status(self) -> JobStatus:
        events = self.events()
        progress = max((e["progress"] for e in events if "progress" in e), default=0.0)
        message = next((event_message(e, "message") for e in reversed(events) if "message" in e), Msg("Starting"))
        error = next((event_message(e, "error") for e in reversed(events) if e.get("error")), "")
        code = self._returncode()
        cancelled = (self.folder / "cancelled").exists()
        if code is None:  # a cancelled job stays "running" until it has saved its work and ended
            return JobStatus("running", progress, Msg("Stopping…") if cancelled else message)
        if cancelled:
            return JobStatus("cancelled", progress, Msg("Cancelled"))
        if code == 0:
            return JobStatus("done", 1.0, message)
        if not error and not (self.folder / "exit").exists():
            # Its process is gone without an exit code (kill -9, a closed terminal): what it saved is kept.
            return JobStatus("cancelled", progress, Msg("Stopped before it finished (its process ended); "
                                                        "continue to resume from what was saved."))
        if not error:
            log = self.folder / "stderr.log"
            # A progress bar's line ("Loading weights: 100%|███|") says nothing about why it stopped.
            lines = [line for line in (log.read_text(errors="replace").splitlines() if log.exists() else [])
                     if line.strip() and not PROGRESS_BAR.search(line)]
            error = Msg("The job stopped unexpectedly ({reason}); see {log}.", reason=(lines[-1:] or ["unknown"])[0][:200],
                        log=str(log))
        return JobStatus("failed", progress, message, error)

    def cancel(self, grace: float = 10.0) -> None:
        """Ask the job to stop and return at once; a job still running after `grace` seconds is killed."""
        if self._returncode() is not None:
            return  # finished already: its pid may belong to another process by now
        (self.folder / "cancelled").write_text(str(time.time()))
        self.signal_stop(kill_after=grace)

    def signal_stop(self, kill_after: float | None = 10.0) -> None:
        """SIGTERM, the job's stop request (it saves what it can first). A job this process started is killed
        after `kill_after` seconds by a background thread, so the caller (a page) never waits."""
        record = atomic.read_json(self.folder / "job.json")
        pid = record["pid"]
        try:
            if record.get("attached"):  # a command-line process: signal it alone, not its shell's group
                os.kill(pid, signal.SIGTERM)
                return
            os.killpg(pid, signal.SIGTERM)
        except (ProcessLookupError, PermissionError):
            return
        process = _processes.get(self.id)
        if process is not None and kill_after is not None:
            threading.Thread(target=_kill_after, args=(process, kill_after), daemon=True,
                             name=f"kill-{self.id}").start()


def _kill_after(process: subprocess.Popen, grace: float) -> None:
    try:
        process.wait(timeout=grace)  # also reaps it, so the process group id cannot be reused before the kill
    except subprocess.TimeoutExpired:
        try:
            os.killpg(process.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        process.wait()


def event_line(**fields) -> str:
    """One event as a JSON line. Msg values keep their template so the page translates them."""
    fields = {k: v for k, v in fields.items() if v is not None}
    for key in ("message", "problem", "error"):
        value = fields.get(key)
        if value is not None and hasattr(value, "template"):
            fields[f"{key}_template"], fields[f"{key}_params"] = value.template, value.params
            fields[key] = str(value)
    return json.dumps(fields, ensure_ascii=False, default=str)


def print_event(**fields) -> None:
    """One JSON event on stdout (the job's events file)."""
    print(event_line(**fields), flush=True)


def run_job(work, failure, log_label: str, stoppable: bool = True) -> int:
    """The body of a job's `main`: `work(should_stop)`, where SIGTERM is a stop request when `stoppable` (else it
    ends the process); the dict it returns is the job's last event. A user's mistake ends with its sentence;
    anything else with `failure(reason)` (a Msg) and the traceback in the job's stderr.log."""
    import logging

    from core.errors import StudioError

    stop = {"requested": False}
    if stoppable:
        signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    try:
        result = work(lambda: stop["requested"])
    except StudioError as exc:
        print_event(error=exc.args[0])
        return 1
    except Exception as exc:
        logging.exception("%s failed", log_label)
        print_event(error=failure((str(exc).splitlines() or [type(exc).__name__])[0][:200]))
        return 1
    if result:
        print_event(**result)
    return 0


def run_resumable(argv: list[str], execute, failure, log_label: str) -> int:
    """The `main` of a resumable job: `execute(project, run_id, emit, should_stop)` (see run_job)."""
    from core.workspace import Project

    folder, run_id = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()
    def work(should_stop) -> None:  # the run's own events are its record; no closing event
        execute(project, run_id, print_event, should_stop=should_stop)

    return run_job(work, failure, log_label)


def _supervise(folder: Path, argv: list[str]) -> int:
    # Cancel signals the whole process group; the supervisor outlives the job so the exit code is recorded after
    # the job has saved what it can. A handler, not SIG_IGN, which the job would inherit.
    signal.signal(signal.SIGTERM, lambda *_: None)
    code = subprocess.call([sys.executable, *argv])
    atomic.write_text(folder / "exit", str(code))
    return code


if __name__ == "__main__":
    sys.exit(_supervise(Path(sys.argv[1]), sys.argv[2:]))

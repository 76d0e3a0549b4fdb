"""One background run of each kind at a time per project, enforced on disk for every process (pages, CLI, jobs).

runs/<kind>.lock   {"kind", "run", "pid", "pid_started", "job", "since"}: the run that holds the project

The kinds are those the pages already allow one at a time: a training run ("finetune"), an evaluation ("eval") and
a retrieval sweep ("sweep"); a training run and an evaluation may still run side by side, as before. The lock file
is created with O_EXCL while a guard (a file lock) keeps two starters from both taking over a stale lock. A lock
is stale, and taken over, when its process is gone (or its pid now belongs to a process started later), or when
the background job it names has recorded its exit code. Nothing has to remove it when a job ends or is killed.

Not runs: the Fine-tune page's "Measure the time" job (core.finetune.runs.calibrate) times a few updates in about a
minute, saves nothing and keeps no run id; it takes no lock, so it can time a config while a run trains (the page
never blocked it), and a timing never keeps Start training disabled. Indexing and model conversion are not runs
either.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from pathlib import Path
from typing import Callable, Iterator

from filelock import FileLock

from core import atomic
from core.errors import StudioError
from core.i18n import Msg

KINDS = {"finetune": Msg("training run"), "eval": Msg("evaluation"), "sweep": Msg("retrieval sweep")}


class RunBusyError(StudioError):
    """Another run of the same kind holds the project."""

    def __init__(self, message, holder: dict):
        super().__init__(message)
        self.holder = holder


def _started(pid: int) -> float | None:
    """When process `pid` started (to tell it from a later process that got the same pid), None when unknown."""
    try:
        import psutil

        return psutil.Process(pid).create_time()
    except Exception:
        return None


def _zombie(pid: int) -> bool:
    """An ended child its parent has not reaped yet (a job's supervisor the server has not polled) still has its
    pid; it holds nothing."""
    try:
        import psutil

        return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    except Exception:
        return False


def _alive(holder: dict) -> bool:
    job = holder.get("job")
    if job and (Path(job) / "exit").exists():
        return False  # its background job ended (the supervisor wrote the exit code)
    pid = holder.get("pid")
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # alive, but another user's
    except OSError:
        return False
    if _zombie(pid):
        return False
    recorded, actual = holder.get("pid_started"), _started(pid)
    return recorded is None or actual is None or abs(recorded - actual) < 1.0


class RunLock:
    def __init__(self, project_dir: Path, kind: str):
        if kind not in KINDS:
            raise ValueError(f"unknown run kind {kind!r}")
        self.kind = kind
        self.path = Path(project_dir) / "runs" / f"{kind}.lock"
        self._guard = FileLock(str(self.path) + ".guard")

    def _read(self) -> dict | None:
        try:
            holder = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except (OSError, ValueError):
            return {}  # unreadable (a crash while it was written): stale
        return holder if isinstance(holder, dict) else {}

    def holder(self) -> dict | None:
        """The lock's content while its run is alive, else None."""
        holder = self._read()
        return holder if holder and _alive(holder) else None

    def check_free(self) -> None:
        """RunBusyError when a run holds the project: a command line asks before it creates a run it could not
        start (acquire is what decides)."""
        holder = self.holder()
        if holder is not None:
            raise self._busy(holder)

    def _busy(self, holder: dict) -> "RunBusyError":
        return RunBusyError(Msg("One {kind} runs at a time in a project and {run} is running now; wait for it to "
                                "finish or cancel it, then start again.", kind=KINDS[self.kind],
                                run=holder.get("run", "?")), holder)

    def acquire(self, run_id: str, pid: int | None = None, job: Path | None = None) -> None:
        """Hold the project for `run_id` (process `pid`, this one by default); RunBusyError naming the run that
        holds it (the same run too: two processes must never work on one run)."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._guard:
            holder = self._read()
            if holder is not None:
                if holder and _alive(holder):
                    raise self._busy(holder)
                self.path.unlink(missing_ok=True)  # stale: taken over
            self._write(run_id, pid, job, exclusive=True)

    def update(self, run_id: str, pid: int, job: Path | None) -> None:
        """The process that now carries the run (a job's supervisor, once it started)."""
        with self._guard:
            holder = self._read()
            if holder and holder.get("run") == run_id:
                self._write(run_id, pid, job, exclusive=False)

    def release(self, run_id: str) -> None:
        with self._guard:
            holder = self._read()
            if holder is not None and holder.get("run") in (run_id, None):
                self.path.unlink(missing_ok=True)

    def _write(self, run_id: str, pid: int | None, job: Path | None, exclusive: bool) -> None:
        pid = os.getpid() if pid is None else pid
        data = json.dumps({"kind": self.kind, "run": run_id, "pid": pid, "pid_started": _started(pid),
                           "job": str(job) if job else None, "since": time.time()}).encode("utf-8")
        (atomic.write_bytes_new if exclusive else atomic.write_bytes)(self.path, data)


def start_job(project_dir: Path, kind: str, run_id: str, start: Callable[[], "object"]):
    """`start()` (Job.start of the run's background job) while holding the project's lock for `kind`: refused with
    RunBusyError when another run holds it; the job's supervisor then holds it until the job ends."""
    lock = RunLock(project_dir, kind)
    lock.acquire(run_id)
    try:
        job = start()
        pid = json.loads((Path(job.folder) / "job.json").read_text(encoding="utf-8"))["pid"]
    except BaseException:
        lock.release(run_id)
        raise
    lock.update(run_id, pid, Path(job.folder))
    return job


@contextlib.contextmanager
def holding(project_dir: Path, kind: str, run_id: str) -> Iterator[None]:
    """Hold the project's lock for `kind` while run `run_id` works in this process (the command line)."""
    lock = RunLock(project_dir, kind)
    lock.acquire(run_id)
    try:
        yield
    finally:
        lock.release(run_id)

"""Helpers shared by the command groups: one-sentence errors, project lookup, option parsing, attached jobs and
server children."""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path
from typing import Callable, Iterable, Optional

import typer

from core.errors import StudioError

APP_PATH = Path(__file__).resolve().parents[2] / "studio" / "app.py"
STOP_GRACE_S = 10  # a server child gets this long to stop after Ctrl-C or SIGTERM, then it is killed


def _say_and_exit(message: str, code: int) -> None:
    typer.secho(message, fg=typer.colors.RED, err=True)
    raise typer.Exit(code=code)


def fail(message: str) -> None:
    """Something the user can fix that is not the command's wording (a missing project or dataset): exit 1."""
    _say_and_exit(message, 1)


def usage(message: str) -> None:
    """A mistake in the command's own words (an option's value, a config file): one sentence, exit 2 like Typer."""
    _say_and_exit(message, 2)


def one_of(option: str, value: Optional[str], allowed: Iterable[str]) -> None:
    allowed = list(allowed)
    if value is not None and value not in allowed:
        usage(f"{option} must be one of {', '.join(allowed)}, not '{value}'.")


def csv_list(option: str, value: Optional[str], convert: Callable = str, allowed: Iterable[str] | None = None) -> list:
    """`a,b,c` as a list; a part that is not a whole number (convert=int) or not allowed is a usage error."""
    parts = [part.strip() for part in (value or "").split(",") if part.strip()]
    if convert is int:
        bad = [p for p in parts if not p.lstrip("-").isdigit()]
        if bad:
            usage(f"{option} takes whole numbers separated by commas (for example 3,5), not '{bad[0]}'.")
    if allowed is not None:
        for part in parts:
            one_of(option, part, allowed)
    return [convert(part) for part in parts]


def open_project(name: str):
    from core.workspace import Workspace

    try:
        return Workspace().get(name)
    except StudioError as exc:
        fail(str(exc))


def progress(fraction: float, message) -> None:
    typer.echo(f"[{fraction:4.0%}] {message}", err=True)


def attached(jobs_dir: Path, label: str, show, work):
    """Run `work(emit, should_stop)` in this process as a job the pages can watch and cancel. The first SIGTERM or
    Ctrl-C asks the work to stop cleanly (it saves what it has); a second one stops it at once."""
    from core.jobs import Job

    job = Job.attach(jobs_dir, label)
    stop = {"requested": False}

    def request_stop(*_) -> None:
        if stop["requested"]:
            (job.folder / "cancelled").write_text(str(time.time()))
            raise KeyboardInterrupt
        stop["requested"] = True
        typer.echo("Stopping after the current step (saving what is done); press Ctrl-C again to stop at once.",
                   err=True)

    previous = {number: signal.signal(number, request_stop) for number in (signal.SIGINT, signal.SIGTERM)}

    def emit(**event) -> None:
        show(**event)
        job.record(**event)

    try:
        result = work(emit, lambda: stop["requested"])
    except StudioError as exc:
        job.record(error=exc.args[0])
        job.finish(1)
        raise
    except BaseException:
        job.finish(1)
        raise
    finally:
        for number, handler in previous.items():
            signal.signal(number, handler)
    job.finish(0)
    return result


def run_child(command: list[str], env: dict | None = None) -> int:
    """Run a server child until it ends. Ctrl-C or SIGTERM on this command is passed on to the child, which gets
    STOP_GRACE_S to stop before it is killed, so stopping the command never leaves the server running."""
    child = subprocess.Popen(command, env=env)
    stop: dict = {}

    def forward(signum, _frame) -> None:
        stop.setdefault("deadline", time.monotonic() + STOP_GRACE_S)
        if child.poll() is None:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        while True:
            try:
                code = child.wait(timeout=0.5)  # a short wait, so a deadline set by a signal is noticed
                break
            except subprocess.TimeoutExpired:
                if "deadline" in stop and time.monotonic() > stop["deadline"]:
                    child.kill()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        if child.poll() is None:  # an error in this process: do not leave the server behind
            child.kill()
            child.wait()
    return 128 - code if code < 0 else code  # killed by a signal: the shell's convention (143 for SIGTERM)

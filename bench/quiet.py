"""CPU timings mean something only on a quiet machine: measure how many CPUs other processes use during a run
(Linux /proc/stat) and wait, within a budget, until they leave the CPUs idle."""

from __future__ import annotations

import os
import time
from pathlib import Path

BUSY_NEIGHBOUR_CORES = 0.25  # other processes above this many CPUs during a run: the run is flagged
HAS_PROC = Path("/proc/stat").is_file()


def _busy_s() -> float:
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    return (sum(fields) - fields[3] - fields[4]) / os.sysconf("SC_CLK_TCK")


def snapshot() -> tuple[float, float, float]:
    return time.perf_counter(), time.process_time(), (_busy_s() if HAS_PROC else 0.0)


def foreign_cores(since: tuple[float, float, float]) -> float:
    """CPUs that other processes kept busy since `since` = (wall, own cpu, machine busy)."""
    wall = time.perf_counter() - since[0]
    if not HAS_PROC or wall <= 0:
        return float("nan")
    return max(0.0, (_busy_s() - since[2]) - (time.process_time() - since[1])) / wall


class Quiet:
    """Before a timed run, wait (at most `budget_s` in all) until other processes leave the CPUs idle: with as
    many torch threads as cores, one busy neighbour slows every parallel region."""

    def __init__(self, budget_s: float, per_call_s: float = 6.0):
        self.budget_s, self.per_call_s, self.waited_s = budget_s, per_call_s, 0.0

    def wait(self, per_call_s: float | None = None) -> None:
        start = time.perf_counter()
        deadline = start + min(per_call_s or self.per_call_s, self.budget_s - self.waited_s)
        while HAS_PROC and time.perf_counter() < deadline:
            since = snapshot()
            time.sleep(0.25)
            if foreign_cores(since) < BUSY_NEIGHBOUR_CORES / 2:
                break
        self.waited_s += time.perf_counter() - start


def measure(fn):
    """(seconds, result, CPUs that other processes used meanwhile)."""
    since = snapshot()
    result = fn()
    return time.perf_counter() - since[0], result, round(foreign_cores(since), 2)

"""A retrieval sweep as a job: `python -m core.evaluate.sweep_job PROJECT_DIR SWEEP_ID` prints one JSON event per
step (progress, one `type: config` event per scored setting); SIGTERM stops after the current setting or embedding
batch, keeping every finished setting (start again to finish)."""

from __future__ import annotations

import sys

from core.i18n import Msg
from core.jobs import run_resumable


def failure(reason: str) -> Msg:
    return Msg("The sweep stopped with an error ({reason}); the settings scored so far are kept and starting again "
               "continues.", reason=reason)


def main(argv: list[str]) -> int:
    from core.evaluate.sweep_exec import execute

    return run_resumable(argv, execute, failure, "retrieval sweep")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

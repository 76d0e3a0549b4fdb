"""Evaluation as a job: `python -m core.evaluate.job PROJECT_DIR RUN_ID` prints one JSON event per answer
(progress); SIGTERM stops after the current answers, keeping every answer so far (start again to finish)."""

from __future__ import annotations

import sys

from core.i18n import Msg
from core.jobs import run_resumable


def failure(reason: str) -> Msg:
    return Msg("The evaluation stopped with an error ({reason}); the answers so far are kept and starting again "
               "continues.", reason=reason)


def main(argv: list[str]) -> int:
    from core.evaluate.runs import execute

    return run_resumable(argv, execute, failure, "evaluation")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

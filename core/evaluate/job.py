"""Evaluation as a job: `python -m core.evaluate.job PROJECT_DIR RUN_ID` prints one JSON event per answer
(progress); SIGTERM stops after the current answer, keeping every answer so far (start again to finish)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from core.errors import StudioError
from core.i18n import Msg
from core.jobs import print_event


def main(argv: list[str]) -> int:
    from core.evaluate import runs
    from core.workspace import Project

    folder, run_id = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    try:
        runs.execute(project, run_id, print_event, should_stop=lambda: stop["requested"])
    except StudioError as exc:
        print_event(error=exc.args[0])
        return 1
    except Exception as exc:  # the traceback goes to stderr.log, the sentence to the page
        logging.exception("evaluation failed")
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        print_event(error=Msg("The evaluation stopped with an error ({reason}); the answers so far are kept and "
                              "starting again continues.", reason=reason))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

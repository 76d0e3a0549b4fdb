"""A retrieval sweep as a job: `python -m core.rag.sweep_job PROJECT_DIR SWEEP_ID` prints one JSON event per step
(progress, one `type: config` event per scored setting); SIGTERM stops after the current setting or embedding
batch, keeping every finished setting (start again to finish)."""

from __future__ import annotations

import logging
import signal
import sys
from pathlib import Path

from core.errors import StudioError
from core.i18n import Msg
from core.jobs import print_event


def main(argv: list[str]) -> int:
    from core.rag.sweep_exec import execute
    from core.workspace import Project

    folder, sweep_id = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    try:
        execute(project, sweep_id, print_event, should_stop=lambda: stop["requested"])
    except StudioError as exc:
        print_event(error=exc.args[0])
        return 1
    except Exception as exc:  # the traceback goes to stderr.log, the sentence to the page
        logging.exception("retrieval sweep failed")
        reason = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        print_event(error=Msg("The sweep stopped with an error ({reason}); the settings scored so far are kept and "
                              "starting again continues.", reason=reason))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""Fine-tuning as a job: `python -m core.finetune.job train PROJECT_DIR RUN_ID` or
`python -m core.finetune.job calibrate PROJECT_DIR SPEC_JSON_FILE`. Prints one JSON event per line (progress,
loss, eval loss, checkpoints); SIGTERM stops at the next step after saving a checkpoint."""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path

from core.errors import StudioError
from core.i18n import Msg
from core.jobs import print_event


def main(argv: list[str]) -> int:
    from core.finetune import runs
    from core.workspace import Project

    mode, folder, target = argv
    project = Project(Path(folder), Path(folder).name, 0.0).require()
    stop = {"requested": False}
    signal.signal(signal.SIGTERM, lambda *_: stop.update(requested=True))
    try:
        if mode == "calibrate":
            runs.calibrate(project, json.loads(Path(target).read_text(encoding="utf-8")), print_event)
        else:
            runs.execute(project, target, print_event, should_stop=lambda: stop["requested"])
    except StudioError as exc:
        print_event(error=exc.args[0])
        return 1
    except MemoryError:
        print_event(error=Msg("The machine ran out of memory; lower the batch size or max length, or use LoRA."))
        return 1
    except Exception as exc:  # the traceback goes to stderr.log, the sentence to the page
        logging.exception("fine-tuning failed")
        first_line = (str(exc).splitlines() or [type(exc).__name__])[0][:200]
        if "out of memory" in first_line.lower():
            print_event(error=Msg("The GPU ran out of memory; lower the batch size or max length, or use QLoRA."))
        else:
            print_event(error=Msg("Training stopped with an error ({reason}); see the log in the run folder.",
                                  reason=first_line))
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

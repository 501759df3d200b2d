"""An RQ worker on the queues high, default, low (in that order), with the scheduler on.

The app is built once; jobs run inside its application context. SimpleWorker runs jobs in this
process (no fork), so the MongoDB and SMTP connections are reused across jobs.
"""

from __future__ import annotations

import logging
import sys

from rq import SimpleWorker

from console import create_app
from console.queues import QUEUE_NAMES


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    app = create_app()
    burst = "--burst" in argv
    with app.app_context():
        for hook in app.extensions.get("worker_startup", []):
            hook(app)
        queues = [app.extensions["queues"][name] for name in QUEUE_NAMES]
        worker = SimpleWorker(queues, connection=app.extensions["redis"])
        logging.getLogger("rq.worker").setLevel(logging.INFO)
        worker.work(with_scheduler=True, burst=burst, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())

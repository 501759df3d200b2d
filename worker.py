"""An RQ worker on the queues high, default, low (in that order), with the scheduler on.

The app is built once; jobs run inside its application context. SimpleWorker runs jobs in this
process (no fork), so the MongoDB and SMTP connections are reused across jobs. Each job's outcome is counted
for /metrics and a failure becomes an error group (the app's `rq_exception_handlers`).
"""

from __future__ import annotations

import logging
import sys

import redis

from console import create_app
from console.queues import make_worker


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    app = create_app()
    burst = "--burst" in argv
    with app.app_context():
        for hook in app.extensions.get("worker_startup", []):
            hook(app)
        # The worker blocks on BLPOP for minutes: its connection must not have the app's short socket timeout.
        connection = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=5,
                                          health_check_interval=30)
        worker = make_worker(app, connection)
        logging.getLogger("rq.worker").setLevel(logging.INFO)
        worker.work(with_scheduler=True, burst=burst, logging_level="INFO")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Redis and the RQ queues, created in the factory with an explicit connection."""

from __future__ import annotations

import redis
from flask import current_app
from rq import Queue

QUEUE_NAMES = ("high", "default", "low")
PRIORITY_QUEUES = {"high": "high", "normal": "default", "low": "low"}


def init_app(app) -> None:
    conn = redis.Redis.from_url(app.config["REDIS_URL"], socket_connect_timeout=2, socket_timeout=5)
    app.extensions["redis"] = conn
    app.extensions["queues"] = {
        name: Queue(name, connection=conn, default_timeout=app.config["JOB_TIMEOUT"]) for name in QUEUE_NAMES
    }


def get_redis() -> redis.Redis:
    return current_app.extensions["redis"]


def get_queue(name: str = "default") -> Queue:
    return current_app.extensions["queues"][name]

"""Telemetry the app collects about itself, kept off the request's hot path.

- Request timings: a before/after_request pair appends the duration to an in-memory bucket per endpoint and
  method; one background thread per process writes the buckets in bulk (one document per endpoint per flush).
- Errors: Flask's `got_request_exception` signal upserts one group per fingerprint (rare, so written at once).
- Slow MongoDB commands: a pymongo CommandListener only appends to a queue; the flusher turns each command into
  its shape (values replaced by their types) and writes it. Commands on the telemetry collections are ignored,
  so the flusher's own writes can never feed back into the listener.
"""

from __future__ import annotations

import hashlib
import logging
import os
import random
import re
import threading
import time
import traceback
import weakref
from collections import deque
from datetime import datetime, timedelta

from flask import Flask, got_request_exception, request
from pymongo import monitoring

from console.telemetry import prom
from console.telemetry.models import TELEMETRY_COLLECTIONS
from console.timeutil import as_utc, utcnow

log = logging.getLogger(__name__)

WATCHED_COMMANDS = frozenset({"find", "aggregate", "count", "distinct", "update", "delete", "findAndModify",
                              "insert", "getMore"})
PROBE_ENVIRON = "console.telemetry.skip"
_CONSOLE_DIR = os.path.dirname(os.path.dirname(os.path.abspath(__file__))) + os.sep  # the console package
_START = "console.telemetry.t0"


# --- shapes: a command with every value replaced by its type --------------------------------------------------

_KEEP_VERBATIM = {"sort", "projection", "hint", "$sort", "key"}  # structure (field names, directions), not data
_DROP_KEYS = {"lsid", "$clusterTime", "$db", "txnNumber", "$readPreference", "readConcern", "writeConcern",
              "cursor", "comment", "maxTimeMS", "apiVersion", "signature", "ordered", "bypassDocumentValidation",
              "let", "startTransaction", "autocommit", "$client", "documents"}


def value_placeholder(value) -> str:
    return f"<{type(value).__name__}>"


def shape_of(value, depth: int = 0):
    """Keys and operators kept, every value replaced by a placeholder naming its type."""
    if depth > 12:
        return "<...>"
    if isinstance(value, dict):
        return {str(key): (value[key] if key in _KEEP_VERBATIM and _is_structure(value[key])
                           else shape_of(value[key], depth + 1)) for key in value}
    if isinstance(value, (list, tuple)):
        shapes = []
        for item in value:
            item_shape = shape_of(item, depth + 1)
            if item_shape not in shapes:
                shapes.append(item_shape)
            if len(shapes) >= 5:
                break
        return shapes
    return value_placeholder(value)


def _is_structure(value) -> bool:
    """A sort or projection spec: field names mapped to 1/-1/0/bool only."""
    return isinstance(value, dict) and all(isinstance(v, (int, bool)) for v in value.values())


def command_shape(name: str, command: dict) -> dict:
    shape = {}
    for key, value in command.items():
        if key in _DROP_KEYS or key == name:
            continue
        if key in _KEEP_VERBATIM and _is_structure(value):
            shape[key] = dict(value)
        else:
            shape[key] = shape_of(value)
    if name == "insert":
        shape["documents"] = f"<{len(command.get('documents') or [])} documents>"
    return {name: command.get(name) if name != "getMore" else command.get("collection"), **shape}


def shape_id(collection: str, shape: dict) -> str:
    return hashlib.sha1(repr((collection, sorted(shape.items(), key=lambda kv: kv[0]))).encode(),
                        usedforsecurity=False).hexdigest()[:16]


# --- errors ---------------------------------------------------------------------------------------------------

_SCRUBS = [
    (re.compile(r"(\w+://)[^/\s:@]+:[^/\s@]+@"), r"\1***:***@"),  # credentials in URIs
    (re.compile(r"[\w.+-]+@[\w-]+\.[\w.-]+"), "<email>"),
    (re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b"), "<uuid>"),
    (re.compile(r"\b[0-9a-fA-F]{24}\b"), "<id>"),
    (re.compile(r"\b0x[0-9a-fA-F]+\b"), "<addr>"),
    (re.compile(r"\b\d{1,3}(?:\.\d{1,3}){3}(?::\d+)?\b"), "<ip>"),
    (re.compile(r"\b[A-Za-z0-9_\-]{32,}\b"), "<token>"),
]
_NUMBERS = re.compile(r"\d+(?:\.\d+)?")


def scrub(message: str) -> str:
    """The message without credentials, emails, ids, addresses or long tokens."""
    for pattern, replacement in _SCRUBS:
        message = pattern.sub(replacement, message)
    return message[:500]


def normalize_message(message: str) -> str:
    return _NUMBERS.sub("<n>", scrub(message))


def in_app_frames(error: BaseException) -> list[str]:
    """module:function of each traceback frame inside the console package (line numbers left out on purpose:
    an unrelated edit above the failing line must not split the group)."""
    frames = []
    for frame in traceback.extract_tb(error.__traceback__):
        filename = os.path.abspath(frame.filename)
        if filename.startswith(_CONSOLE_DIR):
            module = "console." + filename[len(_CONSOLE_DIR):].removesuffix(".py").replace(os.sep, ".")
            frames.append(f"{module}:{frame.name}")
    return frames


def fingerprint(error: BaseException) -> tuple[str, str, list[str]]:
    """(fingerprint, exception name, in-app frames): type plus in-app frames, or the normalized message."""
    name = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
    frames = in_app_frames(error)
    basis = "|".join([name, *frames]) if frames else f"{name}|{normalize_message(str(error))}"
    return hashlib.sha1(basis.encode(), usedforsecurity=False).hexdigest()[:20], name, frames


def hour_key(moment: datetime) -> str:
    return moment.strftime("%Y%m%d%H")


# --- the per-process collector --------------------------------------------------------------------------------

class _Bucket:
    __slots__ = ("d", "errors", "n", "seen", "statuses")

    def __init__(self):
        self.n = 0
        self.errors = 0
        self.seen = 0
        self.statuses: dict[str, int] = {}
        self.d: list[float] = []


class SlowCommandListener(monitoring.CommandListener):
    """Remembers watched commands while they run; the slow ones go to an in-memory queue. Never writes."""

    def __init__(self, telemetry: Telemetry):
        self.telemetry = telemetry
        self._running: dict = {}

    def started(self, event):
        name = event.command_name
        if name not in WATCHED_COMMANDS:
            return
        command = event.command
        collection = command.get("collection") if name == "getMore" else command.get(name)
        if not isinstance(collection, str) or collection in TELEMETRY_COLLECTIONS:
            return
        if len(self._running) > 10_000:  # commands whose end we never saw (closed sockets)
            self._running.clear()
        self._running[(event.connection_id, event.request_id)] = (name, event.database_name, collection, command)

    def succeeded(self, event):
        started = self._running.pop((event.connection_id, event.request_id), None)
        if started is None:
            return
        prom.MONGO_COMMANDS.labels(started[0]).observe(event.duration_micros / 1_000_000)
        if event.duration_micros >= self.telemetry.slow_micros:
            prom.SLOW_QUERIES.labels(started[2]).inc()
            self.telemetry.slow.append((utcnow(), event.duration_micros / 1000.0, started))
            _flusher.ensure_running()  # an RQ worker serves no requests, so the listener starts the flusher

    failed = succeeded


class Telemetry:
    def __init__(self, config):
        self.enabled = bool(config.get("TELEMETRY_ENABLED", True))
        self.slow_micros = int(float(config.get("SLOW_QUERY_MS", 100)) * 1000)
        self.ttl = timedelta(days=int(config.get("TELEMETRY_TTL_DAYS", 7)))
        self.sample_rate = float(config.get("TELEMETRY_SAMPLE_RATE", 1.0))
        self.flush_seconds = float(config.get("TELEMETRY_FLUSH_SECONDS", 5))
        self.flush_every = int(config.get("TELEMETRY_FLUSH_EVERY", 500))
        self.reservoir = int(config.get("TELEMETRY_RESERVOIR", 1000))
        self.slow: deque = deque(maxlen=5000)
        self.listener = SlowCommandListener(self)
        self._lock = threading.Lock()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._since_flush = 0
        self._last_flush = time.monotonic()
        self._last_failure_log = 0.0

    # hot path
    def record_request(self, endpoint: str, method: str, status: int, duration_ms: float) -> None:
        with self._lock:
            bucket = self._buckets.get((endpoint, method))
            if bucket is None:
                bucket = self._buckets[(endpoint, method)] = _Bucket()
            bucket.n += 1
            if status >= 500:
                bucket.errors += 1
            key = str(status)
            bucket.statuses[key] = bucket.statuses.get(key, 0) + 1
            if self.sample_rate >= 1.0 or random.random() < self.sample_rate:
                bucket.seen += 1
                if len(bucket.d) < self.reservoir:
                    bucket.d.append(round(duration_ms, 2))
                else:  # reservoir sampling keeps the percentiles unbiased under load
                    slot = random.randrange(bucket.seen)
                    if slot < self.reservoir:
                        bucket.d[slot] = round(duration_ms, 2)
            self._since_flush += 1
            due = self._since_flush >= self.flush_every
        if due:
            _flusher.wake()

    def due(self) -> bool:
        if not self._buckets and not self.slow:
            return False
        return self._since_flush >= self.flush_every or time.monotonic() - self._last_flush >= self.flush_seconds

    def flush(self) -> dict:
        """Write what is buffered (one insert_many per collection); return how many documents were written."""
        with self._lock:
            buckets, self._buckets = self._buckets, {}
            self._since_flush = 0
            self._last_flush = time.monotonic()
        slow = []
        while self.slow:
            try:
                slow.append(self.slow.popleft())
            except IndexError:
                break
        now = utcnow()
        expires = now + self.ttl
        metrics = [{"at": now, "endpoint": endpoint, "method": method, "n": b.n, "errors": b.errors,
                    "statuses": b.statuses, "d": b.d, "expires_at": expires}
                   for (endpoint, method), b in buckets.items()]
        queries = []
        for at, duration_ms, (name, database, collection, command) in slow:
            shape = command_shape(name, command)
            queries.append({"at": at, "database": database, "collection": collection, "command_name": name,
                            "shape": shape, "shape_id": shape_id(collection, shape),
                            "duration_ms": round(duration_ms, 2), "expires_at": at + self.ttl})
        written = {"request_metrics": 0, "slow_queries": 0}
        if not metrics and not queries:
            return written
        try:
            from console.db import get_db

            db = get_db()
            if metrics:
                db["request_metrics"].insert_many(metrics, ordered=False)
                written["request_metrics"] = len(metrics)
            if queries:
                db["slow_queries"].insert_many(queries, ordered=False)
                written["slow_queries"] = len(queries)
        except Exception as error:  # telemetry must never take the app down; the batch is dropped
            if time.monotonic() - self._last_failure_log > 60:
                self._last_failure_log = time.monotonic()
                log.warning("telemetry flush failed (%s); dropped %d metric and %d query documents",
                            type(error).__name__, len(metrics), len(queries))
        return written

    # errors are rare: written at once
    def record_error(self, error: BaseException) -> None:
        try:
            fp, name, frames = fingerprint(error)
            sample = {"method": request.method, "path": request.path[:300],
                      "query_keys": sorted(request.args.keys())[:20], "at": utcnow()}
            endpoint = request.url_rule.rule if request.url_rule else "<unmatched>"
            self._upsert_group(fp, name, frames, error, {"source": "request", "endpoint": endpoint,
                                                         "sample": sample})
            prom.ERRORS.labels("request").inc()
        except Exception:  # never hide the original error behind a telemetry failure
            log.warning("could not record an error group", exc_info=True)

    def record_job_error(self, job, error: BaseException) -> None:
        """A failed RQ job: grouped by job name plus the error's fingerprint, with the last scrubbed traceback
        and the ids of the recent failures (so the System page can retry or discard them)."""
        try:
            func = _job_name(job)
            base, name, frames = fingerprint(error)
            fp = hashlib.sha1(f"job|{func}|{base}".encode(), usedforsecurity=False).hexdigest()[:20]
            attempts = int(job.meta.get("failed_attempts", 0)) + 1  # meta survives RQ's retries
            job.meta["failed_attempts"] = attempts
            job.save_meta()
            will_retry = bool(getattr(job, "retries_left", 0))
            details = {"name": prom.short_job_name(func), "func": func, "queue": job.origin,
                       "attempts": attempts, "will_retry": will_retry, "job_id": job.id,
                       "traceback": scrubbed_traceback(error)}
            now = utcnow()
            self._upsert_group(fp, name, frames, error,
                               {"source": "job", "endpoint": f"job {details['name']}", "job": details,
                                "sample": {"queue": job.origin, "at": now}},
                               push={"job_ids": {"$each": [job.id], "$slice": -50}})
            prom.ERRORS.labels("job").inc()
        except Exception:
            log.warning("could not record a job error group", exc_info=True)

    def _upsert_group(self, fp: str, name: str, frames: list[str], error: BaseException, fields: dict,
                      push: dict | None = None) -> None:
        """One occurrence: count it; a resolved group that recurs reopens, marked as a regression."""
        from console.db import get_db

        now = utcnow()
        groups = get_db()["error_events"]
        update = {"$inc": {"count": 1, f"hours.{hour_key(now)}": 1},
                  "$set": {"last_seen": now, "message": scrub(str(error)), "expires_at": now + self.ttl, **fields},
                  "$setOnInsert": {"first_seen": now, "exception": name, "frames": frames, "state": "open"}}
        if push:
            update["$push"] = push
        before = groups.find_one_and_update({"fingerprint": fp}, update, upsert=True,
                                            projection={"state": 1, "ignored_until": 1})
        state = (before or {}).get("state")
        if state == "resolved":
            groups.update_one({"fingerprint": fp, "state": "resolved"},
                              {"$set": {"state": "open", "regressed": True, "regressed_at": now}})
        elif state == "ignored" and before.get("ignored_until") and as_utc(before["ignored_until"]) <= now:
            groups.update_one({"fingerprint": fp, "state": "ignored"},
                              {"$set": {"state": "open"}, "$unset": {"ignored_until": ""}})


def _job_name(job) -> str:
    try:
        return job.func_name or "<unknown>"
    except Exception:  # a job that cannot be deserialized still fails into a group
        return "<undeserializable>"


def scrubbed_traceback(error: BaseException, limit: int = 30) -> str:
    """File, line, function and source line of each frame, then the exception with its message scrubbed.
    No locals, no argument values."""
    lines = []
    for frame in traceback.extract_tb(error.__traceback__)[-limit:]:
        filename = os.path.abspath(frame.filename)
        short = filename[len(_CONSOLE_DIR) - len("console/"):] if filename.startswith(_CONSOLE_DIR) \
            else os.path.basename(filename)
        lines.append(f'  File "{short}", line {frame.lineno}, in {frame.name}')
        if frame.line:
            lines.append(f"    {scrub(frame.line.strip())[:200]}")  # literals in code can hold secrets too
    exc = f"{type(error).__module__}.{type(error).__qualname__}".removeprefix("builtins.")
    lines.append(f"{exc}: {normalize_message(str(error))}")
    return "\n".join(lines)[:8000]


class _Flusher:
    """One daemon thread per process flushes every live Telemetry when it is due."""

    def __init__(self):
        self.instances: weakref.WeakSet = weakref.WeakSet()
        self._event = threading.Event()
        self._thread: threading.Thread | None = None
        self._pid = None
        self._start_lock = threading.Lock()

    def add(self, telemetry: Telemetry) -> None:
        self.instances.add(telemetry)

    def ensure_running(self) -> None:
        if self._thread is not None and self._thread.is_alive() and self._pid == os.getpid():
            return
        with self._start_lock:
            if self._thread is None or not self._thread.is_alive() or self._pid != os.getpid():
                self._pid = os.getpid()
                self._thread = threading.Thread(target=self._run, name="telemetry-flusher", daemon=True)
                self._thread.start()

    def wake(self) -> None:
        self.ensure_running()
        self._event.set()

    def _run(self) -> None:
        while True:
            self._event.wait(1.0)
            self._event.clear()
            for telemetry in list(self.instances):
                if telemetry.due():
                    telemetry.flush()


_flusher = _Flusher()


def get(app: Flask) -> Telemetry | None:
    return app.extensions.get("telemetry")


def flush(app: Flask) -> dict:
    """Write buffered telemetry now (tests, the optimize job, shutdown)."""
    telemetry = get(app)
    return telemetry.flush() if telemetry else {}


def init_app(app: Flask) -> None:
    """Install the hooks and register the slow-command listener; call before db.init_app (the client is
    created with its listeners)."""
    telemetry = Telemetry(app.config)
    app.extensions["telemetry"] = telemetry
    if not telemetry.enabled:
        return
    app.extensions.setdefault("command_listeners", []).append(telemetry.listener)
    _flusher.add(telemetry)

    def start_timer():
        request.environ[_START] = time.perf_counter()

    # first, so the time of every other before_request hook (auth, identity) is included
    app.before_request_funcs.setdefault(None, []).insert(0, start_timer)

    @app.after_request
    def _record_timing(response):
        started = request.environ.get(_START)
        if started is None or request.environ.get(PROBE_ENVIRON) or request.endpoint == "static":
            return response
        rule = request.url_rule.rule if request.url_rule is not None else "<unmatched>"
        seconds = time.perf_counter() - started
        telemetry.record_request(rule, request.method, response.status_code, seconds * 1000.0)
        prom.observe_request(rule, request.method, response.status_code, seconds)
        _flusher.ensure_running()
        return response

    def _on_exception(sender, exception, **extra):
        telemetry.record_error(exception)

    got_request_exception.connect(_on_exception, app)
    app.extensions["telemetry_signal_handler"] = _on_exception  # blinker holds receivers weakly

    def _on_job_exception(job, exc_type, exc_value, tb):
        telemetry.record_job_error(job, exc_value)
        return True  # let RQ's own handling (failed registry, retries) go on

    app.extensions.setdefault("rq_exception_handlers", []).append(_on_job_exception)

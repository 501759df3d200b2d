"""The client: one `Console` per base URL and credential."""

from __future__ import annotations

import json
import random
import time
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import asdict
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime
from typing import Any

from community_console_client.errors import ConsoleError, ConsoleUnavailable
from community_console_client.models import (
    BatchResult,
    BatchStatus,
    EmailResult,
    Event,
    FieldError,
    NotifyResult,
    Recipient,
    Rejected,
    TrackResult,
)

API = "/api/phase14"
MAX_EVENTS_PER_REQUEST = 1000
RETRY_STATUSES = {429, 500, 502, 503, 504}


def _new_id() -> str:
    return uuid.uuid4().hex


def _iso(value: datetime | str | None) -> str | None:
    if value is None or isinstance(value, str):
        return value
    if value.tzinfo is None:
        value = value.replace(tzinfo=timezone.utc)
    return value.astimezone(timezone.utc).isoformat().replace("+00:00", "Z")


def _drop_none(data: Mapping[str, Any]) -> dict[str, Any]:
    return {key: value for key, value in data.items() if value is not None}


def _retry_after(value: str | None) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, (when - datetime.now(timezone.utc)).total_seconds())


def _errors(items: Any) -> list[FieldError]:
    if not isinstance(items, list):
        return []
    return [FieldError(str(e.get("field", "")), str(e.get("message", ""))) for e in items if isinstance(e, dict)]


class Console:
    """A client for the Community Console API.

    `token` (a bearer token from `POST /api/auth/token`, see `Console.login`) authorizes what its admin's roles
    allow; `ingest_key` (one of the console's INGEST_KEYS) authorizes activity tracking only. With both, tracking
    uses the ingest key and everything else the token.

    Requests that are safe to repeat are retried on 429, 5xx and lost connections, with exponential backoff
    and jitter, honouring `Retry-After` up to `max_retry_after` seconds. Tracking, notify and send-email are
    made safe to repeat by ids generated for you (`event_id`, `idempotency_key`); batch-send has none, so it is
    retried only on 429 (refused before anything happened).
    """

    def __init__(self, base_url: str, *, token: str | None = None, ingest_key: str | None = None,
                 timeout: float = 10.0, max_retries: int = 4, backoff: float = 0.5, max_backoff: float = 30.0,
                 max_retry_after: float = 60.0, user_agent: str = "community-console-client/0.1",
                 sleep: Callable[[float], None] = time.sleep):
        if urllib.parse.urlsplit(base_url).scheme not in {"http", "https"}:
            raise ValueError("base_url must be an http:// or https:// URL")
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.ingest_key = ingest_key
        self.timeout = timeout
        self.max_retries = max_retries
        self.backoff = backoff
        self.max_backoff = max_backoff
        self.max_retry_after = max_retry_after
        self.user_agent = user_agent
        self._sleep = sleep

    @classmethod
    def login(cls, base_url: str, email: str, password: str, **options) -> Console:
        """Exchange an admin's email and password for a bearer token (`POST /api/auth/token`)."""
        answer = cls(base_url, **options)._request("POST", "/api/auth/token", {"email": email, "password": password},
                                    auth=None, retry_5xx=False)
        return cls(base_url, token=answer["token"], **options)

    # --- activity ----------------------------------------------------------------------------------------------

    def track(self, user_id: str, event: str, *, feature: str | None = None,
              properties: Mapping[str, Any] | None = None, session_id: str | None = None,
              timestamp: datetime | str | None = None, traits: Mapping[str, Any] | None = None,
              event_id: str | None = None) -> TrackResult:
        """Send one event. A rejected event raises ConsoleError (422) with the field errors."""
        item = self._event(Event(user_id, event, feature, dict(properties) if properties else None, session_id,
                                 timestamp, dict(traits) if traits else None, event_id))
        answer = self._request("POST", f"{API}/engagement/track-activity", item, auth="ingest")
        return self._track_result(answer, [item["event_id"]], 0)

    def track_many(self, events: Iterable[Event | Mapping[str, Any]]) -> TrackResult:
        """Send any number of events in requests of at most 1000. Rejected indexes count from 0 over all of
        `events`; each chunk is retried on its own (its event ids make that safe)."""
        items = [self._event(event) for event in events]
        accepted = duplicates = clamped = 0
        rejected: list[Rejected] = []
        for start in range(0, len(items), MAX_EVENTS_PER_REQUEST):
            chunk = items[start:start + MAX_EVENTS_PER_REQUEST]
            answer = self._request("POST", f"{API}/engagement/track-activity", {"events": chunk}, auth="ingest")
            part = self._track_result(answer, [], start)
            accepted, duplicates, clamped = accepted + part.accepted, duplicates + part.duplicates, \
                clamped + part.clamped
            rejected.extend(part.rejected)
        return TrackResult(accepted, duplicates, rejected, [item["event_id"] for item in items], clamped)

    @staticmethod
    def _event(event: Event | Mapping[str, Any]) -> dict[str, Any]:
        data = asdict(event) if isinstance(event, Event) else dict(event)
        data["timestamp"] = _iso(data.get("timestamp"))
        data["event_id"] = data.get("event_id") or _new_id()
        return _drop_none(data)

    @staticmethod
    def _track_result(answer: dict, event_ids: list[str], offset: int) -> TrackResult:
        rejected = [Rejected(int(r.get("index", 0)) + offset, _errors(r.get("errors")))
                    for r in answer.get("rejected", [])]
        return TrackResult(int(answer.get("accepted", 0)), int(answer.get("duplicates", 0)), rejected, event_ids,
                           int(answer.get("clamped", 0)))

    # --- communication ---------------------------------------------------------------------------------------

    def notify(self, event: str, *, user_id: str | None = None, email: str | None = None,
               data: Mapping[str, Any] | None = None, event_id: str | None = None) -> NotifyResult:
        """Tell the console something happened to a member (`POST /communication/notify`); the console picks
        the template and honours the member's preferences. `event_id` (generated) makes a retry send once."""
        if bool(user_id) == bool(email):
            raise ValueError("give exactly one of user_id or email")
        event_id = event_id or _new_id()
        body = _drop_none({"event": event, "user_id": user_id, "email": email, "data": dict(data or {}),
                           "event_id": event_id})
        answer = self._request("POST", f"{API}/communication/notify", body)
        return NotifyResult(answer.get("email_id"), answer.get("status"), answer.get("skipped"), event_id,
                            bool(answer.get("duplicate", False)))

    def send_email(self, template_id: str | None = None, *, template_key: str | None = None,
                   user_id: str | None = None, email: str | None = None,
                   variables: Mapping[str, Any] | None = None, priority: str = "normal", category: str | None = None,
                   idempotency_key: str | None = None, send_at: datetime | str | None = None) -> EmailResult:
        """Queue one email to a member (`user_id`) or an address (`email`). The same `idempotency_key`
        (generated when not given) never sends twice."""
        if bool(template_id) == bool(template_key):
            raise ValueError("give exactly one of template_id or template_key")
        if bool(user_id) == bool(email):
            raise ValueError("give exactly one of user_id or email")
        key = idempotency_key or _new_id()
        body = _drop_none({"template_id": template_id, "template_key": template_key,
                           "to": _drop_none({"user_id": user_id, "email": email}),
                           "variables": dict(variables or {}), "priority": priority, "category": category,
                           "idempotency_key": key, "send_at": _iso(send_at)})
        answer = self._request("POST", f"{API}/communication/send-email", body)
        return EmailResult(str(answer["email_id"]), str(answer.get("status", "")), key, answer.get("reason"),
                           bool(answer.get("duplicate", False)))

    def batch_send(self, template_id: str | None = None, recipients: Iterable[Recipient | Mapping[str, Any]] = (),
                   *, template_key: str | None = None, variables: Mapping[str, Any] | None = None,
                   priority: str = "low", category: str | None = None) -> BatchResult:
        """Send one template to up to 10,000 recipients (`Recipient(user_id=...)` or `Recipient(email=...)`)."""
        if bool(template_id) == bool(template_key):
            raise ValueError("give exactly one of template_id or template_key")
        people = [_drop_none(asdict(r) if isinstance(r, Recipient) else dict(r)) for r in recipients]
        body = _drop_none({"template_id": template_id, "template_key": template_key, "recipients": people,
                           "variables": dict(variables or {}), "priority": priority, "category": category})
        answer = self._request("POST", f"{API}/communication/batch-send", body, retry_5xx=False)
        return BatchResult(str(answer["batch_id"]), int(answer.get("queued", 0)), int(answer.get("skipped", 0)))

    def batch_status(self, batch_id: str) -> BatchStatus:
        answer = self._request("GET", f"{API}/communication/batches/{urllib.parse.quote(batch_id, safe='')}")
        return BatchStatus(str(answer["batch_id"]), str(answer["status"]), int(answer["total"]),
                           int(answer["sent"]), int(answer["failed"]), int(answer["skipped"]),
                           float(answer["progress"]))

    # --- transport -------------------------------------------------------------------------------------------

    def _headers(self, auth: str | None) -> dict[str, str]:
        headers = {"Accept": "application/json, application/problem+json", "User-Agent": self.user_agent}
        if auth == "ingest" and self.ingest_key:
            headers["X-Ingest-Key"] = self.ingest_key
        elif auth is not None and self.token:
            headers["Authorization"] = f"Bearer {self.token}"
        return headers

    def _delay(self, attempt: int, retry_after: float | None) -> float:
        backoff = min(self.max_backoff, self.backoff * (2 ** attempt)) * (0.5 + random.random() / 2)
        return max(backoff, retry_after or 0.0)

    def _request(self, method: str, path: str, body: Any = None, *, auth: str | None = "token",
                 retry_5xx: bool = True) -> Any:
        data = json.dumps(body).encode() if body is not None else None
        headers = self._headers(auth)
        if data is not None:
            headers["Content-Type"] = "application/json"
        attempt = 0
        while True:
            request = urllib.request.Request(self.base_url + path, data=data, method=method,  # noqa: S310 (http(s) only)
                                             headers=headers)
            try:
                with urllib.request.urlopen(request, timeout=self.timeout) as response:  # noqa: S310 (http(s) only)
                    raw = response.read()
                    return json.loads(raw) if raw else None
            except urllib.error.HTTPError as error:
                failure = self._error(error)
                retryable = failure.status == 429 or (retry_5xx and failure.status in RETRY_STATUSES)
            except (urllib.error.URLError, TimeoutError, ConnectionError) as error:
                reason = getattr(error, "reason", error)
                failure = ConsoleUnavailable(None, "Connection failed", f"{method} {path}: {reason}")
                retryable = retry_5xx
            if not retryable or attempt >= self.max_retries:
                raise failure
            if failure.retry_after is not None and failure.retry_after > self.max_retry_after:
                raise failure  # the console asked for a longer pause than this caller allows
            self._sleep(self._delay(attempt, failure.retry_after))
            attempt += 1

    @staticmethod
    def _error(error: urllib.error.HTTPError) -> ConsoleError:
        retry_after = _retry_after(error.headers.get("Retry-After"))
        raw = error.read() or b""
        try:
            problem = json.loads(raw)
        except ValueError:
            problem = None
        if not isinstance(problem, dict):
            return ConsoleError(error.code, str(error.reason or "HTTP error"), raw[:300].decode("utf-8", "replace"),
                                retry_after=retry_after, body=raw)
        return ConsoleError(int(problem.get("status") or error.code), str(problem.get("title") or error.reason),
                            str(problem.get("detail") or ""), _errors(problem.get("errors")),
                            type=str(problem.get("type") or "about:blank"), retry_after=retry_after, body=problem)

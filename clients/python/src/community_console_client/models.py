"""Typed requests and results."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any


@dataclass(frozen=True)
class FieldError:
    field: str
    message: str


@dataclass
class Event:
    """One activity event; `event_id` is generated when absent so a retried send is stored once."""

    user_id: str
    event: str
    feature: str | None = None
    properties: dict[str, Any] | None = None
    session_id: str | None = None
    timestamp: datetime | str | None = None
    traits: dict[str, Any] | None = None
    event_id: str | None = None


@dataclass(frozen=True)
class Rejected:
    index: int
    errors: list[FieldError]


@dataclass(frozen=True)
class TrackResult:
    accepted: int
    duplicates: int
    rejected: list[Rejected]
    event_ids: list[str]  # in the order sent, generated ones included
    clamped: int = 0


@dataclass(frozen=True)
class NotifyResult:
    """`email_id` and `status` when an email was queued; `skipped` names why not (opted out, suppressed ...)."""

    email_id: str | None
    status: str | None
    skipped: str | None
    event_id: str
    duplicate: bool = False


@dataclass(frozen=True)
class EmailResult:
    email_id: str
    status: str
    idempotency_key: str
    reason: str | None = None
    duplicate: bool = False


@dataclass
class Recipient:
    user_id: str | None = None
    email: str | None = None
    variables: dict[str, Any] | None = None


@dataclass(frozen=True)
class BatchResult:
    batch_id: str
    queued: int
    skipped: int


@dataclass(frozen=True)
class BatchStatus:
    batch_id: str
    status: str
    total: int
    sent: int
    failed: int
    skipped: int
    progress: float

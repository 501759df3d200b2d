"""The append-only audit log."""

from __future__ import annotations

import logging

from flask import has_request_context, request
from flask_login import current_user

from console.models.admin import AuditLog

log = logging.getLogger(__name__)
DENIAL_LOG_WINDOW_SECONDS = 60


def _actor() -> tuple[str, object]:
    if has_request_context() and current_user and current_user.is_authenticated:
        return current_user.email, current_user.id
    return "system", None


def client_ip() -> str | None:
    return request.remote_addr if has_request_context() else None


def record(action: str, target: str, before=None, after=None, *, actor: str | None = None, **details) -> AuditLog:
    """Write one audit entry: who did what to which target, with the state before and after."""
    name, actor_id = _actor()
    return AuditLog(
        actor=actor or name, actor_id=actor_id, action=action, target=target,
        before=before, after=after, ip=client_ip(), details=details,
    ).save()


def log_denied(permission: str) -> None:
    """Record a denied permission check, at most once a minute per admin, permission and path."""
    from console.queues import get_redis

    _name, actor_id = _actor()
    key = f"audit:denied:{actor_id}:{permission}:{request.endpoint}"
    try:
        if not get_redis().set(key, 1, nx=True, ex=DENIAL_LOG_WINDOW_SECONDS):
            return
    except Exception:  # Redis down must not turn a 403 into a 500
        log.warning("audit: could not rate-limit denial logging", exc_info=True)
    record("permission.denied", request.path, details_permission=permission, method=request.method)

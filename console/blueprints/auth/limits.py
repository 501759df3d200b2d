"""Failed sign-ins are limited per account and per client IP; a lockout is written to the audit log.

Only failures count (deducted on 401), so a right password from a busy office IP is never held up by
the limits of others, and guessing one account from many IPs is stopped by the account's own bucket.
"""

from __future__ import annotations

import hashlib
import json
import logging

from flask import current_app, request

from console.audit import record
from console.extensions import limiter

log = logging.getLogger(__name__)
LOCKOUT_LOG_SECONDS = 60


def _failed(response) -> bool:
    return response.status_code == 401


def attempted_email() -> str:
    """The account a sign-in request names (form or JSON body), normalised; empty when there is none."""
    try:  # a key function must never raise: the limiter would take it for a storage failure
        email = request.form.get("email") if request.form else None
        if email is None and request.is_json:
            body = json.loads(request.get_data(cache=True) or b"null")
            email = body.get("email") if isinstance(body, dict) else None
    except Exception:  # too large, not JSON, nested too deeply: the view answers with the right 4xx
        email = None
    return email.strip().lower()[:254] if isinstance(email, str) else ""


def _account_key() -> str:
    return "auth-account:" + hashlib.sha256(attempted_email().encode("utf-8", "replace")).hexdigest()[:24]


def _ip_key() -> str:
    return f"auth-ip:{request.remote_addr}"


def _lockout(request_limit) -> None:
    """Audit a lockout once per bucket and minute (the attacker keeps knocking; the log should not grow)."""
    from console.queues import get_redis

    scope = "account" if request_limit.key and "auth-account" in request_limit.key else "ip"
    try:
        if not get_redis().set(f"audit:lockout:{request_limit.key}", 1, nx=True, ex=LOCKOUT_LOG_SECONDS):
            return None
    except Exception:  # Redis down must not turn a 429 into a 500
        log.warning("auth: could not de-duplicate lockout logging", exc_info=True)
    target = attempted_email() if scope == "account" else (request.remote_addr or "unknown")
    record("auth.lockout", target or "unknown", actor="anonymous", scope=scope, path=request.path,
           limit=str(request_limit.limit))
    return None


def failed_auth_limits(account_setting: str):
    """Decorators: failures per account (the named setting) and per IP (AUTH_IP_RATE_LIMIT, one bucket for
    every sign-in route)."""
    per_account = limiter.limit(lambda: current_app.config[account_setting], key_func=_account_key,
                                methods=["POST"], deduct_when=_failed, on_breach=_lockout)
    per_ip = limiter.shared_limit(lambda: current_app.config["AUTH_IP_RATE_LIMIT"], scope="failed-auth-ip",
                                  key_func=_ip_key, methods=["POST"], deduct_when=_failed, on_breach=_lockout)

    def decorator(view):
        return per_ip(per_account(view))

    return decorator

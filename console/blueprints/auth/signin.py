"""Signing in and out, and issuing bearer tokens: each writes its audit entry (the views only call these)."""

from console.accounts import Admin, ApiToken
from console.audit import record
from console.security import end_session, issue_token, start_session
from console.timeutil import utcnow


def sign_in(admin: Admin, **details) -> None:
    """Sign the admin in to this browser (`details`, e.g. the second factor used, go into the audit entry)."""
    start_session(admin)  # under the admin's session version, so logout and deactivation end it too
    admin.update(set__last_login_at=utcnow())
    record("auth.login", admin.email, actor=admin.email, **details)


def sign_out(admin: Admin) -> None:
    """End every session and bearer token of this admin."""
    end_session(admin)
    record("auth.logout", admin.email, actor=admin.email)


def issue_api_token(admin: Admin, ip: str | None) -> tuple[str, ApiToken]:
    """A new bearer token (only its hash is stored)."""
    token, stored = issue_token(admin, ip)
    record("auth.token_issued", admin.email, actor=admin.email)
    return token, stored

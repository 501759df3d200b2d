"""An admin's life: invited by email (a signed link valid 72 h), sets a password, is deactivated and reactivated,
resets a forgotten password by email link. Every step is audited; deactivation ends every session and token.

Links are itsdangerous-signed and carry a one-time nonce stored on the admin, so a resent invitation or a used
reset link stops working. Account mail goes straight to SMTP (Flask-Mail): it is for staff, not members.
"""

from __future__ import annotations

import secrets
from datetime import timedelta

from flask import current_app, url_for
from flask_mail import Message
from itsdangerous import BadSignature, SignatureExpired, URLSafeTimedSerializer

from console.accounts import Admin, end_sessions
from console.audit import record
from console.authz import SUPER_ADMIN, bump_authz_version
from console.blueprints.roles.manage import _role_order, assignment_lock, role_table
from console.errors import ApiError
from console.extensions import mail
from console.security import hash_password, password_problems
from console.timeutil import utcnow

INVITE_HOURS = 72
RESET_HOURS = 2


def _serializer(purpose: str) -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=f"admin-{purpose}")


def _link(purpose: str, admin: Admin, nonce: str) -> str:
    token = _serializer(purpose).dumps({"a": str(admin.id), "n": nonce})
    endpoint = "roles.accept_invite" if purpose == "invite" else "roles.reset_password"
    base = (current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")
    return base + url_for(endpoint, token=token) if base else url_for(endpoint, token=token, _external=True)


def _send(to: str, subject: str, text: str) -> None:
    mail.send(Message(subject=subject, recipients=[to], body=text))


def _actor_permissions(actor: Admin) -> set[str]:
    table = role_table()
    return set().union(*(table.get(name, set()) for name in actor.roles)) if actor.roles else set()


def invite(actor: Admin, email: str, roles: list[str], name: str | None = None) -> dict:
    """Create an invited (inactive) admin and email the link; the inviter may grant only roles they could assign."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise ApiError(422, "That is not an email address.", [{"field": "email", "message": "not an email"}])
    table = role_table()
    unknown = [{"field": f"roles.{i}", "message": f"unknown role {r!r}"} for i, r in enumerate(roles) if r not in table]
    if unknown:
        raise ApiError(422, "Some roles do not exist.", unknown)
    held = _actor_permissions(actor)
    for role in roles:
        missing = table[role] - held
        if missing:
            raise ApiError(403, f"You cannot grant {role!r}: it has permissions you do not hold "
                                f"({', '.join(sorted(missing))}).")
    if Admin.objects(email=email).first():
        raise ApiError(409, f"{email} already has an account or an invitation.", [{"field": "email", "message":
                                                                                    "taken"}])
    nonce = secrets.token_urlsafe(16)
    admin = Admin(email=email, name=name or email.split("@")[0], roles=sorted(set(roles), key=_role_order),
                  active=False, password_hash="!invited", invite_nonce=nonce, invited_at=utcnow(),
                  invited_by=actor.email).save()
    _send_invite(admin, nonce)
    record("admin.invited", email, None, {"roles": admin.roles}, actor=actor.email)
    return lifecycle_dict(admin)


def _send_invite(admin: Admin, nonce: str) -> None:
    link = _link("invite", admin, nonce)
    _send(admin.email, "You are invited to the Community Console",
          f"Hello {admin.display_name},\n\nYou have been invited to the Community Console as "
          f"{', '.join(admin.roles) or 'an admin'}. Set your password here (the link works for {INVITE_HOURS} "
          f"hours, once):\n\n{link}\n")


def resend_invite(actor: Admin, admin: Admin) -> dict:
    if not admin.invite_nonce:
        raise ApiError(409, "This admin has no open invitation.")
    nonce = secrets.token_urlsafe(16)
    Admin.objects(id=admin.id).update_one(set__invite_nonce=nonce, set__invited_at=utcnow())
    admin.reload()
    _send_invite(admin, nonce)
    record("admin.invite_resent", admin.email, actor=actor.email)
    return lifecycle_dict(admin)


def revoke_invite(actor: Admin, admin: Admin) -> None:
    if not admin.invite_nonce or admin.last_login_at:
        raise ApiError(409, "This admin has no open invitation; deactivate them instead.")
    Admin.objects(id=admin.id, invite_nonce=admin.invite_nonce).delete()
    record("admin.invite_revoked", admin.email, {"roles": list(admin.roles)}, None, actor=actor.email)


def _from_token(purpose: str, token: str, hours: int) -> Admin:
    try:
        data = _serializer(purpose).loads(token, max_age=hours * 3600)
    except SignatureExpired:
        raise ApiError(410, "This link has expired; ask for a new one.") from None
    except BadSignature:
        raise ApiError(404, "This link is not valid.") from None
    field = "invite_nonce" if purpose == "invite" else "reset_nonce"
    admin = Admin.objects(id=data.get("a"), **{field: data.get("n")}).first() if isinstance(data, dict) else None
    if admin is None:
        raise ApiError(404, "This link was already used or replaced by a newer one.")
    return admin


def check_invite(token: str) -> Admin:
    return _from_token("invite", token, INVITE_HOURS)


def _use_link(purpose: str, token: str, password: str, **changes) -> Admin:
    """A one-time link's admin, with the new password set and the link used up: 422 for a weak password (nothing
    changes), 404 when the link was used meanwhile. `changes` are set in the same update."""
    hours, nonce = (INVITE_HOURS, "invite_nonce") if purpose == "invite" else (RESET_HOURS, "reset_nonce")
    admin = _from_token(purpose, token, hours)
    problems = password_problems(password, admin.email)
    if problems:
        raise ApiError(422, "The password " + "; ".join(problems) + ".", [{"field": "password", "message": p}
                                                                          for p in problems])
    if not Admin.objects(id=admin.id, **{nonce: getattr(admin, nonce)}).update_one(
            set__password_hash=hash_password(password), set__password_changed_at=utcnow(), **{f"unset__{nonce}": True},
            **changes):
        raise ApiError(404, "This link was already used.")
    return admin


def accept_invite(token: str, password: str) -> Admin:
    admin = _use_link("invite", token, password, set__active=True)
    bump_authz_version()
    record("admin.invite_accepted", admin.email, {"active": False}, {"active": True}, actor=admin.email)
    admin.reload()
    return admin


def request_reset(email: str) -> None:
    """Email a reset link to an active admin; says nothing about whether the address exists."""
    admin = Admin.objects(email=(email or "").strip().lower()[:254], active=True).first()
    if admin is None:
        return
    nonce = secrets.token_urlsafe(16)
    Admin.objects(id=admin.id).update_one(set__reset_nonce=nonce)
    _send(admin.email, "Reset your Community Console password",
          f"Someone asked to reset the password of {admin.email}. If it was you, choose a new one here (the link "
          f"works for {RESET_HOURS} hours, once):\n\n{_link('reset', admin, nonce)}\n\nIf not, ignore this email.")
    record("admin.password_reset_requested", admin.email, actor=admin.email)


def check_reset(token: str) -> Admin:
    return _from_token("reset", token, RESET_HOURS)


def reset_password(token: str, password: str) -> Admin:
    admin = _use_link("reset", token, password)
    end_sessions(admin.id)
    record("admin.password_reset", admin.email, actor=admin.email)
    admin.reload()
    return admin


def set_active(actor: Admin, admin: Admin, active: bool) -> dict:
    """Deactivate (ending every session and token at once) or reactivate; never the last active super_admin."""
    if actor.id == admin.id:
        raise ApiError(403, "You cannot deactivate or reactivate yourself.")
    if admin.invite_nonce and active:
        raise ApiError(409, "This admin has not accepted the invitation yet.")
    table = role_table()
    missing = set().union(*(table.get(r, set()) for r in admin.roles)) - _actor_permissions(actor) \
        if admin.roles else set()
    if missing:
        raise ApiError(403, "You cannot change an admin who holds permissions you do not hold.")
    with assignment_lock():
        admin.reload()
        if bool(admin.active) == active:
            return lifecycle_dict(admin)
        if not active and SUPER_ADMIN in admin.roles and \
                not Admin.objects(roles=SUPER_ADMIN, active=True, id__ne=admin.id).count():
            raise ApiError(403, "This is the last active super_admin; promote someone else first.")
        Admin.objects(id=admin.id).update_one(set__active=active, set__deactivated_at=None if active else utcnow())
    if not active:
        end_sessions(admin.id)
    bump_authz_version()
    record("admin.activated" if active else "admin.deactivated", admin.email, {"active": not active},
           {"active": active}, actor=actor.email, admin_id=str(admin.id))
    admin.reload()
    return lifecycle_dict(admin)


def lifecycle_dict(admin: Admin) -> dict:
    state = "invited" if admin.invite_nonce else ("active" if admin.active else "deactivated")
    expires = admin.invited_at + timedelta(hours=INVITE_HOURS) if admin.invite_nonce and admin.invited_at else None
    return {"id": str(admin.id), "email": admin.email, "name": admin.name, "roles": list(admin.roles),
            "active": bool(admin.active), "state": state, "invited_at": admin.invited_at,
            "invite_expires_at": expires, "last_login_at": admin.last_login_at}

"""Two-factor sign-in: TOTP codes (pyotp) with a QR code on enrolment, ten single-use recovery codes, and a
per-role requirement (REQUIRE_2FA_ROLES).

The password step calls in through three functions: `second_step_needed` and `begin_second_step` (the login
page) and `check_token_otp` (POST /api/auth/token). Until the second step succeeds the session holds only a
signed, short-lived "pending second factor" marker, never a signed-in admin. Failed codes are throttled per
account and per IP (Flask-Limiter's storage) and audited. Uses no other feature.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time

import pyotp
import segno
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app, redirect, session, url_for
from flask_login import logout_user
from itsdangerous import BadSignature, URLSafeTimedSerializer
from limits import parse

from console.accounts import Admin
from console.audit import record
from console.authz import permissions_for_roles
from console.blueprints.auth.signin import sign_in
from console.errors import ApiError
from console.extensions import limiter
from console.timeutil import utcnow

ISSUER = "Community Console"
STEP_SECONDS = 30
RECOVERY_CODES = 10
RECOVERY_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # no 0/o, 1/l/i: read off paper
PENDING_KEY = "_2fa_pending"
# Recovery codes are random (~50 bits), so a light argon2 is enough and ten verifications stay fast.
_recovery_hasher = PasswordHasher(time_cost=1, memory_cost=8192, parallelism=1)


class Throttled(Exception):
    """Too many failed codes for this account or address; `retry_after` in seconds."""

    def __init__(self, retry_after: int):
        super().__init__(retry_after)
        self.retry_after = retry_after


# --- who needs it ------------------------------------------------------------------------------------------

def required_roles() -> set[str]:
    value = current_app.config.get("REQUIRE_2FA_ROLES")
    if value is None:
        return {"super_admin", "admin"} if current_app.config.get("IS_PRODUCTION") else set()
    return {part.strip() for part in str(value).split(",") if part.strip()}


def is_enrolled(admin: Admin) -> bool:
    return bool(admin.totp_secret and admin.totp_enabled_at)


def is_required(admin: Admin) -> bool:
    return bool(required_roles() & set(admin.roles or ()))


def second_step_needed(admin: Admin) -> bool:
    return is_enrolled(admin) or is_required(admin)


def status(admin: Admin) -> dict:
    return {"enrolled": is_enrolled(admin), "required": is_required(admin), "enabled_at": admin.totp_enabled_at,
            "recovery_codes_left": len(admin.recovery_codes or []) if is_enrolled(admin) else 0,
            "pending": bool(admin.totp_secret and not admin.totp_enabled_at)}


# --- the pending marker ------------------------------------------------------------------------------------

def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt="console-2fa-pending")


def begin_second_step(admin: Admin, next_url: str | None):
    """After a correct password: remember who is half-way in and send them to the code (or enrolment) page."""
    logout_user()  # whoever this browser was signed in as, it is nobody until the code step
    session[PENDING_KEY] = _serializer().dumps({"admin": str(admin.id), "next": next_url or ""})
    return redirect(url_for("auth.second_factor" if is_enrolled(admin) else "auth.second_factor_enrol"))


def pending() -> tuple[Admin | None, str]:
    """The admin whose password step is still fresh, and where they wanted to go."""
    raw = session.get(PENDING_KEY)
    if not raw:
        return None, ""
    try:
        data = _serializer().loads(raw, max_age=current_app.config["TWOFA_PENDING_SECONDS"])
        admin = Admin.objects(id=ObjectId(data["admin"]), active=True).first()
    except (BadSignature, InvalidId, KeyError, TypeError):
        admin, data = None, {}
    if admin is None:
        session.pop(PENDING_KEY, None)
    return admin, data.get("next", "")


def complete_sign_in(admin: Admin, method: str) -> None:
    """The second step succeeded: now, and only now, the session is signed in (as pages.login does)."""
    session.pop(PENDING_KEY, None)
    sign_in(admin, second_factor=method)


# --- enrolment -------------------------------------------------------------------------------------------

def start_enrolment(admin: Admin) -> None:
    """Give the admin a new secret to confirm (kept while unconfirmed, so a reload shows the same QR code)."""
    if admin.totp_secret and not admin.totp_enabled_at:
        return
    admin.totp_secret = pyotp.random_base32()
    Admin.objects(id=admin.id).update(set__totp_secret=admin.totp_secret, unset__totp_enabled_at=True,
                                      set__recovery_codes=[], unset__totp_last_step=True)
    admin.totp_enabled_at, admin.recovery_codes, admin.totp_last_step = None, [], None


def provisioning(admin: Admin) -> dict:
    """What the enrolment page shows: the QR code as an inline SVG data URI and the secret for manual entry."""
    uri = pyotp.TOTP(admin.totp_secret).provisioning_uri(name=admin.email, issuer_name=ISSUER)
    qr = segno.make(uri, error="m").svg_data_uri(scale=5, border=2, dark="#0f172a")
    spaced = " ".join(admin.totp_secret[i:i + 4] for i in range(0, len(admin.totp_secret), 4))
    return {"uri": uri, "qr": qr, "secret": spaced}


def confirm_enrolment(admin: Admin, code: str, *, via: str, ip: str | None) -> list[str] | None:
    """The first code from the app turns 2FA on; answers the ten recovery codes (shown once) or None."""
    if not admin.totp_secret or admin.totp_enabled_at:
        return None
    _check_throttle(admin, ip)
    step = _matching_step(admin, _normalize(code))
    if step is None or not _claim_step(admin, step):
        _failed(admin, ip, via, "enrolment")
        return None
    codes = _new_recovery_codes()
    admin.totp_enabled_at = utcnow()
    admin.recovery_codes = [_recovery_hasher.hash(_normalize(c)) for c in codes]
    Admin.objects(id=admin.id).update(set__totp_enabled_at=admin.totp_enabled_at,
                                      set__recovery_codes=admin.recovery_codes)
    record("auth.2fa_enrolled", admin.email, after={"enrolled": True}, actor=admin.email, via=via)
    return codes


def _new_recovery_codes() -> list[str]:
    codes = ["".join(secrets.choice(RECOVERY_ALPHABET) for _ in range(10)) for _ in range(RECOVERY_CODES)]
    return [f"{c[:5]}-{c[5:]}" for c in codes]


def disable(admin: Admin, *, actor: str, action: str = "auth.2fa_disabled") -> None:
    Admin.objects(id=admin.id).update(unset__totp_secret=True, unset__totp_enabled_at=True,
                                      set__recovery_codes=[], unset__totp_last_step=True)
    before = {"enrolled": is_enrolled(admin)}
    admin.totp_secret, admin.totp_enabled_at, admin.recovery_codes, admin.totp_last_step = None, None, [], None
    record(action, admin.email, before=before, after={"enrolled": False}, actor=actor)


def reset_for(target_id: str, actor: Admin, actor_permissions: set[str]) -> Admin:
    """A super admin clears another admin's 2FA (they enrol again at next sign-in if their role needs it)."""
    try:
        target = Admin.objects(id=ObjectId(target_id)).first()
    except (InvalidId, TypeError):
        target = None
    if target is None:
        raise ApiError(404, "There is no admin with that id.")
    if target.id == actor.id:
        raise ApiError(409, "Reset your own two-factor sign-in from your account page, with a current code.")
    if not permissions_for_roles(target.roles) <= actor_permissions:
        raise ApiError(403, "You can reset two-factor sign-in only for admins whose permissions you hold.")
    disable(target, actor=actor.email, action="auth.2fa_reset")
    return target


# --- checking codes ----------------------------------------------------------------------------------------

def _normalize(code: str | None) -> str:
    return re.sub(r"[\s-]", "", code or "").lower()[:64]


def _matching_step(admin: Admin, code: str) -> int | None:
    if not admin.totp_secret or not re.fullmatch(r"\d{6}", code):
        return None
    totp = pyotp.TOTP(admin.totp_secret)
    now = int(time.time()) // STEP_SECONDS
    for step in (now, now - 1, now + 1):  # one step of clock drift either way
        if hmac.compare_digest(totp.generate_otp(step), code):
            return step
    return None


def _claim_step(admin: Admin, step: int) -> bool:
    """Atomically move totp_last_step forward: a code (or an older one) used once is refused afterwards."""
    claimed = Admin.objects(__raw__={"_id": admin.id, "$or": [{"totp_last_step": {"$lt": step}},
                                                              {"totp_last_step": None}]}
                            ).update(set__totp_last_step=step)
    return bool(claimed)


def _use_recovery_code(admin: Admin, code: str) -> bool:
    if len(code) != 10:
        return False
    for stored in admin.recovery_codes or []:
        try:
            _recovery_hasher.verify(stored, code)
        except (VerificationError, InvalidHashError):
            continue
        # pulling the hash is the claim: two requests with the same code cannot both succeed
        return bool(Admin.objects(id=admin.id, recovery_codes=stored).update(pull__recovery_codes=stored))
    return False


def _limits(admin: Admin, ip: str | None) -> list[tuple]:
    config = current_app.config
    return [(parse(config["TWOFA_RATE_LIMIT"]), ("2fa-account", str(admin.id))),
            (parse(config["TWOFA_IP_RATE_LIMIT"]), ("2fa-ip", ip or "-"))]


def _check_throttle(admin: Admin, ip: str | None) -> None:
    if not limiter.enabled:
        return
    for item, keys in _limits(admin, ip):
        if not limiter.limiter.test(item, *keys):
            reset_at = limiter.limiter.get_window_stats(item, *keys).reset_time
            raise Throttled(max(1, int(reset_at - time.time()) + 1))


def _failed(admin: Admin, ip: str | None, via: str, stage: str) -> None:
    if limiter.enabled:
        for item, keys in _limits(admin, ip):
            limiter.limiter.hit(item, *keys)
    record("auth.2fa_failed", admin.email, actor=admin.email, via=via, stage=stage)


def check_code(admin: Admin, code: str | None, *, via: str, ip: str | None) -> str | None:
    """A current TOTP code or an unused recovery code: "totp" or "recovery", None when wrong (audited and
    counted). Raises Throttled before looking at the code once the account or address failed too often."""
    _check_throttle(admin, ip)
    normalized = _normalize(code)
    step = _matching_step(admin, normalized) if is_enrolled(admin) else None
    if step is not None and _claim_step(admin, step):
        return "totp"
    if step is None and is_enrolled(admin) and _use_recovery_code(admin, normalized):
        left = len(admin.recovery_codes or []) - 1
        record("auth.2fa_recovery_used", admin.email, actor=admin.email, via=via, remaining=left)
        return "recovery"
    _failed(admin, ip, via, "sign-in" if step is None else "replayed")
    return None


def check_token_otp(admin: Admin, otp: str | None, ip: str | None) -> None:
    """For POST /api/auth/token after a correct password: raise 401/429 unless the second factor is satisfied."""
    if not second_step_needed(admin):
        return
    if not is_enrolled(admin):
        raise ApiError(401, "This admin must use a second factor: set up two-factor sign-in in the console first.",
                       [{"field": "otp", "message": "two-factor sign-in is required but not set up"}])
    if not otp:
        raise ApiError(401, "A second factor is needed: send the current code from your authenticator app "
                            "(or a recovery code) as \"otp\".", [{"field": "otp", "message": "required"}])
    try:
        method = check_code(admin, otp, via="api", ip=ip)
    except Throttled as throttled:
        raise ApiError(429, "Too many wrong codes. Wait before trying again.",
                       headers={"Retry-After": str(throttled.retry_after)}) from None
    if method is None:
        raise ApiError(401, "That code is not valid (or was already used).",
                       [{"field": "otp", "message": "invalid or already used"}])


# --- keeping unenrolled admins out -------------------------------------------------------------------------

ALLOWED_WHILE_ENROLLING = {"static", "auth.logout", "auth.login", "auth.account_2fa", "auth.account_2fa_enrol",
                           "auth.account_2fa_confirm", "auth.second_factor", "auth.second_factor_enrol"}


def must_enrol_first(admin, endpoint: str | None) -> bool:
    """A signed-in admin whose role requires 2FA but who has none yet may use only the enrolment pages."""
    return (endpoint not in ALLOWED_WHILE_ENROLLING and is_required(admin) and not is_enrolled(admin))

"""Authentication (session, bearer token, ingest key) and authorization (flask-principal needs).

Every view declares how it may be reached: `@permission_required("x.y")`, `@login_only` (any signed-in
admin) or `@public`. A test walks the URL map and fails on any view without a decision.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from datetime import timedelta
from functools import wraps

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError
from blinker import Namespace
from bson import ObjectId
from bson.errors import InvalidId
from flask import abort, current_app, g, has_request_context, redirect, request, session, url_for
from flask_login import AnonymousUserMixin, current_user, login_user, logout_user
from flask_principal import ActionNeed, Identity, Permission, RoleNeed, identity_loaded

from console import cors
from console.accounts import Admin, ApiToken, end_sessions
from console.authz import PERMISSIONS, permissions_for_roles
from console.extensions import login_manager, principal
from console.timeutil import utcnow

_hasher = PasswordHasher()
_signals = Namespace()
# sent (sender: the app, permission=) when a signed-in admin is refused; the audit log listens
permission_denied = _signals.signal("permission-denied")
COMMON_PASSWORDS = {"password", "password123", "1234567890", "qwertyuiop", "letmein123", "changeme123",
                    "admin12345", "welcome123", "iloveyou12", "monkey1234", "passw0rd12"}
MIN_PASSWORD_LENGTH = 10


# --- passwords ---------------------------------------------------------------------------------------------

def hash_password(password: str) -> str:
    return _hasher.hash(password)


def verify_password(password_hash: str, password: str) -> bool:
    try:
        return _hasher.verify(password_hash, password)
    except (VerificationError, InvalidHashError):
        return False


def password_problems(password: str, email: str = "") -> list[str]:
    """Why a password is too weak; empty when it is acceptable."""
    problems = []
    if len(password) < MIN_PASSWORD_LENGTH:
        problems.append(f"must be at least {MIN_PASSWORD_LENGTH} characters")
    if password.lower() in COMMON_PASSWORDS or len(set(password)) < 4:
        problems.append("is too common or too repetitive")
    local = email.split("@")[0].lower()
    if len(local) >= 4 and local in password.lower():
        problems.append("must not contain the email address")
    return problems


def authenticate(email: str, password: str) -> Admin | None:
    """The active admin with this email and password, or None; every failure is in the audit log."""
    email = email.strip().lower()
    admin = Admin.objects(email=email).first()
    if admin is None:
        verify_password(_DUMMY_HASH, password)  # spend the same time for unknown emails
        reason = "unknown account"
    elif not admin.is_active:
        reason = "inactive account"
    elif not verify_password(admin.password_hash, password):
        reason = "wrong password"
    else:
        return admin
    from console.audit import record

    record("auth.login_failed", email[:254], actor="anonymous", reason=reason,
           path=request.path if has_request_context() else None)
    return None


_DUMMY_HASH = _hasher.hash(secrets.token_urlsafe(16))


# --- bearer tokens -----------------------------------------------------------------------------------------

def _token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def issue_token(admin: Admin, ip: str | None = None) -> tuple[str, ApiToken]:
    """Create a bearer token; only its hash is stored."""
    token = "ct_" + secrets.token_urlsafe(32)
    ttl = timedelta(hours=current_app.config["API_TOKEN_TTL_HOURS"])
    record = ApiToken(token_hash=_token_digest(token), admin_id=admin.id, expires_at=utcnow() + ttl, ip=ip,
                      session_version=admin.session_version or 0).save()
    return token, record


def revoke_token(token: str) -> bool:
    return bool(ApiToken.objects(token_hash=_token_digest(token), revoked_at=None).update(set__revoked_at=utcnow()))


def _admin_for_token(token: str) -> Admin | None:
    record = ApiToken.objects(token_hash=_token_digest(token), revoked_at=None, expires_at__gt=utcnow()).first()
    if record is None:
        return None
    admin = Admin.objects(id=record.admin_id, active=True).first()
    if admin is None or (admin.session_version or 0) != (record.session_version or 0):
        return None  # issued before the admin's sessions were ended
    return admin


def valid_ingest_key(key: str | None) -> bool:
    """Constant-time comparison as bytes: a header with non-ASCII characters is simply a wrong key."""
    if not key:
        return False
    sent = key.encode("utf-8", "replace")
    return any(hmac.compare_digest(sent, allowed.encode("utf-8", "replace"))
               for allowed in current_app.config["INGEST_KEY_SET"])


INGEST_KEY_PARAM = "ingest_key"


def _takes_ingest_key() -> bool:
    view = current_app.view_functions.get(request.endpoint) if request.endpoint else None
    return bool(getattr(view, "__ingest_key__", False))


def request_ingest_key() -> tuple[str | None, bool]:
    """(the ingest key sent, whether it came in the query). The `ingest_key` query parameter exists for
    navigator.sendBeacon, which cannot set headers; only views that take an ingest key read it."""
    key = request.headers.get("X-Ingest-Key")
    if key:
        return key, False
    key = request.args.get(INGEST_KEY_PARAM) if _takes_ingest_key() else None
    return key or None, bool(key)


def email_changes_allowed() -> bool:
    """Whether this request may change members' emails through traits: an admin (bearer or session) may; an
    ingest key, from the header or the query, only when it is listed in INGEST_TRUSTED_KEYS."""
    if not str(g.get("auth_method", "")).startswith("ingest"):
        return True
    key = (request_ingest_key()[0] or "").encode("utf-8", "replace")
    return any(hmac.compare_digest(key, trusted.encode("utf-8", "replace"))
               for trusted in current_app.config.get("INGEST_TRUSTED_KEY_SET", ()))


def authenticate_request() -> None:
    """A request carrying a bearer header is authenticated by it alone, never by the session cookie."""
    g.auth_method = "session"
    header = request.headers.get("Authorization", "")
    if not header:
        return
    scheme, _, token = header.partition(" ")
    admin = _admin_for_token(token.strip()) if scheme.lower() == "bearer" and token.strip() else None
    g._login_user = admin or AnonymousUserMixin()
    g.auth_method = "bearer"


def csrf_exempt_request() -> bool:
    """Header-authenticated API calls carry no ambient credentials, so CSRF cannot apply to them."""
    if request.headers.get("Authorization"):
        return True
    if not request.path.startswith("/api/"):
        return False
    # Without a signed-in session there is nothing to forge: the permission check answers 401, not CSRF's 400.
    return bool(request_ingest_key()[0]) or not current_user.is_authenticated


# --- identities ----------------------------------------------------------------------------------------

def _load_identity():
    if current_user.is_authenticated:
        return Identity(current_user.get_id(), g.get("auth_method", "session"))
    return None


def _on_identity_loaded(sender, identity) -> None:
    identity.user = current_user
    if not current_user.is_authenticated:
        return
    for role in current_user.roles:
        identity.provides.add(RoleNeed(role))
    for name in permissions_for_roles(current_user.roles):
        identity.provides.add(ActionNeed(name))


def has_permission(name: str) -> bool:
    """True when the current identity holds the permission; unknown names are always denied."""
    if name not in PERMISSIONS:
        return False
    identity = g.get("identity")
    return identity is not None and Permission(ActionNeed(name)).allows(identity)


def current_permissions() -> set[str]:
    identity = g.get("identity")
    if identity is None:
        return set()
    return {need.value for need in identity.provides if need.method == "action"}


# --- view decorators ---------------------------------------------------------------------------------------

def _wants_json() -> bool:
    return request.path.startswith("/api/")


def _deny_unauthenticated():
    if _wants_json():
        abort(401)
    return redirect(url_for("auth.login", next=request.full_path.rstrip("?")))


def permission_required(name: str, *, allow_ingest_key: bool = False):
    """Allow the view only to admins holding `name` (and, if asked, to a valid X-Ingest-Key)."""
    if name not in PERMISSIONS:
        raise ValueError(f"unknown permission {name!r}")

    def decorator(view):
        @wraps(view)
        def wrapped(*args, **kwargs):
            key, in_query = request_ingest_key() if allow_ingest_key else (None, False)
            if key and not request.headers.get("Authorization"):
                if not valid_ingest_key(key):
                    abort(401)
                if in_query and not cors.beacon_origin_ok():
                    abort(403, "This origin may not send activity: add it to INGEST_CORS_ORIGINS.")
                g.auth_method = "ingest_query" if in_query else "ingest"
                return view(*args, **kwargs)
            if not current_user.is_authenticated:
                return _deny_unauthenticated()
            if not has_permission(name):
                permission_denied.send(current_app._get_current_object(), permission=name)
                abort(403)
            return view(*args, **kwargs)

        wrapped.__permission__ = name
        wrapped.__ingest_key__ = allow_ingest_key
        return wrapped

    return decorator


def login_only(view):
    """Allow any signed-in admin (their own account, logout, the dashboard shell)."""

    @wraps(view)
    def wrapped(*args, **kwargs):
        if not current_user.is_authenticated:
            return _deny_unauthenticated()
        return view(*args, **kwargs)

    wrapped.__permission__ = "@login"
    return wrapped


def public(view):
    """Mark a view as deliberately reachable without signing in."""
    view.__permission__ = "@public"
    return view


def csrf_exempt(view):
    """Skip the CSRF check: for JSON-only or token-authenticated public endpoints, which a cross-site form
    cannot forge (a JSON content type needs a CORS preflight that this app never grants)."""
    view.__csrf_exempt__ = True
    return view


def view_permission(view) -> str | None:
    return getattr(view, "__permission__", None)


# --- wiring ------------------------------------------------------------------------------------------------

SESSION_VERSION_KEY = "_sv"


def start_session(admin: Admin) -> None:
    """Sign the admin in to this browser under their current session version."""
    login_user(admin)
    session[SESSION_VERSION_KEY] = admin.session_version or 0


def end_session(admin: Admin | None = None) -> None:
    """Sign out: this browser, and (given the admin) every other session and bearer token of theirs."""
    if admin is not None:
        end_sessions(admin.id)
    logout_user()
    session.pop(SESSION_VERSION_KEY, None)


@login_manager.user_loader
def _load_admin(admin_id: str):
    try:
        oid = ObjectId(admin_id)
    except (InvalidId, TypeError):
        return None
    admin = Admin.objects(id=oid, active=True).first()
    if admin is None or session.get(SESSION_VERSION_KEY) != (admin.session_version or 0):
        return None  # a cookie from before logout, a password change, deactivation or a role removal
    return admin


@login_manager.unauthorized_handler
def _unauthorized():
    return _deny_unauthenticated()


def init_app(app) -> None:
    """Flask-Login first, then our bearer hook, then Principal (it runs its loaders in before_request)."""
    login_manager.init_app(app)
    login_manager.login_view = "auth.login"
    login_manager.session_protection = "basic"
    app.before_request(authenticate_request)
    principal.init_app(app)
    principal.identity_loader(_load_identity)
    identity_loaded.connect_via(app)(_on_identity_loaded)
    app.extensions["authz_identity_handler"] = _on_identity_loaded  # keep a strong reference (blinker is weak)

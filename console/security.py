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
from bson import ObjectId
from bson.errors import InvalidId
from flask import abort, current_app, g, redirect, request, session, url_for
from flask_login import AnonymousUserMixin, current_user, login_user, logout_user
from flask_principal import ActionNeed, Identity, Permission, RoleNeed, identity_loaded

from console.accounts import Admin, ApiToken, end_sessions
from console.authz import PERMISSIONS, permissions_for_roles
from console.extensions import login_manager, principal
from console.timeutil import utcnow

_hasher = PasswordHasher()
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
    admin = Admin.objects(email=email.strip().lower()).first()
    if admin is None:
        verify_password(_DUMMY_HASH, password)  # spend the same time for unknown emails
        return None
    if not admin.is_active or not verify_password(admin.password_hash, password):
        return None
    return admin


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
    if not key:
        return False
    return any(hmac.compare_digest(key, allowed) for allowed in current_app.config["INGEST_KEY_SET"])


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
    return bool(request.headers.get("X-Ingest-Key")) or not current_user.is_authenticated


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
            if allow_ingest_key and request.headers.get("X-Ingest-Key") and not request.headers.get("Authorization"):
                if not valid_ingest_key(request.headers["X-Ingest-Key"]):
                    abort(401)
                g.auth_method = "ingest"
                return view(*args, **kwargs)
            if not current_user.is_authenticated:
                return _deny_unauthenticated()
            if not has_permission(name):
                from console.audit import log_denied

                log_denied(name)
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

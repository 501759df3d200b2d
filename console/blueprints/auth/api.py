"""Bearer tokens for the JSON API."""

from datetime import datetime

from flask import g as request_globals
from flask import request
from flask_login import current_user
from pydantic import BaseModel, Field

from console.blueprints.auth import bp, twofactor
from console.blueprints.auth.limits import failed_auth_limits
from console.blueprints.auth.signin import issue_api_token
from console.errors import ApiError
from console.http import LOGIN, endpoint
from console.security import authenticate, current_permissions, revoke_token
from console.validation import RequestModel


class TokenRequest(RequestModel):
    email: str = Field(min_length=3, max_length=254)
    password: str = Field(min_length=1, max_length=200)
    otp: str | None = Field(default=None, max_length=64, description="a current TOTP code or a recovery code, "
                            "for an admin who uses (or must use) two-factor sign-in")


class TokenOut(BaseModel):
    token: str
    expires_at: datetime
    token_type: str = "Bearer"


@endpoint(bp, "/api/auth/token", methods=["POST"], permission=None, body=TokenRequest, response=TokenOut,
          summary="Exchange email and password for a bearer token", tags=["auth"], responses={401: "", 429: ""},
          csrf=False, rate_limit=failed_auth_limits("TOKEN_RATE_LIMIT"))
def create_token(body: TokenRequest):
    """Tokens expire after API_TOKEN_TTL_HOURS; only their hash is stored. Repeated failures answer 429."""
    admin = authenticate(body.email, body.password)
    if admin is None:
        raise ApiError(401, "That email and password do not match an active admin.")
    twofactor.check_token_otp(admin, body.otp, request.remote_addr)  # 401 unless a second factor, when needed
    token, stored = issue_api_token(admin, request.remote_addr)
    return {"token": token, "expires_at": stored.expires_at, "token_type": "Bearer"}


@endpoint(bp, "/api/auth/token", methods=["DELETE"], permission=None, status=204,
          summary="Revoke the bearer token this request carries", tags=["auth"], responses={401: ""})
def delete_token():
    """Sign a program out: the token stops working at once."""
    header = request.headers.get("Authorization", "")
    scheme, _, token = header.partition(" ")
    if request_globals.get("auth_method") != "bearer" or scheme.lower() != "bearer" or not revoke_token(token.strip()):
        raise ApiError(401, "Send the bearer token to revoke in the Authorization header.")
    return None


class MeOut(BaseModel):
    id: str
    email: str
    name: str | None
    roles: list[str]
    permissions: list[str]


@endpoint(bp, "/api/auth/me", permission=LOGIN, response=MeOut, tags=["auth"],
          summary="The signed-in admin, their roles and effective permissions")
def me():
    """What the frontend needs to shape its own views (AdminContext)."""
    return {"id": str(current_user.id), "email": current_user.email, "name": current_user.name,
            "roles": list(current_user.roles), "permissions": sorted(current_permissions())}


# --- two-factor sign-in (logic in twofactor.py) ----------------------------------------------------------

class TwoFactorOut(BaseModel):
    admin_id: str
    email: str
    enrolled: bool
    required: bool
    enabled_at: datetime | None
    recovery_codes_left: int


def _out(admin) -> dict:
    state = twofactor.status(admin)
    return {"admin_id": str(admin.id), "email": admin.email, "enrolled": state["enrolled"],
            "required": state["required"], "enabled_at": state["enabled_at"],
            "recovery_codes_left": state["recovery_codes_left"]}


@endpoint(bp, "/api/auth/2fa", permission=LOGIN, response=TwoFactorOut, tags=["auth"],
          summary="Whether the signed-in admin uses two-factor sign-in, and must")
def twofactor_status():
    """Enrolment happens in the console (it shows a QR code); this reports the state."""
    return _out(current_user)


@endpoint(bp, "/api/phase14/admin/<admin_id>/2fa/reset", methods=["POST"], permission="roles.assign",
          response=TwoFactorOut, tags=["roles"], responses={404: "", 409: "", 403: ""},
          summary="Reset another admin's two-factor sign-in")
def reset_twofactor(admin_id: str):
    """Clears the secret and recovery codes (audited as auth.2fa_reset); an admin whose role requires 2FA
    enrols again at their next sign-in. Only for admins whose permissions the caller holds; not yourself."""
    target = twofactor.reset_for(admin_id, current_user._get_current_object(), current_permissions())
    return _out(target)

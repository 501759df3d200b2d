"""Two-factor JSON endpoints: an admin's own status, and a reset of another admin's 2FA."""

from datetime import datetime

from flask_login import current_user
from pydantic import BaseModel

from console.blueprints.auth import bp, twofactor
from console.http import LOGIN, endpoint
from console.security import current_permissions


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

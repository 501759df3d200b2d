"""The preference center: a signed link in every email (`/p/<token>`, no login) where a member turns each
category and channel on or off, sets quiet hours and resubscribes. Security notices stay on."""

from __future__ import annotations

from flask import current_app
from itsdangerous import BadSignature, URLSafeTimedSerializer

from console.blueprints.communication import prefs, suppressions

SALT = "mail-preferences"
CATEGORY_LABELS = {
    "product": ("Product news", "Welcome messages and what is new on the platform"),
    "events": ("Events", "Registrations, reminders and changes to events you joined"),
    "volunteering": ("Volunteering", "Your volunteer applications and their outcome"),
    "submissions": ("Your submissions", "When something you submitted is approved or not"),
    "donations": ("Donations", "Receipts for your donations"),
    "digest": ("Weekly digest", "The week's most-read posts"),
    "marketing": ("News and invitations", "Occasional news, and a nudge when we have not seen you"),
    "security": ("Security notices", "Sign-ins, password and address changes; always on to protect you"),
}
CHANNEL_LABELS = {"email": "Email", "sms": "Text messages (SMS)"}


def _serializer() -> URLSafeTimedSerializer:
    return URLSafeTimedSerializer(current_app.config["SECRET_KEY"], salt=SALT)


def make_token(user_id: str | None, email: str | None) -> str:
    return _serializer().dumps({"u": user_id} if user_id else {"e": (email or "").lower()})


def preferences_url(user_id: str | None, email: str | None) -> str:
    from console.blueprints.communication.tracking import public_url

    return public_url("tracking.preference_center_page", token=make_token(user_id, email))


def read_token(token: str) -> dict | None:
    """{"user_id"} or {"email"} the token names, or None when forged, malformed or older than the limit."""
    max_age = int(current_app.config["PREFERENCES_LINK_DAYS"]) * 86400
    try:
        payload = _serializer().loads(token, max_age=max_age)
    except (BadSignature, TypeError, ValueError):
        return None
    if isinstance(payload, dict) and isinstance(payload.get("u"), str) and payload["u"]:
        return {"user_id": payload["u"], "email": None}
    if isinstance(payload, dict) and isinstance(payload.get("e"), str) and "@" in payload["e"]:
        return {"user_id": None, "email": payload["e"]}
    return None


def _member_email(user_id: str) -> str | None:
    from console.members import Member

    doc = Member._get_collection().find_one({"user_id": user_id}, {"email": 1})
    return (doc or {}).get("email")


def view(who: dict) -> dict:
    """What the page shows: every category and channel with its state, quiet hours, and whether mail is off."""
    email = who["email"] or (_member_email(who["user_id"]) if who["user_id"] else None)
    suppression = suppressions.get(email) if email else None
    out = {"user_id": who["user_id"], "email": email, "suppression": suppression,
           "can_resubscribe": bool(suppression and suppression.get("reason") in suppressions.MEMBER_LIFTABLE)}
    if who["user_id"]:
        stored = prefs.get_preferences(who["user_id"])
        out["categories"] = [{"name": name, "label": CATEGORY_LABELS.get(name, (name.title(), ""))[0],
                              "description": CATEGORY_LABELS.get(name, ("", ""))[1], "on": bool(on),
                              "locked": name == prefs.ALWAYS_ON} for name, on in stored["categories"].items()]
        out["channels"] = [{"name": name, "label": CHANNEL_LABELS.get(name, name), "on": bool(on)}
                           for name, on in stored["channels"].items()]
        out["quiet_hours"] = stored["quiet_hours"] or {}
    return out


def apply(who: dict, form: dict) -> str:
    """Save the page's form; returns the message to show. `form["action"]`: save | resubscribe | unsubscribe_all."""
    actor = f"member:{who['user_id'] or who['email']} (preference center)"
    email = who["email"] or (_member_email(who["user_id"]) if who["user_id"] else None)
    action = form.get("action") or "save"
    if action == "resubscribe":
        if email:
            suppressions.lift_for_member(email, actor)
        if who["user_id"]:
            prefs.save_preferences(who["user_id"], {"channels": dict.fromkeys(prefs.CHANNELS, True),
                                                    "categories": dict.fromkeys(prefs.CATEGORIES, True)}, actor)
        return "Welcome back: you will get our emails again."
    if action == "unsubscribe_all":
        if who["user_id"]:
            off = {name: False for name in prefs.CATEGORIES if name != prefs.ALWAYS_ON}
            prefs.save_preferences(who["user_id"], {"categories": off}, actor)
            return "You will get no more emails from us, except security notices about your account."
        if email:
            suppressions.add(email, "unsubscribed", "preference center", actor=actor)
        return "You will get no more emails from us."
    if not who["user_id"]:
        return "Nothing to save."
    data: dict = {"categories": {name: name == prefs.ALWAYS_ON or form.get(f"category_{name}") == "on"
                                 for name in prefs.CATEGORIES},
                  "channels": {name: form.get(f"channel_{name}") == "on" for name in prefs.CHANNELS}}
    start, end = (form.get("quiet_start") or "").strip(), (form.get("quiet_end") or "").strip()
    if start and end:
        data["quiet_hours"] = {"start": start, "end": end, "timezone": (form.get("quiet_timezone") or "UTC").strip()}
    elif not start and not end:
        data["quiet_hours"] = None
    else:
        from console.errors import ApiError

        raise ApiError(422, "Give both a start and an end for quiet hours, or neither.",
                       [{"field": "quiet_hours", "message": "start and end go together"}])
    prefs.save_preferences(who["user_id"], data, actor)
    return "Your preferences are saved."

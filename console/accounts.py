"""Console admins and their API tokens (the kernel's identity records; the roles feature manages them)."""

from __future__ import annotations

from flask_login import UserMixin
from mongoengine import (
    BooleanField,
    DateTimeField,
    Document,
    IntField,
    ListField,
    ObjectIdField,
    StringField,
)
from pymongo import ReturnDocument

from console.timeutil import utcnow


class Admin(UserMixin, Document):
    email = StringField(required=True, unique=True, max_length=254)
    name = StringField(max_length=200)
    password_hash = StringField(required=True)
    roles = ListField(StringField(max_length=64))
    active = BooleanField(default=True)
    created_at = DateTimeField(default=utcnow)
    last_login_at = DateTimeField()
    password_changed_at = DateTimeField(default=utcnow)
    # two-factor sign-in (console/blueprints/auth/twofactor.py): a secret without totp_enabled_at is an
    # enrolment not yet confirmed; recovery_codes hold argon2 hashes; totp_last_step refuses a replayed code
    totp_secret = StringField(max_length=64)
    totp_enabled_at = DateTimeField()
    recovery_codes = ListField(StringField(max_length=200))
    totp_last_step = IntField()
    # Every session and bearer token carries the version it was issued under; bumping it ends them all at once.
    session_version = IntField(default=0)
    invite_nonce = StringField()  # set while an invitation is open; its link must carry it
    invited_at = DateTimeField()
    invited_by = StringField()
    reset_nonce = StringField()  # set while a password-reset link is open
    deactivated_at = DateTimeField()

    meta = {"collection": "admins", "indexes": ["roles"], "strict": False}

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def get_id(self) -> str:
        return str(self.id)

    @property
    def display_name(self) -> str:
        return self.name or self.email


def end_sessions(admin_id) -> int:
    """End every session and bearer token of one admin (logout, password change, deactivation, role removal).

    Returns the new session version. Tokens are also marked revoked, so the token list says why they stopped.
    """
    now = utcnow()
    updated = Admin._get_collection().find_one_and_update(
        {"_id": admin_id}, {"$inc": {"session_version": 1}}, projection={"session_version": 1},
        return_document=ReturnDocument.AFTER)
    ApiToken._get_collection().update_many({"admin_id": admin_id, "revoked_at": None}, {"$set": {"revoked_at": now}})
    return int((updated or {}).get("session_version", 0))


class ApiToken(Document):
    """A bearer token; only its SHA-256 is stored."""

    token_hash = StringField(required=True, unique=True)
    admin_id = ObjectIdField(required=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(required=True)
    revoked_at = DateTimeField()
    last_used_at = DateTimeField()
    ip = StringField()
    session_version = IntField(default=0)  # the admin's session version when issued

    meta = {
        "collection": "api_tokens",
        "indexes": ["admin_id", {"fields": ["expires_at"], "expireAfterSeconds": 7 * 24 * 3600}],
    }

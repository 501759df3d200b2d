"""Admins of the console, their API tokens, role definitions and the audit log."""

from __future__ import annotations

from flask_login import UserMixin
from mongoengine import (
    BooleanField,
    DateTimeField,
    DictField,
    Document,
    DynamicField,
    IntField,
    ListField,
    ObjectIdField,
    StringField,
)

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

    meta = {"collection": "admins", "indexes": ["roles"]}

    @property
    def is_active(self) -> bool:
        return bool(self.active)

    def get_id(self) -> str:
        return str(self.id)

    @property
    def display_name(self) -> str:
        return self.name or self.email


class ApiToken(Document):
    """A bearer token; only its SHA-256 is stored."""

    token_hash = StringField(required=True, unique=True)
    admin_id = ObjectIdField(required=True)
    created_at = DateTimeField(default=utcnow)
    expires_at = DateTimeField(required=True)
    revoked_at = DateTimeField()
    last_used_at = DateTimeField()
    ip = StringField()

    meta = {
        "collection": "api_tokens",
        "indexes": ["admin_id", {"fields": ["expires_at"], "expireAfterSeconds": 7 * 24 * 3600}],
    }


class Role(Document):
    name = StringField(required=True, unique=True, max_length=64)
    description = StringField(max_length=500, default="")
    permissions = ListField(StringField(max_length=64))
    builtin = BooleanField(default=False)
    updated_at = DateTimeField(default=utcnow)

    meta = {"collection": "roles"}


class AuthzState(Document):
    """A counter bumped on every role or assignment change, so every process drops its cache.

    The same collection holds the role-assignment lock (key "assignment-lock": holder and lease end).
    """

    key = StringField(primary_key=True)
    version = IntField(default=0)
    holder = StringField()
    until = DateTimeField()

    meta = {"collection": "authz_state"}


class AuditLog(Document):
    """Append-only record of security-relevant changes."""

    actor = StringField(required=True)
    actor_id = ObjectIdField()
    action = StringField(required=True, max_length=100)
    target = StringField(max_length=300)
    before = DynamicField()
    after = DynamicField()
    at = DateTimeField(default=utcnow, required=True)
    ip = StringField(max_length=64)
    details = DictField()

    meta = {"collection": "audit_log", "indexes": ["-at", ("actor", "-at"), ("target", "-at"), ("action", "-at")]}

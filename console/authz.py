"""The authorization state below both `security` and the roles feature: the permission catalog, the
built-in roles (CONTRACT.md, "Roles"), role documents, the authz version every process checks, seeding."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app, g
from mongoengine import BooleanField, DateTimeField, Document, IntField, ListField, StringField

from console.timeutil import utcnow


@dataclass(frozen=True)
class PermissionDef:
    name: str
    group: str
    description: str


CATALOG: tuple[PermissionDef, ...] = (
    PermissionDef("blogs.create", "content", "Write new blog posts"),
    PermissionDef("blogs.edit", "content", "Edit and publish blog posts"),
    PermissionDef("events.manage", "content", "Create and manage events"),
    PermissionDef("content.manage", "content", "Manage pages and other content"),
    PermissionDef("submissions.review", "moderation", "Review and approve member submissions"),
    PermissionDef("volunteers.manage", "moderation", "Manage volunteers"),
    PermissionDef("analytics.view", "analytics", "See engagement and retention analytics"),
    PermissionDef("reports.view", "analytics", "See reports"),
    PermissionDef("engagement.track", "analytics", "Send activity events"),
    PermissionDef("campaigns.send", "analytics", "Start re-engagement campaigns"),
    PermissionDef("templates.view", "communication", "See email templates"),
    PermissionDef("templates.manage", "communication", "Create, edit and delete email templates"),
    PermissionDef("communication.view", "communication", "See the mail queue, tracking, history and preferences"),
    PermissionDef("communication.send", "communication", "Send emails and batches"),
    PermissionDef("communication.manage_preferences", "communication", "Change members' notification preferences"),
    PermissionDef("roles.view", "roles", "See roles, the permission matrix and admins' permissions"),
    PermissionDef("roles.assign", "roles", "Assign roles to admins"),
    PermissionDef("roles.manage", "roles", "Create, change and delete roles"),
    PermissionDef("members.erase", "analytics", "Export a member's data and erase a member"),
    PermissionDef("hardening.view", "hardening", "See security, health, errors and performance"),
    PermissionDef("hardening.optimize", "hardening", "Run optimization and maintenance tasks"),
)

PERMISSIONS: frozenset[str] = frozenset(p.name for p in CATALOG)
PERMISSION_GROUPS: tuple[str, ...] = ("content", "moderation", "analytics", "communication", "roles", "hardening")

_CONTENT = {"blogs.create", "blogs.edit", "events.manage", "content.manage"}
_MODERATION = {"submissions.review", "volunteers.manage"}
_ANALYTICS = {"analytics.view", "reports.view"}

BUILTIN_ROLES: dict[str, dict] = {
    "super_admin": {"description": "Everything, including role definitions and destructive maintenance.",
                    "permissions": set(PERMISSIONS)},
    "admin": {"description": "Runs the platform day to day: everything but role definitions and optimize tasks.",
              "permissions": set(PERMISSIONS) - {"roles.manage", "hardening.optimize"}},
    "content_manager": {"description": "Blogs, events, content and email templates.",
                        "permissions": _CONTENT | {"templates.view", "templates.manage"}},
    "moderator": {"description": "Reviews submissions, manages volunteers, sees communication.",
                  "permissions": _MODERATION | {"communication.view"}},
    "analyst": {"description": "Read-only analytics, reports, templates and communication.",
                "permissions": _ANALYTICS | {"templates.view", "communication.view"}},
}

SUPER_ADMIN = "super_admin"


class Role(Document):
    name = StringField(required=True, unique=True, max_length=64)
    description = StringField(max_length=500, default="")
    permissions = ListField(StringField(max_length=64))
    builtin = BooleanField(default=False)
    updated_at = DateTimeField(default=utcnow)
    version = IntField(default=0)  # bumped on every permission write; a stale version is refused (409)

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


def authz_version() -> int:
    state = AuthzState.objects(key="roles").only("version").first()
    return state.version if state else 0


def bump_authz_version() -> None:
    AuthzState.objects(key="roles").update_one(inc__version=1, upsert=True)


def role_permissions() -> dict[str, frozenset[str]]:
    """Role name → permissions, cached per process and dropped when the version changes."""
    cache = current_app.extensions.setdefault("role_cache", {"version": None, "roles": {}})
    if "role_cache_checked" in g:
        return cache["roles"]
    version = authz_version()
    if cache["version"] != version or not cache["roles"]:
        cache["roles"] = {role.name: frozenset(role.permissions) & PERMISSIONS for role in Role.objects}
        cache["version"] = version
    g.role_cache_checked = True
    return cache["roles"]


def permissions_for_roles(roles) -> set[str]:
    table = role_permissions()
    out: set[str] = set()
    for name in roles or ():
        out |= table.get(name, frozenset())
    return out


def seed_roles() -> int:
    """Insert the built-in roles that are missing; never overwrite an admin's changes."""
    created = 0
    for name, spec in BUILTIN_ROLES.items():
        result = Role._get_collection().update_one(
            {"name": name},
            {"$setOnInsert": {"name": name, "description": spec["description"],
                              "permissions": sorted(spec["permissions"]), "builtin": True, "updated_at": utcnow()}},
            upsert=True,
        )
        created += bool(result.upserted_id)
    # super_admin always holds the whole catalog, including permissions added in later releases
    Role._get_collection().update_one({"name": "super_admin"}, {"$set": {"permissions": sorted(PERMISSIONS)}})
    if created:
        bump_authz_version()
    return created

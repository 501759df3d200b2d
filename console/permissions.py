"""The permission catalog and the built-in roles (CONTRACT.md, "Roles")."""

from __future__ import annotations

from dataclasses import dataclass


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

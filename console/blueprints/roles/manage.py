"""Roles, the permission matrix and role assignment, with the rules that keep them safe.

Every change is audited and bumps the authz version, so every process drops its role cache and the next
request of each affected admin sees the change. Assignments run under a lock document, so the
"at least one active super_admin" rule holds even when two admins demote each other at the same time.
"""

from __future__ import annotations

import random
import re
import secrets
import time
from contextlib import contextmanager
from datetime import timedelta

from mongoengine import NotUniqueError
from pymongo.errors import DuplicateKeyError

from console.accounts import Admin, end_sessions
from console.audit import record
from console.authz import BUILTIN_ROLES, CATALOG, PERMISSIONS, SUPER_ADMIN, AuthzState, Role, bump_authz_version
from console.errors import ApiError, validation_error
from console.pagination import get_or_404
from console.timeutil import utcnow

ROLE_NAME_PATTERN = r"^[a-z][a-z0-9_]{1,39}$"
_ROLE_NAME = re.compile(ROLE_NAME_PATTERN)
_CATALOG_ORDER = {p.name: index for index, p in enumerate(CATALOG)}
LOCK_KEY = "assignment-lock"
LOCK_LEASE = timedelta(seconds=10)
LOCK_WAIT_SECONDS = 5.0


def ordered(permissions) -> list[str]:
    """Permissions in catalog order (how the matrix shows them)."""
    return sorted(set(permissions), key=lambda name: _CATALOG_ORDER.get(name, len(_CATALOG_ORDER)))


def _role_order(name: str) -> tuple:
    builtin = list(BUILTIN_ROLES)
    return (0, builtin.index(name), "") if name in builtin else (1, 0, name)


# --- reads ---------------------------------------------------------------------------------------------------

def role_table() -> dict[str, set[str]]:
    """Role name → permissions, straight from MongoDB (decisions must not use a cache)."""
    return {role.name: set(role.permissions) & PERMISSIONS for role in Role.objects.only("name", "permissions")}


def assignment_counts() -> dict[str, int]:
    pipeline = [{"$unwind": "$roles"}, {"$group": {"_id": "$roles", "n": {"$sum": 1}}}]
    return {row["_id"]: row["n"] for row in Admin.objects.aggregate(pipeline)}


def role_dict(role: Role, admins: int | None = None) -> dict:
    out = {"name": role.name, "description": role.description or "", "permissions": ordered(role.permissions),
           "builtin": bool(role.builtin), "updated_at": role.updated_at, "version": int(role.version or 0)}
    if admins is not None:
        out["admins"] = admins
    return out


def list_roles() -> list[dict]:
    counts = assignment_counts()
    roles = sorted(Role.objects, key=lambda r: _role_order(r.name))
    return [role_dict(role, counts.get(role.name, 0)) for role in roles]


def get_role(name: str) -> Role:
    role = Role.objects(name=name).first() if isinstance(name, str) else None
    if role is None:
        raise ApiError(404, f"No role is named {name!r}.")
    return role


def matrix() -> dict:
    """Every role by every permission, each cell present."""
    roles = list_roles()
    return {
        "roles": [role["name"] for role in roles],
        "permissions": [{"name": p.name, "group": p.group, "description": p.description} for p in CATALOG],
        "matrix": {role["name"]: {p.name: p.name in role["permissions"] for p in CATALOG} for role in roles},
        "role_details": roles,
    }


def effective_permissions(roles) -> list[str]:
    table = role_table()
    out: set[str] = set()
    for name in roles or ():
        out |= table.get(name, set())
    return ordered(out)


def admin_dict(admin: Admin) -> dict:
    return {"id": str(admin.id), "email": admin.email, "name": admin.name, "roles": list(admin.roles),
            "active": bool(admin.active), "last_login_at": admin.last_login_at, "created_at": admin.created_at}


def get_admin(admin_id: str) -> Admin:
    return get_or_404(Admin, admin_id)


def admin_permissions(admin: Admin) -> dict:
    return {"admin_id": str(admin.id), "email": admin.email, "roles": list(admin.roles),
            "permissions": effective_permissions(admin.roles)}


def admins_queryset(q: str | None = None, role: str | None = None):
    queryset = Admin.objects
    if q:
        queryset = queryset.filter(__raw__={"$or": [{"email": {"$regex": re.escape(q.lower())}},
                                                    {"name": {"$regex": re.escape(q), "$options": "i"}}]})
    if role:
        queryset = queryset.filter(roles=role)
    return queryset


def grantable_roles(actor_permissions: set[str]) -> list[str]:
    """Roles whose every permission the actor holds: the only ones they may grant or remove."""
    table = role_table()
    return sorted((name for name, perms in table.items() if perms <= actor_permissions), key=_role_order)


# --- role definitions ----------------------------------------------------------------------------------------

def _check_permission_names(permissions: list[str], field: str = "permissions") -> list[str]:
    errors = [{"field": f"{field}.{index}", "message": f"unknown permission {name!r}"}
              for index, name in enumerate(permissions) if name not in PERMISSIONS]
    if errors:
        raise ApiError(422, "Some permissions are not in the catalog.", errors)
    return ordered(permissions)


def _check_actor_holds(permissions, actor_permissions: set[str], what: str) -> None:
    missing = ordered(set(permissions) - actor_permissions)
    if missing:
        raise ApiError(403, f"You can only {what} permissions you hold yourself; you lack {', '.join(missing)}.")


def _stale(role: Role) -> ApiError:
    role.reload()
    return ApiError(409, f"Someone changed {role.name!r} meanwhile (now version {role.version or 0}); review the "
                         "change again.", [{"field": "version", "message": "stale"}])


def set_role_permissions(name: str, permissions: list[str], actor_permissions: set[str],
                         version: int | None = None) -> dict:
    """Replace a role's permissions. super_admin always holds everything and cannot be changed.

    The write is a compare-and-set on the role's version: the one given (409 when stale) or, without one, the
    version read here, so two concurrent edits can never silently undo each other.
    """
    role = get_role(name)
    if role.name == SUPER_ADMIN:
        raise ApiError(403, "The super_admin role always holds every permission; it cannot be changed.")
    current = int(role.version or 0)
    if version is not None and version != current:
        raise _stale(role)
    wanted = _check_permission_names(permissions)
    before = ordered(role.permissions)
    _check_actor_holds(set(wanted) ^ set(before), actor_permissions, "grant or withdraw")
    if wanted == before:
        return role_dict(role)
    match = {"_id": role.id, **({"version": current} if current else {"version": {"$in": [0, None]}})}
    result = Role._get_collection().update_one(match, {"$set": {"permissions": wanted, "updated_at": utcnow()},
                                                       "$inc": {"version": 1}})
    if not result.modified_count:
        raise _stale(role)
    bump_authz_version()
    record("role.permissions_changed", f"role:{role.name}", {"permissions": before}, {"permissions": wanted},
           added=ordered(set(wanted) - set(before)), removed=ordered(set(before) - set(wanted)))
    role.reload()
    return role_dict(role)


def toggle_permission(name: str, permission: str, actor_permissions: set[str], version: int | None = None) -> bool:
    """Flip one matrix cell; returns whether the role now holds the permission."""
    if permission not in PERMISSIONS:
        raise validation_error("permission", f"unknown permission {permission!r}")
    role = get_role(name)
    current = set(role.permissions)
    wanted = current - {permission} if permission in current else current | {permission}
    set_role_permissions(name, sorted(wanted), actor_permissions, version)
    return permission in wanted


def preview_permissions(name: str, permissions: list[str], pages: list[tuple[str, str | None]]) -> dict:
    """What saving would change, before saving: per admin holding the role, the permissions and pages they would
    gain or lose (other roles they hold are taken into account). `pages` are (label, permission) pairs."""
    role = get_role(name)
    wanted = set(_check_permission_names(permissions))
    table = role_table()
    after_table = {**table, role.name: wanted}
    admins = []
    for admin in Admin.objects(roles=role.name, active=True).only("email", "roles"):
        before = set().union(*(table.get(r, set()) for r in admin.roles))
        after = set().union(*(after_table.get(r, set()) for r in admin.roles))
        if before != after:
            admins.append({"email": admin.email, "gains": ordered(after - before), "loses": ordered(before - after),
                           "pages_gained": sorted({label for label, perm in pages if perm in after - before}),
                           "pages_lost": sorted({label for label, perm in pages if perm in before - after})})
    old = set(role.permissions)
    return {"role": role.name, "version": int(role.version or 0), "added": ordered(wanted - old),
            "removed": ordered(old - wanted), "admins": admins,
            "pages_gained": sorted({label for label, perm in pages if perm in wanted - old}),
            "pages_lost": sorted({label for label, perm in pages if perm in old - wanted})}


def create_role(name: str, description: str, permissions: list[str], actor_permissions: set[str]) -> dict:
    if not _ROLE_NAME.match(name or ""):
        raise validation_error("name", "Use 2-40 lowercase letters, digits or underscores, starting with a letter.")
    wanted = _check_permission_names(permissions)
    _check_actor_holds(wanted, actor_permissions, "grant")
    try:
        role = Role(name=name, description=description or "", permissions=wanted, builtin=False).save()
    except NotUniqueError:
        raise ApiError(409, f"A role named {name!r} already exists.", [{"field": "name", "message": "taken"}]) from None
    bump_authz_version()
    record("role.created", f"role:{name}", None, {"description": role.description, "permissions": wanted})
    return role_dict(role, 0)


def delete_role(name: str) -> None:
    role = get_role(name)
    if role.builtin or role.name in BUILTIN_ROLES:
        raise ApiError(403, f"{name!r} is a built-in role; built-in roles cannot be deleted.")
    with assignment_lock():  # no assignment of this role can slip in between the check and the delete
        holders = Admin.objects(roles=name).count()
        if holders:
            raise ApiError(409, f"{holders} admin(s) still hold {name!r}; reassign them first.")
        Role.objects(id=role.id).delete()
    bump_authz_version()
    record("role.deleted", f"role:{name}", {"description": role.description, "permissions": ordered(role.permissions)},
           None)


# --- assignment ----------------------------------------------------------------------------------------------

@contextmanager
def assignment_lock(wait: float = LOCK_WAIT_SECONDS):
    """A lease on one document: assignments run one at a time, so the rules see the state they change.

    Taking it is one conditional upsert: it matches only a free (or expired) lock; when the lock is held, the
    upsert collides with the existing _id and raises DuplicateKeyError, and we retry.
    """
    collection = AuthzState._get_collection()
    token = secrets.token_hex(8)
    deadline = time.monotonic() + wait
    while True:
        now = utcnow()
        try:
            collection.update_one({"_id": LOCK_KEY, "$or": [{"holder": None}, {"until": {"$lt": now}}]},
                                  {"$set": {"holder": token, "until": now + LOCK_LEASE}}, upsert=True)
            break
        except DuplicateKeyError:
            if time.monotonic() > deadline:
                raise ApiError(409, "Another role change is in progress; try again in a moment.") from None
            time.sleep(0.005 + random.random() * 0.02)
    try:
        yield
    finally:
        collection.update_one({"_id": LOCK_KEY, "holder": token}, {"$set": {"holder": None, "until": None}})


def _refuse(target: Admin, detail: str, **details) -> ApiError:
    record("admin.roles_change_refused", target.email, {"roles": list(target.roles)}, None, reason=detail, **details)
    return ApiError(403, detail)


def assign_roles(actor_id, admin_id: str, *, add: str | None = None, replace: list[str] | None = None) -> dict:
    """Add one role (`add`) or replace the set (`replace`) of an admin; returns the admin with roles.

    Refused (403) when the actor would change their own roles, grant or remove a role with permissions the actor
    does not hold, or leave no active super_admin. Unknown roles are 422.
    """
    names = [add] if add is not None else list(replace or [])
    target = get_admin(admin_id)
    with assignment_lock():  # role definitions read under the lock too: delete_role takes it as well
        table = role_table()
        unknown = [{"field": "role" if add is not None else f"roles.{index}", "message": f"unknown role {name!r}"}
                   for index, name in enumerate(names) if name not in table]
        if unknown:
            raise ApiError(422, "Some roles do not exist.", unknown)
        target.reload()
        actor = Admin.objects(id=actor_id, active=True).first()  # fresh: a concurrent change may have demoted them
        if actor is None:
            raise ApiError(403, "Your account is no longer active.")
        if actor.id == target.id:
            raise _refuse(target, "You cannot change your own roles; ask another admin.")
        actor_permissions = set()
        for name in actor.roles:
            actor_permissions |= table.get(name, set())
        if "roles.assign" not in actor_permissions:
            raise _refuse(target, "Your roles no longer allow assigning roles.")
        old = set(target.roles)
        new = old | {add} if add is not None else set(names)
        changed = old ^ new
        for name in sorted(changed):
            missing = table.get(name, set()) - actor_permissions
            if missing:
                verb = "grant" if name in new else "remove"
                raise _refuse(target, f"You cannot {verb} {name!r}: it has permissions you do not hold "
                                      f"({', '.join(ordered(missing))}).", role=name)
        if not changed:
            return admin_dict(target) | {"permissions": ordered(set().union(*(table.get(n, set()) for n in old)))}
        if SUPER_ADMIN in old and SUPER_ADMIN not in new and target.active:
            others = Admin.objects(roles=SUPER_ADMIN, active=True, id__ne=target.id).count()
            if not others:
                raise _refuse(target, "This is the last active super_admin; promote someone else first.")
        roles = sorted(new, key=_role_order)
        Admin.objects(id=target.id).update_one(set__roles=roles)
        if old - new:
            end_sessions(target.id)  # a removed role ends their sessions: nothing keeps a page open on old rights
    bump_authz_version()
    record("admin.roles_changed", target.email, {"roles": sorted(old, key=_role_order)}, {"roles": roles},
           admin_id=str(target.id), added=sorted(new - old), removed=sorted(old - new))
    target.roles = roles
    return admin_dict(target) | {"permissions": ordered(set().union(*(table[name] for name in roles)))}


"""The roles API (CONTRACT.md "Roles") plus the admins list and the audit log."""

from flask_login import current_user
from pydantic import Field

from console import audit
from console.blueprints.roles import bp, lifecycle, manage
from console.blueprints.roles.schemas import (
    AdminList,
    AdminOut,
    AdminPermissionsOut,
    AdminsQuery,
    AssignRole,
    AuditList,
    AuditQuery,
    MatrixOut,
    RoleCreate,
    RoleList,
    RoleOut,
    RolePermissionsOut,
    RolePermissionsUpdate,
)
from console.http import endpoint, link
from console.pagination import paginate
from console.security import current_permissions
from console.timeutil import as_utc
from console.validation import RequestModel

PREFIX = "/api/phase14"
TAGS = ["roles"]
_ROLE = "$response.body#/name"
_ADMIN = "$response.body#/id"


@endpoint(bp, f"{PREFIX}/roles", permission="roles.view", response=RoleList, tags=TAGS,
          summary="List roles with their permissions")
def list_roles():
    """Built-in roles first, then custom roles by name; `admins` counts who holds each."""
    return {"items": manage.list_roles()}


@endpoint(bp, f"{PREFIX}/roles/matrix", permission="roles.view", response=MatrixOut, tags=TAGS,
          summary="The permission matrix: every role by every permission")
def role_matrix():
    """Every cell is present; permissions carry their group and description."""
    data = manage.matrix()
    data.pop("role_details")
    return data


@endpoint(bp, f"{PREFIX}/roles/<role>/permissions", permission="roles.view", response=RolePermissionsOut,
          tags=TAGS, summary="A role's permissions", responses={404: ""})
def role_permissions(role: str):
    found = manage.get_role(role)
    return {"role": found.name, "permissions": manage.ordered(found.permissions)}


@endpoint(bp, f"{PREFIX}/roles/<role>/permissions", methods=["PUT"], permission="roles.manage",
          body=RolePermissionsUpdate, response=RoleOut, tags=TAGS, summary="Replace a role's permissions",
          responses={403: "", 404: "", 409: "stale version", 422: ""})
def update_role_permissions(role: str, body: RolePermissionsUpdate):
    """Unknown permissions are 422; super_admin cannot be changed (403). Applies on everyone's next request."""
    return manage.set_role_permissions(role, body.permissions, current_permissions(), body.version)


def nav_pages() -> list[tuple[str, str | None]]:
    from flask import current_app

    return [(item.label, item.permission) for item in current_app.extensions.get("console_nav", [])]


@endpoint(bp, f"{PREFIX}/roles/<role>/permissions/preview", methods=["POST"], permission="roles.manage",
          body=RolePermissionsUpdate, tags=TAGS, summary="Who would gain or lose which permissions and pages",
          responses={404: "", 422: ""})
def preview_role_permissions(role: str, body: RolePermissionsUpdate):
    """Changes nothing. Save with PUT and the `version` this answer carries."""
    return manage.preview_permissions(role, body.permissions, nav_pages())


@endpoint(bp, f"{PREFIX}/roles", methods=["POST"], permission="roles.manage", body=RoleCreate, response=RoleOut,
          status=201, tags=TAGS, summary="Create a custom role", responses={409: "", 422: ""},
          links={"RolePermissions": link("roles_role_permissions_get", role=_ROLE),
                 "UpdateRolePermissions": link("roles_update_role_permissions_put", role=_ROLE),
                 "DeleteRole": link("roles_delete_role_delete", role=_ROLE),
                 "AdminsWithRole": link("roles_list_admins_get", role=_ROLE)})
def create_role(body: RoleCreate):
    """A taken name is 409; you can only grant permissions you hold."""
    return manage.create_role(body.name, body.description, body.permissions, current_permissions())


@endpoint(bp, f"{PREFIX}/roles/<role>", methods=["DELETE"], permission="roles.manage", status=204, tags=TAGS,
          summary="Delete a custom role", responses={403: "", 404: "", 409: ""})
def delete_role(role: str):
    """Built-in roles cannot be deleted (403); a role still assigned to someone is 409."""
    manage.delete_role(role)
    return None


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/assign-role", methods=["POST"], permission="roles.assign",
          body=AssignRole, response=AdminOut, tags=TAGS, summary="Add a role to an admin or replace their roles",
          responses={403: "", 404: "", 409: "", 422: ""},
          links={"AdminPermissions": link("roles_admin_permissions_get", admin_id=_ADMIN),
                 "AssignAgain": link("roles_assign_role_post", admin_id=_ADMIN),
                 "DeleteAssignedRole": link("roles_delete_role_delete", role="$response.body#/roles/0")})
def assign_role(admin_id: str, body: AssignRole):
    """`{"role"}` adds one role, `{"roles": [...]}` replaces the set. Refused (403) when it would grant or
    remove a role with permissions you do not hold, change your own roles, or leave no active super_admin."""
    return manage.assign_roles(current_user.id, admin_id, add=body.role, replace=body.roles)


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/permissions", permission="roles.view", response=AdminPermissionsOut,
          tags=TAGS, summary="An admin's roles and effective permissions", responses={404: ""})
def admin_permissions(admin_id: str):
    return manage.admin_permissions(manage.get_admin(admin_id))


@endpoint(bp, f"{PREFIX}/admins", permission="roles.view", query=AdminsQuery, response=AdminList, tags=TAGS,
          summary="List admins with their roles and last login",
          links={"AssignRole": link("roles_assign_role_post", admin_id="$response.body#/items/0/id"),
                 "AdminPermissions": link("roles_admin_permissions_get", admin_id="$response.body#/items/0/id")})
def list_admins(query: AdminsQuery):
    """Sorted by email; `q` matches part of an email or name, `role` filters by role."""
    return paginate(manage.admins_queryset(query.q, query.role), query, sort_field="email", descending=False,
                    transform=manage.admin_dict)


@endpoint(bp, f"{PREFIX}/audit-log", permission="roles.view", query=AuditQuery, response=AuditList, tags=TAGS,
          summary="The audit log, newest first")
def audit_log(query: AuditQuery):
    """Filter by actor and target (substrings), action (exact, or a prefix ending in '.') and time range."""
    queryset = audit.entries(query.actor, query.target, query.action, as_utc(query.since), as_utc(query.until))
    return paginate(queryset, query, sort_field="at", transform=audit.entry_dict)


# --- admin lifecycle -----------------------------------------------------------------------------------------

class InviteIn(RequestModel):
    email: str = Field(min_length=3, max_length=254)
    role: str | None = Field(None, max_length=64)
    roles: list[str] | None = Field(None, max_length=20)
    name: str | None = Field(None, max_length=200)


def _actor():
    return current_user._get_current_object()


@endpoint(bp, f"{PREFIX}/admins/invite", methods=["POST"], permission="roles.assign", body=InviteIn, status=201,
          tags=TAGS, summary="Invite an admin by email", responses={403: "", 409: "", 422: ""})
def invite_admin(body: InviteIn):
    """Emails a signed link valid 72 h where they set a password. You can grant only roles you could assign."""
    roles = body.roles if body.roles is not None else ([body.role] if body.role else [])
    return lifecycle.invite(_actor(), body.email, roles, body.name)


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/invite/resend", methods=["POST"], permission="roles.assign", tags=TAGS,
          summary="Send the invitation again (the earlier link stops working)", responses={404: "", 409: ""})
def resend_invite(admin_id: str):
    return lifecycle.resend_invite(_actor(), manage.get_admin(admin_id))


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/invite", methods=["DELETE"], permission="roles.assign", status=204,
          tags=TAGS, summary="Revoke an open invitation", responses={404: "", 409: ""})
def revoke_invite(admin_id: str):
    lifecycle.revoke_invite(_actor(), manage.get_admin(admin_id))
    return None


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/deactivate", methods=["POST"], permission="roles.assign", tags=TAGS,
          summary="Deactivate an admin: every session and token ends at once", responses={403: "", 404: ""})
def deactivate_admin(admin_id: str):
    """The last active super_admin cannot be deactivated; nor can you deactivate yourself."""
    return lifecycle.set_active(_actor(), manage.get_admin(admin_id), False)


@endpoint(bp, f"{PREFIX}/admin/<admin_id>/activate", methods=["POST"], permission="roles.assign", tags=TAGS,
          summary="Reactivate an admin", responses={403: "", 404: "", 409: ""})
def activate_admin(admin_id: str):
    return lifecycle.set_active(_actor(), manage.get_admin(admin_id), True)

"""Request and response shapes of the roles API."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, Field, model_validator

from console.blueprints.roles.manage import ROLE_NAME_PATTERN
from console.pagination import PageQuery
from console.validation import RequestModel


class RoleCreate(RequestModel):
    name: str = Field(pattern=ROLE_NAME_PATTERN, description="2-40 lowercase letters, digits or underscores")
    description: str = Field("", max_length=500)
    permissions: list[str] = Field(default_factory=list, max_length=100)


class RolePermissionsUpdate(RequestModel):
    permissions: list[str] = Field(max_length=100, description="The role's complete new permission set")
    version: int | None = Field(None, ge=0, description="The role's version you saw; 409 when someone changed it")


class AssignRole(RequestModel):
    """Either `role` (add one role) or `roles` (replace the whole set)."""

    role: str | None = Field(None, min_length=1, max_length=64)
    roles: list[str] | None = Field(None, max_length=50)

    @model_validator(mode="after")
    def _exactly_one(self):
        if (self.role is None) == (self.roles is None):
            raise ValueError("send either 'role' (add one) or 'roles' (replace the set), not both or neither")
        return self


class AdminsQuery(PageQuery):
    q: str | None = Field(None, max_length=200, description="Part of an email or name")
    role: str | None = Field(None, max_length=64)


class AuditQuery(PageQuery):
    actor: str | None = Field(None, max_length=254)
    target: str | None = Field(None, max_length=300)
    action: str | None = Field(None, max_length=100, description="Exact, or a prefix ending in '.'")
    since: datetime | None = None
    until: datetime | None = None


class RoleOut(BaseModel):
    name: str
    description: str
    permissions: list[str]
    builtin: bool
    admins: int | None = None
    updated_at: datetime | None = None
    version: int = 0


class RoleList(BaseModel):
    items: list[RoleOut]


class RolePermissionsOut(BaseModel):
    role: str
    permissions: list[str]


class PermissionOut(BaseModel):
    name: str
    group: str
    description: str


class MatrixOut(BaseModel):
    roles: list[str]
    permissions: list[PermissionOut]
    matrix: dict[str, dict[str, bool]]


class AdminOut(BaseModel):
    id: str
    email: str
    name: str | None
    roles: list[str]
    active: bool
    last_login_at: datetime | None
    created_at: datetime | None
    permissions: list[str] | None = None


class AdminList(BaseModel):
    items: list[AdminOut]
    next_cursor: str | None


class AdminPermissionsOut(BaseModel):
    admin_id: str
    email: str
    roles: list[str]
    permissions: list[str]


class AuditEntryOut(BaseModel):
    id: str
    at: datetime
    actor: str
    action: str
    target: str | None
    before: object = None
    after: object = None
    ip: str | None
    details: dict


class AuditList(BaseModel):
    items: list[AuditEntryOut]
    next_cursor: str | None


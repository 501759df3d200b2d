"""Console pages: the permission matrix, admins and their roles, the audit log."""

from datetime import date, timedelta

from flask import flash, redirect, render_template, request, url_for
from flask_login import current_user
from pydantic import Field

from console import audit
from console.authz import CATALOG, PERMISSION_GROUPS, SUPER_ADMIN
from console.blueprints.roles import bp, manage
from console.blueprints.roles.schemas import AdminsQuery, AuditQuery
from console.errors import ApiError
from console.pagination import PageQuery, paginate
from console.security import current_permissions, has_permission, permission_required
from console.timeutil import day_start, utcnow
from console.web import csv_response, query_args, toast


class AuditPageQuery(AuditQuery):
    """The audit page filters by whole days (`from`, `to`, both included) where the API takes since/until."""

    start: date | None = Field(None, alias="from")
    end: date | None = Field(None, alias="to")


def _page(queryset, query: PageQuery, **order) -> dict:
    """50 rows from the query's cursor; a stale or hand-edited cursor starts from the first page."""
    try:
        return paginate(queryset, PageQuery(limit=50, cursor=query.cursor), **order)
    except ApiError:
        return paginate(queryset, PageQuery(limit=50), **order)


# --- roles and the matrix ------------------------------------------------------------------------------------

@bp.route("/roles")
@permission_required("roles.view")
def matrix():
    data = manage.matrix()
    groups = [(group, [p for p in CATALOG if p.group == group]) for group in PERMISSION_GROUPS]
    return render_template("roles/index.html", data=data, groups=groups, can_manage=has_permission("roles.manage"),
                           super_admin=SUPER_ADMIN, name_pattern=manage.ROLE_NAME_PATTERN)


@bp.route("/roles/<role>/cells/<permission>/preview")
@permission_required("roles.manage")
def preview_cell(role: str, permission: str):
    """See before you save: who would gain or lose what, and a confirm button carrying the role's version."""
    from console.blueprints.roles.api import nav_pages

    found = manage.get_role(role)
    current = set(found.permissions)
    if permission not in current and permission not in {p.name for p in CATALOG}:
        raise ApiError(422, f"unknown permission {permission!r}")
    wanted = current - {permission} if permission in current else current | {permission}
    preview = manage.preview_permissions(role, sorted(wanted), nav_pages())
    return render_template("roles/_change_preview.html", preview=preview, role=role, permission=permission,
                           granting=permission not in current)


@bp.route("/roles/<role>/cells/<permission>", methods=["POST"])
@permission_required("roles.manage")
def toggle_cell(role: str, permission: str):
    """Flip one cell; the response is the re-rendered cell, and a toast says what changed."""
    version = request.form.get("version", "")
    try:
        granted = manage.toggle_permission(role, permission, current_permissions(),
                                           int(version) if version.isdigit() else None)
    except ApiError as error:
        if error.status == 404 or error.status == 422:
            raise
        found = manage.get_role(role)
        html = render_template("roles/_cell.html", role=role, permission=permission,
                               granted=permission in found.permissions, can_manage=True, super_admin=SUPER_ADMIN)
        return html, 200, toast(error.detail, "error")
    verb = "granted to" if granted else "removed from"
    html = render_template("roles/_cell.html", role=role, permission=permission, granted=granted, can_manage=True,
                           super_admin=SUPER_ADMIN)
    html += '\n<div id="change-preview" hx-swap-oob="innerHTML"></div>'  # the confirmed preview closes
    return html, 200, toast(f"{permission} {verb} {role}.")


@bp.route("/roles/preview/clear")
@permission_required("roles.manage")
def clear_preview():
    return ""


@bp.route("/roles/new", methods=["POST"])
@permission_required("roles.manage")
def create_role_form():
    name = request.form.get("name", "").strip()
    try:
        manage.create_role(name, request.form.get("description", "").strip()[:500],
                          request.form.getlist("permissions"), current_permissions())
    except ApiError as error:
        flash(f"Could not create the role: {error.detail}", "error")
    else:
        flash(f"Created the role {name}. Toggle its permissions in the matrix.", "success")
    return redirect(url_for("roles.matrix"))


@bp.route("/roles/<role>/delete", methods=["POST"])
@permission_required("roles.manage")
def delete_role_form(role: str):
    try:
        manage.delete_role(role)
    except ApiError as error:
        flash(f"Could not delete {role}: {error.detail}", "error")
    else:
        flash(f"Deleted the role {role}.", "success")
    return redirect(url_for("roles.matrix"))


# --- admins --------------------------------------------------------------------------------------------------

@bp.route("/admins")
@permission_required("roles.view")
def admins():
    query = query_args(AdminsQuery)
    q, role = query.q or None, query.role or None
    page = _page(manage.admins_queryset(q, role), query, sort_field="email", descending=False)
    next_url = url_for("roles.admins", q=q, role=role, cursor=page["next_cursor"]) if page["next_cursor"] else None
    first_url = url_for("roles.admins", q=q, role=role) if query.cursor else None
    return render_template("roles/admins.html", admins=page["items"], q=q or "", role=role or "",
                           grantable=manage.grantable_roles(current_permissions())
                           if has_permission("roles.assign") else [],
                           role_names=[r["name"] for r in manage.list_roles()], next_url=next_url, first_url=first_url)


@bp.route("/admins/<admin_id>")
@permission_required("roles.view")
def admin_detail(admin_id: str):
    admin = manage.get_admin(admin_id)
    table = manage.role_table()
    grantable = set(manage.grantable_roles(current_permissions())) if has_permission("roles.assign") else set()
    return render_template(
        "roles/admin.html", admin=admin, all_roles=[r["name"] for r in manage.list_roles()], grantable=grantable,
        role_table=table, permissions=manage.effective_permissions(admin.roles), catalog=CATALOG,
        groups=PERMISSION_GROUPS, is_self=admin.id == current_user.id, trail=audit.trail(admin.email),
        can_assign=has_permission("roles.assign"),
    )


@bp.route("/admins/<admin_id>/roles", methods=["POST"])
@permission_required("roles.assign")
def assign_roles(admin_id: str):
    """Replace the roles the actor may grant with those ticked; roles above the actor's level stay as they are."""
    admin = manage.get_admin(admin_id)
    grantable = set(manage.grantable_roles(current_permissions()))
    ticked = set(request.form.getlist("roles")) & grantable
    kept = set(admin.roles) - grantable
    try:
        result = manage.assign_roles(current_user.id, admin_id, replace=sorted(ticked | kept))
    except ApiError as error:
        flash(error.detail, "error")
    else:
        flash(f"{admin.email} now has: {', '.join(result['roles']) or 'no roles'}.", "success")
    return redirect(url_for("roles.admin_detail", admin_id=admin_id))


# --- audit log -----------------------------------------------------------------------------------------------

def _audit_filters(query: AuditPageQuery) -> dict:
    """The filters as the form shows them (text; empty for none)."""
    return {"actor": query.actor or "", "target": query.target or "", "action": query.action or "",
            "from": query.start.isoformat() if query.start else "", "to": query.end.isoformat() if query.end else ""}


def _audit_queryset(query: AuditPageQuery):
    until = day_start(query.end)
    return audit.entries(query.actor or None, query.target or None, query.action or None, day_start(query.start),
                         until + timedelta(days=1) if until else None)


@bp.route("/audit", endpoint="audit")
@permission_required("roles.view")
def audit_log():
    query = query_args(AuditPageQuery)
    filters = _audit_filters(query)
    page = _page(_audit_queryset(query), query, sort_field="at")
    active = {key: value for key, value in filters.items() if value}
    next_url = url_for("roles.audit", **active, cursor=page["next_cursor"]) if page["next_cursor"] else None
    first_url = url_for("roles.audit", **active) if query.cursor else None
    return render_template("roles/audit.html", entries=page["items"], filters=filters, actions=audit.known_actions(),
                           next_url=next_url, first_url=first_url, csv_url=url_for("roles.audit_csv", **active))


@bp.route("/audit.csv")
@permission_required("roles.view")
def audit_csv():
    queryset = _audit_queryset(query_args(AuditPageQuery))
    filename = f"audit-log-{utcnow():%Y%m%d-%H%M}.csv"
    return csv_response(filename, audit.CSV_COLUMNS, audit.csv_rows(queryset))


@bp.route("/widgets/security")
@permission_required("roles.view")
def widget_audit():
    since = utcnow() - timedelta(days=1)
    denied = audit.entries(action="permission.denied", since=since).count()
    changes = audit.entries(action="role.", since=since).count() + audit.entries(action="admin.", since=since).count()
    recent = list(audit.entries().filter(action__ne="permission.denied").order_by("-at", "-id").limit(5))
    return render_template("roles/_widget_security.html", denied=denied, changes=changes, recent=recent)

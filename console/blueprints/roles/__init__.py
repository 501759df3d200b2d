"""Roles and permissions: the matrix, role assignment, the admins and their lifecycle, the audit log.

Enters at api.py (/api/phase14/roles…, admins, audit) and pages.py, lifecycle_pages.py (the matrix, admins,
invitations, the link pages). The rules: manage.py (roles, matrix, assignment: never lock the last super admin
out), lifecycle.py (invite, reset, deactivate by signed one-time links), admins.py. Stored in the kernel's
`roles`, `authz_state`, `admins` and `audit_log` (console.authz, console.accounts, console.audit).
Uses no other feature.
"""

from flask import Blueprint

from console.cli import add_demo_seeder
from console.ui import NavItem, Widget, add_nav, add_widget

bp = Blueprint("roles", __name__)


def init_app(app) -> None:
    from console.blueprints.roles import api, lifecycle_pages, pages  # noqa: F401  (routes)
    from console.blueprints.roles.cli import create_admin_command
    from console.blueprints.roles.demo import seed_admins

    app.register_blueprint(bp)
    app.cli.add_command(create_admin_command)
    add_demo_seeder(app, "admins", seed_admins, order=1000)
    add_nav(app, NavItem("Roles & permissions", "roles.matrix", "roles.view", "Administration", "◈", order=10))
    add_nav(app, NavItem("Admins", "roles.admins", "roles.view", "Administration", "◉", order=20))
    add_nav(app, NavItem("Audit log", "roles.audit", "roles.view", "Administration", "☰", order=30))
    add_widget(app, Widget("Security activity", "roles.widget_audit", "roles.view", order=85))

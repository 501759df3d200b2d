"""Deny by default: every route decides who may use it; permissions come from roles in MongoDB."""

import pytest
from flask import Blueprint

from console.authz import BUILTIN_ROLES, PERMISSIONS, Role
from console.http import endpoint
from console.security import permission_required, view_permission

# Routes anyone may reach. Adding one is a security decision: it must be made here, on purpose.
PUBLIC_ENDPOINTS = {
    "static", "core.healthz", "core.readyz", "core.openapi_json", "core.api_docs", "core.plotly_js",
    "auth.login", "auth.create_token", "auth.delete_token",
    "tracking.open_pixel", "tracking.click", "tracking.unsubscribe", "tracking.preference_center_page",
    "hardening.prometheus_metrics",  # its own guard: METRICS_TOKEN or METRICS_ALLOW, 404 when neither is set
    "hooks.mail_hook", "hooks.sms_hook",  # providers' webhooks: each verifies its provider's signature
    "auth.second_factor", "auth.second_factor_enrol",  # only with the signed marker the password step leaves
    "roles.accept_invite", "roles.reset_password",  # only with a signed single-use link from the email
    "roles.forgot_password",  # answers the same whether or not the address is an admin's
}
# Routes for any signed-in admin, whatever their role.
LOGIN_ONLY_ENDPOINTS = {"core.dashboard", "auth.logout", "auth.me",
                        # each admin's own second factor
                        "auth.twofactor_status", "auth.account_2fa", "auth.account_2fa_enrol",
                        "auth.account_2fa_confirm", "auth.account_2fa_disable"}


def test_every_route_has_a_permission(app):
    undecided, unexpected_public, unexpected_login = [], [], []
    for rule in app.url_map.iter_rules():
        view = app.view_functions[rule.endpoint]
        decision = view_permission(view)
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        if decision is None:
            undecided.append(rule.rule)
        elif decision == "@public" and rule.endpoint not in PUBLIC_ENDPOINTS:
            unexpected_public.append(rule.endpoint)
        elif decision == "@login" and rule.endpoint not in LOGIN_ONLY_ENDPOINTS:
            unexpected_login.append(rule.endpoint)
        elif decision not in {"@public", "@login"}:
            assert decision in PERMISSIONS, f"{rule.rule} names unknown permission {decision}"
    assert not undecided, f"routes without a permission: {undecided}"
    assert not unexpected_public, f"public routes not in the allow list: {unexpected_public}"
    assert not unexpected_login, f"login-only routes not in the allow list: {unexpected_login}"


def test_unknown_permission_cannot_be_declared():
    with pytest.raises(ValueError):
        permission_required("nope.nothing")


def test_builtin_roles_are_seeded_with_the_default_matrix(app):
    stored = {role.name: set(role.permissions) for role in Role.objects}
    assert stored == {name: spec["permissions"] for name, spec in BUILTIN_ROLES.items()}
    assert all(role.builtin for role in Role.objects)


@pytest.fixture
def probe_app(make_app, servers):
    """An app with one extra page and one API route guarded by `reports.view`."""
    from console import create_app  # noqa: F401
    from tests.conftest import clean_state

    clean_state(servers)
    bp = Blueprint("probe", __name__)

    @bp.route("/probe/page")
    @permission_required("reports.view")
    def page():
        return "secret report"

    @endpoint(bp, "/api/probe", permission="reports.view", summary="probe")
    def api_probe():
        return {"ok": True}

    app = make_app()
    app.register_blueprint(bp)
    with app.app_context():
        from console.cli import prepare_database

        prepare_database()
        yield app


def _login(app, *roles):
    from console.accounts import Admin
    from console.security import hash_password, issue_token
    from tests.conftest import TEST_PASSWORD, csrf_token_from

    admin = Admin(email=f"{'-'.join(roles) or 'none'}@probe.example.com", roles=list(roles),
                  password_hash=hash_password(TEST_PASSWORD)).save()
    browser = app.test_client()
    token = csrf_token_from(browser.get("/login").data)
    browser.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    bearer, _ = issue_token(admin)
    return browser, {"Authorization": f"Bearer {bearer}"}


def test_permission_decorator_serves_pages_and_api(probe_app):
    browser, headers = _login(probe_app, "analyst")
    assert browser.get("/probe/page").get_data(as_text=True) == "secret report"
    assert browser.get("/api/probe").json == {"ok": True}
    assert browser.get("/api/probe", headers=headers).json == {"ok": True}

    browser, headers = _login(probe_app, "moderator")
    page = browser.get("/probe/page")
    assert page.status_code == 403 and "does not allow" in page.get_data(as_text=True)
    assert page.mimetype == "text/html"
    api = browser.get("/api/probe", headers=headers)
    assert api.status_code == 403 and api.mimetype == "application/problem+json"

    anonymous = probe_app.test_client()
    assert anonymous.get("/api/probe").status_code == 401
    assert anonymous.get("/probe/page").status_code == 302


def test_role_changes_apply_on_the_next_request(probe_app):
    from console.authz import bump_authz_version

    browser, headers = _login(probe_app, "moderator")
    assert browser.get("/api/probe", headers=headers).status_code == 403
    Role.objects(name="moderator").update(push__permissions="reports.view")
    bump_authz_version()
    assert browser.get("/api/probe", headers=headers).status_code == 200


def test_admin_without_roles_sees_an_empty_dashboard(probe_app):
    browser, _ = _login(probe_app)
    page = browser.get("/").get_data(as_text=True)
    assert "Nothing to show yet" in page
    assert browser.get("/probe/page").status_code == 403


def test_denied_checks_are_audited_once_per_minute(probe_app):
    from console.audit import AuditLog

    browser, headers = _login(probe_app, "moderator")
    for _ in range(3):
        browser.get("/api/probe", headers=headers)
    denied = AuditLog.objects(action="permission.denied")
    assert denied.count() == 1
    assert denied.first().target == "/api/probe"

"""The authorization matrix: every route of the app by every built-in role, against CONTRACT.md.

Generated from the route table, so a new route is checked the moment it exists: a route without a decision
fails, and every decision is enforced for real over HTTP (bearer tokens for /api, signed-in sessions for
pages). Expected outcomes come from the default matrix in CONTRACT.md, transcribed below.
"""

from __future__ import annotations

import re
import uuid

import pytest
from bson import ObjectId
from werkzeug.routing import AnyConverter, FloatConverter, IntegerConverter, UUIDConverter

from console import create_app
from console.authz import BUILTIN_ROLES, PERMISSIONS
from console.security import view_permission
from tests.conftest import TEST_PASSWORD, base_config, clean_state, csrf_token_from

# CONTRACT.md, "Roles": the default matrix, row by row (permissions, the built-in roles holding them).
CONTRACT_TABLE = [
    (("blogs.create", "blogs.edit", "events.manage", "content.manage"), "super_admin admin content_manager"),
    (("submissions.review", "volunteers.manage"), "super_admin admin moderator"),
    (("analytics.view", "reports.view"), "super_admin admin analyst"),
    (("engagement.track",), "super_admin admin"),
    (("campaigns.send",), "super_admin admin"),
    (("templates.view",), "super_admin admin content_manager analyst"),
    (("templates.manage",), "super_admin admin content_manager"),
    (("communication.view",), "super_admin admin moderator analyst"),
    (("communication.send", "communication.manage_preferences"), "super_admin admin"),
    (("roles.view",), "super_admin admin"),
    (("roles.assign",), "super_admin admin"),
    (("roles.manage",), "super_admin"),
    (("hardening.view",), "super_admin admin"),
    (("hardening.optimize",), "super_admin"),
    (("members.erase",), "super_admin admin"),
]
CONTRACT_MATRIX = {name: frozenset(holders.split()) for names, holders in CONTRACT_TABLE for name in names}
ROLES = list(BUILTIN_ROLES)

# CONTRACT.md endpoint tables (prefix /api/phase14): method, path, the permission named in brackets.
CONTRACT_ENDPOINTS = [
    ("POST", "/engagement/track-activity", "engagement.track"),
    ("GET", "/engagement/user/{user_id}/activity", "analytics.view"),
    ("GET", "/engagement/metrics", "analytics.view"),
    ("GET", "/engagement/retention-analysis", "analytics.view"),
    ("GET", "/engagement/churn-prediction", "analytics.view"),
    ("GET", "/engagement/lifecycle/{user_id}", "analytics.view"),
    ("POST", "/engagement/campaigns/trigger", "campaigns.send"),
    ("GET", "/engagement/campaigns/{id}", "analytics.view"),
    ("GET", "/engagement/campaigns", "analytics.view"),
    ("POST", "/engagement/churn-prediction/rescore", "analytics.view"),
    ("GET", "/engagement/cohort-members", "analytics.view"),
    ("GET", "/engagement/lifecycle-members", "analytics.view"),
    ("GET", "/engagement/inactive-users", "analytics.view"),
    ("POST", "/communication/templates", "templates.manage"),
    ("GET", "/communication/templates", "templates.view"),
    ("GET", "/communication/templates/{id}", "templates.view"),
    ("PUT", "/communication/templates/{id}", "templates.manage"),
    ("DELETE", "/communication/templates/{id}", "templates.manage"),
    ("POST", "/communication/send-email", "communication.send"),
    ("GET", "/communication/email-queue", "communication.view"),
    ("POST", "/communication/preferences/{user_id}", "communication.manage_preferences"),
    ("GET", "/communication/preferences/{user_id}", "communication.view"),
    ("GET", "/communication/tracking/{email_id}", "communication.view"),
    ("GET", "/communication/history/{user_id}", "communication.view"),
    ("POST", "/communication/batch-send", "communication.send"),
    ("GET", "/communication/batches/{id}", "communication.send"),
    ("GET", "/communication/stats", "communication.view"),
    ("POST", "/communication/send-sms", "communication.send"),
    ("GET", "/roles", "roles.view"),
    ("GET", "/roles/{role}/permissions", "roles.view"),
    ("POST", "/admin/{admin_id}/assign-role", "roles.assign"),
    ("GET", "/admin/{admin_id}/permissions", "roles.view"),
    ("GET", "/roles/matrix", "roles.view"),
    ("PUT", "/roles/{role}/permissions", "roles.manage"),
    ("POST", "/roles", "roles.manage"),
    ("DELETE", "/roles/{role}", "roles.manage"),
    ("GET", "/hardening/security-audit", "hardening.view"),
    ("GET", "/hardening/error-analysis", "hardening.view"),
    ("GET", "/hardening/performance-review", "hardening.view"),
    ("GET", "/hardening/slow-queries", "hardening.view"),
    ("GET", "/hardening/health-comprehensive", "hardening.view"),
    ("GET", "/hardening/production-checklist", "hardening.view"),
    ("POST", "/hardening/optimize", "hardening.optimize"),
    ("GET", "/hardening/optimize/{job_id}", "hardening.optimize"),
    ("GET", "/engagement/user/{user_id}/export", "members.erase"),
    ("DELETE", "/engagement/user/{user_id}", "members.erase"),
    ("GET", "/moderation/submissions", "submissions.review"),
    ("GET", "/moderation/volunteers", "volunteers.manage"),
    ("POST", "/moderation/submissions/{id}/decision", "submissions.review"),
    ("POST", "/moderation/volunteers/{id}/decision", "volunteers.manage"),
    ("GET", "/content/blogs", "blogs.edit"),
    ("POST", "/content/blogs", "blogs.create"),
    ("GET", "/content/events", "events.manage"),
    ("POST", "/content/events", "events.manage"),
    ("POST", "/admins/invite", "roles.assign"),
    ("POST", "/admin/{admin_id}/deactivate", "roles.assign"),
    ("POST", "/admin/{admin_id}/activate", "roles.assign"),
]
# Public routes checked anonymously only; these few answer 401 on purpose when nothing is sent.
ANONYMOUS_401_BY_DESIGN = {"auth.delete_token"}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def _route_app():
    """The app's route table, from an app that never connects (collection happens before the servers start)."""
    return create_app({"TESTING": True, "SECRET_KEY": "collect-only", "MONGODB_URI": "mongodb://127.0.0.1:9/collect",
                       "MONGO_TIMEOUT_MS": 10})


ROUTE_APP = _route_app()


def _dummy(converter) -> str | int | float:
    if isinstance(converter, IntegerConverter):
        return 1
    if isinstance(converter, FloatConverter):
        return 1.0
    if isinstance(converter, UUIDConverter):
        return uuid.uuid4()
    if isinstance(converter, AnyConverter):
        return sorted(converter.items)[0] if hasattr(converter, "items") else re.findall(r"\w+", converter.regex)[0]
    return str(ObjectId())  # also a fine unknown user id, role name or token


def _cases():
    cases = []
    adapter = ROUTE_APP.url_map.bind("localhost")
    for rule in sorted(ROUTE_APP.url_map.iter_rules(), key=lambda r: r.rule):
        if rule.endpoint == "static" or rule.endpoint.endswith(".static"):
            continue
        decision = view_permission(ROUTE_APP.view_functions[rule.endpoint])
        is_api = rule.rule.startswith("/api/")
        methods = sorted(rule.methods - SKIP_METHODS)
        if not is_api and "GET" in methods:
            methods = ["GET"]  # pages: the page itself; its form posts have their own rules
        for method in methods:
            values = {name: _dummy(rule._converters.get(name)) for name in rule.arguments}
            url = adapter.build(rule.endpoint, values, method=method)
            cases.append(pytest.param(rule.endpoint, method, url, decision, is_api, id=f"{method} {rule.rule}"))
    return cases


CASES = _cases()


@pytest.fixture(scope="module")
def env(servers):
    """One app, one admin per built-in role with a bearer token and a signed-in session, for the whole module."""
    from console.accounts import Admin
    from console.authz import bump_authz_version
    from console.cli import prepare_database
    from console.security import hash_password, issue_token

    clean_state(servers)
    # A view that crashes after the permission check has still allowed the request; other tests hunt 5xx.
    app = create_app(base_config(servers, PROPAGATE_EXCEPTIONS=False))
    with app.app_context():
        prepare_database()
        hashed = hash_password(TEST_PASSWORD)
        tokens, sessions = {}, {}
        for role in ROLES:
            admin = Admin(email=f"{role}@matrix.example.com", name=role, roles=[role], password_hash=hashed).save()
            tokens[role] = {"Authorization": f"Bearer {issue_token(admin)[0]}"}
            browser = app.test_client()
            token = csrf_token_from(browser.get("/login").data)
            assert browser.post("/login", data={"email": admin.email, "password": TEST_PASSWORD,
                                                "csrf_token": token}).status_code == 302
            browser.environ_base["HTTP_X_CSRFTOKEN"] = csrf_token_from(browser.get("/").data)
            sessions[role] = browser
        bump_authz_version()
        yield app, tokens, sessions


def test_builtin_roles_are_the_contract_matrix():
    assert set(CONTRACT_MATRIX) == PERMISSIONS
    for role in ROLES:
        expected = {name for name, holders in CONTRACT_MATRIX.items() if role in holders}
        assert BUILTIN_ROLES[role]["permissions"] == expected, role


def test_seeded_roles_are_the_contract_matrix(env):
    from console.authz import Role

    app, _, _ = env
    with app.app_context():
        stored = {role.name: set(role.permissions) for role in Role.objects(name__in=ROLES)}
    assert stored == {role: {p for p, holders in CONTRACT_MATRIX.items() if role in holders} for role in ROLES}


def _send(client, method: str, url: str, is_api: bool, headers: dict | None = None):
    kwargs = {"headers": headers or {}}
    if method in {"POST", "PUT", "PATCH", "DELETE"}:
        kwargs["json" if is_api else "data"] = {}
    return client.open(url, method=method, **kwargs)


def _denied(response, is_api: bool) -> bool:
    if response.status_code != 403:
        return False
    return response.mimetype == ("application/problem+json" if is_api else "text/html")


def _redirects_to_login(response) -> bool:
    return response.status_code == 302 and "/login" in response.headers.get("Location", "")


@pytest.mark.parametrize("endpoint, method, url, decision, is_api", CASES)
def test_route_allows_exactly_the_contract_roles(env, endpoint, method, url, decision, is_api):
    app, tokens, sessions = env
    assert decision is not None, f"{endpoint} has no authorization decision"
    assert decision in PERMISSIONS | {"@public", "@login"}, f"{endpoint} declares {decision!r}"
    anonymous = app.test_client()
    if decision == "@public":
        response = _send(anonymous, method, url, is_api)
        if endpoint not in ANONYMOUS_401_BY_DESIGN:
            assert response.status_code not in (401, 403), f"public {endpoint} refused anonymous access"
        return

    response = _send(anonymous, method, url, is_api)
    if is_api:
        assert response.status_code == 401, f"anonymous {method} {url}: {response.status_code}"
        assert response.mimetype == "application/problem+json"
    elif method == "GET":
        assert _redirects_to_login(response), f"anonymous {url}: {response.status_code}"
    else:
        assert response.status_code in (400, 401, 403) or _redirects_to_login(response)

    if decision == "@login" and method != "GET":
        return  # logout and the like: any signed-in admin, and sending it would end the shared session
    wrong = []
    for role in ROLES:
        allowed = decision == "@login" or role in CONTRACT_MATRIX[decision]
        if is_api:
            response = _send(app.test_client(), method, url, True, tokens[role])
        else:
            response = _send(sessions[role], method, url, False)
        ok = (response.status_code not in (401, 403) and not _redirects_to_login(response)) if allowed \
            else _denied(response, is_api)
        if not ok:
            wrong.append(f"{role}: expected {'allow' if allowed else 'deny'}, got {response.status_code}")
    assert not wrong, f"{method} {url} ({decision}): " + "; ".join(wrong)


def _normalize(path: str) -> str:
    return re.sub(r"<[^>]+>|\{[^}]+\}", "{}", path)


def _contract_params():
    for method, path, permission in CONTRACT_ENDPOINTS:
        yield pytest.param(method, path, permission, id=f"{method} {path}")


@pytest.mark.parametrize("method, path, permission", list(_contract_params()))
def test_contract_endpoint_declares_the_contract_permission(method, path, permission):
    """Skipped while the endpoint is not built yet, so this tightens as features land."""
    wanted = _normalize("/api/phase14" + path)
    rules = [rule for rule in ROUTE_APP.url_map.iter_rules()
             if _normalize(rule.rule) == wanted and method in rule.methods]
    if not rules:
        pytest.skip(f"{method} /api/phase14{path} is not built yet")
    view = ROUTE_APP.view_functions[rules[0].endpoint]
    assert view_permission(view) == permission
    if path == "/engagement/track-activity":
        assert getattr(view, "__ingest_key__", False), "track-activity must also accept an ingest key"


# Two-factor sign-in (issue 17, item 5): the code step is reachable between the password and the session, the
# account pages by any signed-in admin, a reset only with roles.assign. The generated cases above enforce them.
TWO_FACTOR_DECISIONS = {
    "auth.second_factor": "@public", "auth.second_factor_enrol": "@public", "auth.account_2fa": "@login",
    "auth.account_2fa_enrol": "@login", "auth.account_2fa_confirm": "@login", "auth.account_2fa_disable": "@login",
    "auth.reset_2fa": "roles.assign", "auth.reset_twofactor": "roles.assign", "auth.twofactor_status": "@login",
}


def test_two_factor_routes_declare_their_decisions():
    declared = {name: view_permission(ROUTE_APP.view_functions[name]) for name in TWO_FACTOR_DECISIONS}
    assert declared == TWO_FACTOR_DECISIONS
    covered = {case.values[0] for case in CASES}
    assert set(TWO_FACTOR_DECISIONS) <= covered

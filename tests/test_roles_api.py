"""The roles API: reads, role definitions, assignment rules, cache invalidation and the audit trail."""

import threading

import pytest
from bson import ObjectId

from console.accounts import Admin
from console.audit import AuditLog
from console.authz import BUILTIN_ROLES, CATALOG, PERMISSIONS, Role

BASE = "/api/phase14"


def problem(response, status):
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.mimetype == "application/problem+json"
    return response.json


# --- reads ---------------------------------------------------------------------------------------------------

def test_list_roles_shows_the_builtins_with_their_permissions(api):
    client = api("admin")
    body = client.get(f"{BASE}/roles").json
    names = [item["name"] for item in body["items"]]
    assert names == list(BUILTIN_ROLES)
    for item in body["items"]:
        assert set(item["permissions"]) == BUILTIN_ROLES[item["name"]]["permissions"]
        assert item["builtin"] is True and item["description"]
    assert next(i for i in body["items"] if i["name"] == "admin")["admins"] == 1


def test_role_permissions_and_unknown_role(api):
    client = api("super_admin")
    assert client.get(f"{BASE}/roles/moderator/permissions").json == {
        "role": "moderator", "permissions": ["submissions.review", "volunteers.manage", "communication.view"]}
    problem(client.get(f"{BASE}/roles/wizard/permissions"), 404)


def test_matrix_has_every_cell(api):
    body = api("admin").get(f"{BASE}/roles/matrix").json
    assert body["roles"] == list(BUILTIN_ROLES)
    assert [p["name"] for p in body["permissions"]] == [p.name for p in CATALOG]
    assert all(set(p) == {"name", "group", "description"} and p["description"] for p in body["permissions"])
    for role, cells in body["matrix"].items():
        assert set(cells) == PERMISSIONS
        assert {name for name, granted in cells.items() if granted} == BUILTIN_ROLES[role]["permissions"]


def test_admin_permissions_and_admins_list(api, create_admin):
    client = api("admin")
    analyst = create_admin("analyst", "moderator", email="two@test.example.com")
    body = client.get(f"{BASE}/admin/{analyst.id}/permissions").json
    assert body["admin_id"] == str(analyst.id) and body["roles"] == ["analyst", "moderator"]
    assert set(body["permissions"]) == (BUILTIN_ROLES["analyst"]["permissions"]
                                        | BUILTIN_ROLES["moderator"]["permissions"])
    problem(client.get(f"{BASE}/admin/{ObjectId()}/permissions"), 404)
    problem(client.get(f"{BASE}/admin/not-an-id/permissions"), 404)

    for index in range(3):
        create_admin("analyst", email=f"z{index}@test.example.com")
    first = client.get(f"{BASE}/admins?limit=3").json
    assert [a["email"] for a in first["items"]] == ["admin@test.example.com", "two@test.example.com",
                                                   "z0@test.example.com"]
    assert {"id", "email", "roles", "last_login_at", "active"} <= set(first["items"][0])
    rest = client.get(f"{BASE}/admins?limit=3&cursor={first['next_cursor']}").json
    assert [a["email"] for a in rest["items"]] == ["z1@test.example.com", "z2@test.example.com"]
    assert rest["next_cursor"] is None
    assert [a["email"] for a in client.get(f"{BASE}/admins?role=moderator").json["items"]] == ["two@test.example.com"]
    assert [a["email"] for a in client.get(f"{BASE}/admins?q=Z1").json["items"]] == ["z1@test.example.com"]


# --- role definitions ----------------------------------------------------------------------------------------

def test_update_role_permissions_applies_on_the_next_request(api):
    boss, analyst = api("super_admin"), api("analyst")
    problem(analyst.get(f"{BASE}/roles"), 403)
    response = boss.put(f"{BASE}/roles/analyst/permissions",
                        json={"permissions": ["analytics.view", "reports.view", "roles.view"]})
    assert response.status_code == 200
    assert response.json["permissions"] == ["analytics.view", "reports.view", "roles.view"]
    assert analyst.get(f"{BASE}/roles").status_code == 200  # no restart, no stale cache
    problem(analyst.get(f"{BASE}/communication/templates"), 403)  # templates.view was taken away
    entry = AuditLog.objects(action="role.permissions_changed").get()
    assert entry.actor == boss.admin.email and entry.target == "role:analyst" and entry.ip == "127.0.0.1"
    assert set(entry.before["permissions"]) == BUILTIN_ROLES["analyst"]["permissions"]
    assert entry.after == {"permissions": ["analytics.view", "reports.view", "roles.view"]}
    assert entry.details["added"] == ["roles.view"]


def test_role_change_reaches_another_process(make_app, app, api):
    """A second app (another worker process) with a warm role cache sees the change on its next request."""
    other = make_app()
    analyst = api("analyst")
    token = {"Authorization": f"Bearer {analyst.token}"}
    with other.test_client() as second:
        assert second.get(f"{BASE}/roles", headers=token).status_code == 403  # cache now warm
        api("super_admin").put(f"{BASE}/roles/analyst/permissions", json={"permissions": ["roles.view"]})
        assert second.get(f"{BASE}/roles", headers=token).status_code == 200


@pytest.mark.parametrize("body, status, field", [
    ({"permissions": ["nope.nothing"]}, 422, "permissions.0"),
    ({"permissions": ["roles.view", "roles.fly"]}, 422, "permissions.1"),
    ({"permissions": "roles.view"}, 422, "permissions"),
    ({"permissions": [{"$gt": ""}]}, 422, "permissions.0.$gt"),
    ({}, 422, "permissions"),
    ({"permissions": [], "extra": 1}, 422, "extra"),
])
def test_update_role_permissions_rejects_bad_input(api, body, status, field):
    body_out = problem(api("super_admin").put(f"{BASE}/roles/analyst/permissions", json=body), status)
    assert field in [error["field"] for error in body_out["errors"]]
    assert set(Role.objects.get(name="analyst").permissions) == BUILTIN_ROLES["analyst"]["permissions"]


def test_super_admin_role_cannot_change_and_unknown_role_is_404(api):
    boss = api("super_admin")
    problem(boss.put(f"{BASE}/roles/super_admin/permissions", json={"permissions": []}), 403)
    problem(boss.put(f"{BASE}/roles/wizard/permissions", json={"permissions": []}), 404)
    assert set(Role.objects.get(name="super_admin").permissions) == PERMISSIONS


def test_admin_cannot_manage_roles(api):
    admin = api("admin")
    problem(admin.put(f"{BASE}/roles/analyst/permissions", json={"permissions": []}), 403)
    problem(admin.post(f"{BASE}/roles", json={"name": "x_role", "permissions": []}), 403)
    problem(admin.delete(f"{BASE}/roles/analyst"), 403)


def test_custom_role_lifecycle(api, create_admin):
    boss = api("super_admin")
    created = boss.post(f"{BASE}/roles", json={"name": "events_helper", "description": "Runs events",
                                               "permissions": ["events.manage", "blogs.create", "events.manage"]})
    assert created.status_code == 201
    assert created.json["name"] == "events_helper" and created.json["builtin"] is False
    assert created.json["permissions"] == ["blogs.create", "events.manage"]
    problem(boss.post(f"{BASE}/roles", json={"name": "events_helper", "permissions": []}), 409)
    problem(boss.post(f"{BASE}/roles", json={"name": "admin", "permissions": []}), 409)
    assert "events_helper" in boss.get(f"{BASE}/roles/matrix").json["matrix"]

    helper = create_admin(email="helper@test.example.com")
    assert boss.post(f"{BASE}/admin/{helper.id}/assign-role", json={"role": "events_helper"}).status_code == 200
    problem(boss.delete(f"{BASE}/roles/events_helper"), 409)
    boss.post(f"{BASE}/admin/{helper.id}/assign-role", json={"roles": []})
    assert boss.delete(f"{BASE}/roles/events_helper").status_code == 204
    assert Role.objects(name="events_helper").count() == 0
    problem(boss.delete(f"{BASE}/roles/events_helper"), 404)
    problem(boss.delete(f"{BASE}/roles/moderator"), 403)
    actions = [e.action for e in AuditLog.objects(target="role:events_helper").order_by("at")]
    assert actions == ["role.created", "role.deleted"]


@pytest.mark.parametrize("body, field", [
    ({"name": "Bad Name", "permissions": []}, "name"),
    ({"name": "x", "permissions": []}, "name"),
    ({"name": "9lives", "permissions": []}, "name"),
    ({"name": "a" * 41, "permissions": []}, "name"),
    ({"name": "ok_name", "permissions": ["nope.nothing"]}, "permissions.0"),
    ({"name": "ok_name", "permissions": [], "builtin": True}, "builtin"),
    ({"name": {"$ne": None}, "permissions": []}, "name.$ne"),
    ({"permissions": []}, "name"),
])
def test_create_role_rejects_bad_input(api, body, field):
    out = problem(api("super_admin").post(f"{BASE}/roles", json=body), 422)
    assert field in [error["field"] for error in out["errors"]]
    assert Role.objects.count() == len(BUILTIN_ROLES)


def test_non_json_body_is_415(api):
    response = api("super_admin").post(f"{BASE}/roles", data="name=x", content_type="application/x-www-form-urlencoded")
    problem(response, 415)


# --- assignment ----------------------------------------------------------------------------------------------

def test_assign_adds_one_role_or_replaces_the_set(api, create_admin):
    admin = api("admin")
    target = create_admin("analyst", email="target@test.example.com")
    added = admin.post(f"{BASE}/admin/{target.id}/assign-role", json={"role": "moderator"})
    assert added.status_code == 200 and added.json["roles"] == ["moderator", "analyst"]
    assert "submissions.review" in added.json["permissions"]
    replaced = admin.post(f"{BASE}/admin/{target.id}/assign-role", json={"roles": ["content_manager"]})
    assert replaced.json["roles"] == ["content_manager"]
    assert Admin.objects.get(id=target.id).roles == ["content_manager"]
    entries = list(AuditLog.objects(action="admin.roles_changed", target=target.email).order_by("at"))
    assert [(e.before, e.after) for e in entries] == [
        ({"roles": ["analyst"]}, {"roles": ["moderator", "analyst"]}),
        ({"roles": ["moderator", "analyst"]}, {"roles": ["content_manager"]}),
    ]
    assert all(e.actor == admin.admin.email and e.ip for e in entries)


def test_assignment_applies_on_the_targets_next_request(api, app):
    admin = api("admin")
    target = api("analyst", email="next@test.example.com")
    problem(target.get(f"{BASE}/roles"), 403)
    admin.post(f"{BASE}/admin/{target.admin.id}/assign-role", json={"role": "admin"})
    assert target.get(f"{BASE}/roles").status_code == 200
    admin.post(f"{BASE}/admin/{target.admin.id}/assign-role", json={"roles": ["analyst"]})
    problem(target.get(f"{BASE}/roles"), 401)  # a removed role ends the target's tokens (issue 15, item 5)


@pytest.mark.parametrize("body, field", [
    ({"role": "wizard"}, "role"),
    ({"roles": ["analyst", "wizard"]}, "roles.1"),
    ({}, "body"),
    ({"role": "analyst", "roles": ["analyst"]}, "body"),
    ({"role": ""}, "role"),
    ({"roles": "analyst"}, "roles"),
    ({"role": {"$gt": ""}}, "role.$gt"),
])
def test_assign_rejects_bad_input(api, create_admin, body, field):
    target = create_admin("analyst", email="target@test.example.com")
    out = problem(api("super_admin").post(f"{BASE}/admin/{target.id}/assign-role", json=body), 422)
    assert field in [error["field"] for error in out["errors"]], out
    assert Admin.objects.get(id=target.id).roles == ["analyst"]


def test_assign_to_unknown_admin_is_404(api):
    client = api("super_admin")
    problem(client.post(f"{BASE}/admin/{ObjectId()}/assign-role", json={"role": "analyst"}), 404)
    problem(client.post(f"{BASE}/admin/zzz/assign-role", json={"role": "analyst"}), 404)


@pytest.mark.parametrize("actor_roles, target_roles, body", [
    (("admin",), ("analyst",), {"role": "super_admin"}),             # grant above own level
    (("admin",), ("super_admin",), {"roles": ["admin"]}),            # demote someone above own level
    (("content_manager", "roles_assigner"), ("analyst",), {"role": "moderator"}),  # lacks moderation perms
])
def test_cannot_grant_or_remove_above_own_level(api, create_admin, actor_roles, target_roles, body):
    Role(name="roles_assigner", permissions=["roles.assign", "roles.view"]).save()
    actor = api(*actor_roles)
    create_admin("super_admin", email="root@test.example.com")
    target = create_admin(*target_roles, email="target@test.example.com")
    out = problem(actor.post(f"{BASE}/admin/{target.id}/assign-role", json=body), 403)
    assert "permissions you do not hold" in out["detail"]
    assert Admin.objects.get(id=target.id).roles == list(target_roles)
    refused = AuditLog.objects(action="admin.roles_change_refused").get()
    assert refused.actor == actor.admin.email and refused.target == target.email


def test_admin_can_grant_roles_within_their_level(api, create_admin):
    target = create_admin(email="new@test.example.com")
    out = api("admin").post(f"{BASE}/admin/{target.id}/assign-role", json={"roles": ["admin", "analyst"]})
    assert out.status_code == 200 and out.json["roles"] == ["admin", "analyst"]


@pytest.mark.parametrize("role", ["super_admin", "admin"])
def test_nobody_changes_their_own_roles(api, role):
    client = api(role)
    problem(client.post(f"{BASE}/admin/{client.admin.id}/assign-role", json={"role": "analyst"}), 403)
    problem(client.post(f"{BASE}/admin/{client.admin.id}/assign-role", json={"roles": []}), 403)
    assert Admin.objects.get(id=client.admin.id).roles == [role]


def _root_equivalent(api):
    """An admin with every permission through a custom role, so only the last-super_admin rule can stop them."""
    Role(name="all_access", permissions=sorted(PERMISSIONS)).save()
    return api("all_access", email="root2@test.example.com")


def test_the_last_active_super_admin_cannot_be_removed(api, create_admin):
    actor = _root_equivalent(api)
    last = create_admin("super_admin", email="last@test.example.com")
    create_admin("super_admin", email="gone@test.example.com", active=False)  # inactive ones do not count
    out = problem(actor.post(f"{BASE}/admin/{last.id}/assign-role", json={"roles": ["admin"]}), 403)
    assert "last active super_admin" in out["detail"]
    assert Admin.objects.get(id=last.id).roles == ["super_admin"]
    create_admin("super_admin", email="another@test.example.com")
    assert actor.post(f"{BASE}/admin/{last.id}/assign-role", json={"roles": ["admin"]}).status_code == 200


def test_two_concurrent_demotions_cannot_both_succeed(api, app):
    """Two super admins demote each other at the same instant: exactly one wins, one super_admin remains."""
    for round_ in range(4):
        Admin.objects(roles="super_admin").delete()
        first = api("super_admin", email=f"a{round_}@test.example.com")
        second = api("super_admin", email=f"b{round_}@test.example.com")
        barrier, results = threading.Barrier(2), {}

        def demote(actor, target, key, barrier=barrier, results=results):
            barrier.wait()
            with app.app_context():
                results[key] = actor.post(f"{BASE}/admin/{target.id}/assign-role", json={"roles": ["admin"]})

        threads = [threading.Thread(target=demote, args=(first, second.admin, "a")),
                   threading.Thread(target=demote, args=(second, first.admin, "b"))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(r.status_code for r in results.values()) == [200, 403], round_
        assert Admin.objects(roles="super_admin", active=True).count() == 1


def test_denied_requests_are_audited(api):
    client = api("moderator")
    for _ in range(3):
        problem(client.get(f"{BASE}/roles/matrix"), 403)
    entry = AuditLog.objects(action="permission.denied").get()
    assert entry.actor == client.admin.email and entry.target == f"{BASE}/roles/matrix"
    assert entry.details["permission"] == "roles.view"


def test_audit_log_api_filters_and_pages(api, create_admin):
    boss = api("super_admin")
    targets = [create_admin(email=f"t{i}@test.example.com") for i in range(3)]
    for target in targets:
        boss.post(f"{BASE}/admin/{target.id}/assign-role", json={"role": "analyst"})
    boss.put(f"{BASE}/roles/analyst/permissions", json={"permissions": ["analytics.view"]})
    page = boss.get(f"{BASE}/audit-log?action=admin.roles_changed&limit=2").json
    assert [e["target"] for e in page["items"]] == ["t2@test.example.com", "t1@test.example.com"]
    rest = boss.get(f"{BASE}/audit-log?action=admin.roles_changed&limit=2&cursor={page['next_cursor']}").json
    assert [e["target"] for e in rest["items"]] == ["t0@test.example.com"] and rest["next_cursor"] is None
    roles_only = boss.get(f"{BASE}/audit-log?action=role.").json["items"]
    assert [e["action"] for e in roles_only] == ["role.permissions_changed"]
    assert boss.get(f"{BASE}/audit-log?target=T1@").json["items"][0]["target"] == "t1@test.example.com"
    assert boss.get(f"{BASE}/audit-log?since=2999-01-01T00:00:00Z").json["items"] == []
    problem(boss.get(f"{BASE}/audit-log?since=yesterday"), 422)
    problem(boss.get(f"{BASE}/audit-log?cursor=forged"), 422)


def test_the_assignment_lock_is_released_and_readable(api, create_admin):
    from console.authz import AuthzState

    target = create_admin(email="lock@test.example.com")
    api("admin").post(f"{BASE}/admin/{target.id}/assign-role", json={"role": "analyst"})
    lock = {state.key: state for state in AuthzState.objects}["assignment-lock"]
    assert lock.holder is None and lock.until is None

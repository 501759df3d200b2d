"""Role permission writes carry a version (issue 15, item 10) and show who gains and loses first (17, item 6)."""

from __future__ import annotations

from tests.conftest import csrf_token_from

BASE = "/api/phase14"


def test_a_stale_version_is_409_and_changes_nothing(api):
    boss = api("super_admin")
    role = boss.get(f"{BASE}/roles").get_json()["items"]
    analyst = next(r for r in role if r["name"] == "analyst")
    version = analyst["version"]
    first = boss.put(f"{BASE}/roles/analyst/permissions",
                     json={"permissions": analyst["permissions"] + ["hardening.view"], "version": version})
    assert first.status_code == 200 and first.get_json()["version"] == version + 1
    second = boss.put(f"{BASE}/roles/analyst/permissions",
                      json={"permissions": ["analytics.view"], "version": version})
    assert second.status_code == 409 and second.mimetype == "application/problem+json"
    perms = boss.get(f"{BASE}/roles/analyst/permissions").get_json()["permissions"]
    assert "hardening.view" in perms and "reports.view" in perms


def test_preview_says_who_gains_and_loses_which_permissions_and_pages(api, create_admin):
    create_admin("analyst", email="ana@test.example.com")
    create_admin("analyst", "admin", email="both@test.example.com")
    boss = api("super_admin")
    body = {"permissions": ["analytics.view", "templates.view", "communication.view", "hardening.view"]}
    preview = boss.post(f"{BASE}/roles/analyst/permissions/preview", json=body)
    assert preview.status_code == 200
    out = preview.get_json()
    assert out["added"] == ["hardening.view"] and out["removed"] == ["reports.view"]
    # "both" also holds admin, which already grants both permissions: their access does not change
    assert [(a["email"], a["gains"], a["loses"]) for a in out["admins"]] == [
        ("ana@test.example.com", ["hardening.view"], ["reports.view"])]
    assert out["admins"][0]["pages_gained"] and out["pages_gained"] and out["version"] == 0
    assert "reports.view" in boss.get(f"{BASE}/roles/analyst/permissions").get_json()["permissions"]  # unchanged
    assert api("admin", email="a@test.example.com").post(f"{BASE}/roles/analyst/permissions/preview",
                                                         json=body).status_code == 403


def test_the_matrix_cell_previews_then_saves_with_the_version(login, create_admin):
    create_admin("analyst", email="ana@test.example.com")
    browser = login("super_admin")
    preview = browser.get("/roles/analyst/cells/hardening.view/preview", headers={"HX-Request": "true"})
    assert preview.status_code == 200 and b"ana@test.example.com" in preview.data and b"version 0" in preview.data
    ok = browser.post("/roles/analyst/cells/hardening.view", data={"version": "0"}, headers={"HX-Request": "true"})
    assert ok.status_code == 200 and b'data-granted="true"' in ok.data
    stale = browser.post("/roles/analyst/cells/reports.view", data={"version": "0"}, headers={"HX-Request": "true"})
    assert b"meanwhile" in stale.headers["HX-Trigger"].encode()
    assert csrf_token_from(browser.get("/roles").data)

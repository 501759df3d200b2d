"""Console pages: the matrix (htmx toggle), admins and role assignment, the audit log, dashboard widgets."""

import csv
import io
import json
import random

import pytest

from console.accounts import Admin
from console.audit import AuditLog, record
from console.authz import PERMISSIONS, Role
from console.blueprints.platform.summaries import seed_platform_demo
from console.timeutil import utcnow


def test_matrix_page_is_editable_for_super_admin(login):
    page = login("super_admin").get("/roles").get_data(as_text=True)
    assert 'id="permission-matrix"' in page and "matrix-editable" in page
    for group in ("Content", "Moderation", "Analytics", "Communication", "Roles", "Hardening"):
        assert f'scope="rowgroup">{group}<' in page
    assert page.count('class="cell-toggle') == len(PERMISSIONS) * 4  # every role but super_admin is editable
    assert "New custom role" in page


def test_matrix_page_is_read_only_for_admin(login):
    page = login("admin").get("/roles").get_data(as_text=True)
    assert "matrix-readonly" in page and "cell-toggle" not in page and "New custom role" not in page
    assert page.count('class="cell-mark') == len(PERMISSIONS) * 5


def test_toggle_cell_rerenders_the_cell_with_a_toast(login):
    browser = login("super_admin")
    response = browser.post("/roles/analyst/cells/hardening.view", headers={"HX-Request": "true"})
    assert response.status_code == 200
    html = response.get_data(as_text=True)
    assert html.lstrip().startswith('<td class="cell matrix-cell" id="cell-analyst-hardening-view"')
    assert 'data-granted="true"' in html
    assert json.loads(response.headers["HX-Trigger"])["toast"]["message"] == "hardening.view granted to analyst."
    assert "hardening.view" in Role.objects.get(name="analyst").permissions
    entry = AuditLog.objects(action="role.permissions_changed").get()
    assert entry.after["permissions"][-1] == "hardening.view" and entry.details["added"] == ["hardening.view"]

    again = browser.post("/roles/analyst/cells/hardening.view", headers={"HX-Request": "true"})
    assert 'data-granted="false"' in again.get_data(as_text=True)
    assert "hardening.view" not in Role.objects.get(name="analyst").permissions


def test_toggle_cell_refusals(login):
    browser = login("super_admin")
    locked = browser.post("/roles/super_admin/cells/roles.view")
    assert locked.status_code == 200 and json.loads(locked.headers["HX-Trigger"])["toast"]["tone"] == "error"
    assert browser.post("/roles/wizard/cells/roles.view").status_code == 404
    assert browser.post("/roles/analyst/cells/nope.nothing").status_code == 422
    assert login("admin", email="a@test.example.com").post("/roles/analyst/cells/roles.view").status_code == 403


def test_toggle_cell_needs_the_csrf_token(login):
    browser = login("super_admin")
    browser.environ_base.pop("HTTP_X_CSRFTOKEN")
    assert browser.post("/roles/analyst/cells/hardening.view").status_code == 400
    assert "hardening.view" not in Role.objects.get(name="analyst").permissions


def test_create_and_delete_a_custom_role_from_the_page(login):
    browser = login("super_admin")
    response = browser.post("/roles/new", data={"name": "events_helper", "description": "Runs events",
                                                "permissions": ["events.manage", "blogs.create"]},
                            follow_redirects=True)
    assert "Created the role events_helper" in response.get_data(as_text=True)
    assert Role.objects.get(name="events_helper").permissions == ["blogs.create", "events.manage"]
    bad = browser.post("/roles/new", data={"name": "Bad Name"}, follow_redirects=True)
    assert "Could not create the role" in bad.get_data(as_text=True)
    builtin = browser.post("/roles/moderator/delete", follow_redirects=True)
    assert "built-in roles cannot be deleted" in builtin.get_data(as_text=True)
    deleted = browser.post("/roles/events_helper/delete", follow_redirects=True)
    assert "Deleted the role events_helper" in deleted.get_data(as_text=True)
    assert not Role.objects(name="events_helper").count()


def test_admins_list_and_admin_page(login, create_admin):
    browser = login("admin")
    target = create_admin("analyst", email="analyst@test.example.com")
    target.update(set__last_login_at=utcnow())
    listing = browser.get("/admins").get_data(as_text=True)
    assert "analyst@test.example.com" in listing and "<time" in listing
    assert "analyst@test.example.com" not in browser.get("/admins?role=moderator").get_data(as_text=True)

    page = browser.get(f"/admins/{target.id}").get_data(as_text=True)
    offered = set(__import__("re").findall(r'name="roles" value="([a-z_]+)"', page))
    assert offered == {"admin", "content_manager", "moderator", "analyst"}  # never super_admin for an admin
    assert "analytics.view" in page and "Effective permissions (4)" in page
    own = browser.get(f"/admins/{browser.admin.id}").get_data(as_text=True)
    assert "You cannot change your own roles" in own and 'name="roles"' not in own
    assert browser.get("/admins/not-an-id").status_code == 404


def test_assign_roles_from_the_admin_page_keeps_roles_above_the_actor(login, create_admin):
    browser = login("admin")
    target = create_admin("super_admin", "analyst", email="both@test.example.com")
    create_admin("super_admin", email="root@test.example.com")
    response = browser.post(f"/admins/{target.id}/roles", data={"roles": ["moderator"]}, follow_redirects=True)
    assert "now has" in response.get_data(as_text=True)
    assert Admin.objects.get(id=target.id).roles == ["super_admin", "moderator"]
    trail = browser.get(f"/admins/{target.id}").get_data(as_text=True)
    assert "admin.roles_changed" in trail


def test_audit_page_filters_pages_and_exports_csv(login):
    browser = login("super_admin")
    for index in range(55):
        record("role.permissions_changed", f"role:r{index}", {"permissions": []}, {"permissions": ["x"]},
               actor="alice@example.com")
    record("admin.roles_changed", "=cmd|' /C calc'!A0", None, None, actor="bob@example.com")
    first = browser.get("/audit?actor=alice").get_data(as_text=True)
    assert first.count('class="audit-row') == 50 and "Next page" in first
    cursor = __import__("re").search(r'href="(/audit\?[^"]*cursor=[^"]+)"', first).group(1).replace("&amp;", "&")
    assert browser.get(cursor).get_data(as_text=True).count('class="audit-row') == 5
    assert browser.get("/audit?action=admin.").get_data(as_text=True).count('class="audit-row') == 1
    today = utcnow().date().isoformat()
    assert browser.get(f"/audit?from={today}&to={today}&actor=alice").get_data(as_text=True).count(
        'class="audit-row') == 50
    assert "No entries match" in browser.get("/audit?from=2999-01-01").get_data(as_text=True)

    export = browser.get("/audit.csv?actor=bob")
    assert export.mimetype == "text/csv" and "attachment" in export.headers["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(export.get_data(as_text=True))))
    assert len(rows) == 1 and rows[0]["target"].startswith("'=")  # no formula injection
    everything = list(csv.DictReader(io.StringIO(browser.get("/audit.csv").get_data(as_text=True))))
    assert len(everything) >= 56


@pytest.mark.parametrize("role, allowed", [("admin", True), ("analyst", False), ("moderator", False)])
def test_administration_pages_follow_roles_view(login, role, allowed):
    browser = login(role)
    for path in ("/roles", "/admins", "/audit", "/audit.csv", "/widgets/security"):
        assert browser.get(path).status_code == (200 if allowed else 403), path


def test_platform_widgets_show_counts_or_an_empty_state(login, app):
    moderator = login("moderator")
    assert "Nothing waits for review" in moderator.get("/widgets/platform/submissions").get_data(as_text=True)
    assert "No volunteers" in moderator.get("/widgets/platform/volunteers").get_data(as_text=True)
    first = seed_platform_demo(random.Random(1), utcnow())
    assert first.startswith("80 new documents")
    assert seed_platform_demo(random.Random(1), utcnow()).startswith("0 new documents")  # idempotent
    from console.db import get_db

    pending = get_db().submissions.count_documents({"status": "pending"})
    html = moderator.get("/widgets/platform/submissions").get_data(as_text=True)
    assert "Submissions waiting" in html and f'<div class="stat-value">{pending}</div>' in html
    assert "Active volunteers" in moderator.get("/widgets/platform/volunteers").get_data(as_text=True)
    assert moderator.get("/widgets/platform/blogs").status_code == 403

    content = login("content_manager")
    assert "Published" in content.get("/widgets/platform/blogs").get_data(as_text=True)
    assert "Upcoming" in content.get("/widgets/platform/events").get_data(as_text=True)
    assert content.get("/widgets/platform/submissions").status_code == 403


@pytest.mark.parametrize("role, shown, hidden", [
    ("moderator", ["Moderation queue", "Volunteers"],
     ["Content pipeline", "Blogs", "Events", "Security activity", "Roles &amp; permissions", "Reports"]),
    ("content_manager", ["Content pipeline", "Blogs", "Events"],
     ["Moderation queue", "Volunteers", "Audit log", "Reports"]),
    ("analyst", ["Reports"], ["Moderation queue", "Content pipeline", "Blogs", "Admins", "Audit log"]),
    ("admin", ["Moderation queue", "Content pipeline", "Reports", "Blogs", "Security activity",
               "Roles &amp; permissions", "Audit log"], []),
])
def test_dashboard_is_shaped_by_role(login, role, shown, hidden):
    page = login(role).get("/").get_data(as_text=True)
    for title in shown:
        assert f">{title}<" in page, title
    for title in hidden:
        assert f">{title}<" not in page, title


def test_templates_widget_counts_by_category(login):
    from console.db import get_db

    content = login("content_manager")
    get_db().email_templates.delete_many({})  # init-db's built-in catalog: this test counts its own
    assert "No email templates" in content.get("/widgets/platform/templates").get_data(as_text=True)
    get_db().email_templates.insert_many([
        {"name": "Welcome", "category": "onboarding", "updated_at": utcnow()},
        {"name": "We miss you", "category": "re-engagement", "updated_at": utcnow()},
        {"name": "Digest", "category": "re-engagement", "updated_at": utcnow()},
    ])
    html = content.get("/widgets/platform/templates").get_data(as_text=True)
    assert '<div class="stat-value">3</div>' in html and "Re-engagement" in html and "We miss you" in html
    assert login("moderator").get("/widgets/platform/templates").status_code == 403

"""Roles in the browser: toggling the matrix, the read-only view, and a dashboard shaped by each role."""

import random

import pytest

from console.audit import AuditLog
from console.authz import BUILTIN_ROLES, PERMISSIONS, Role
from console.blueprints.platform.demo import seed_members
from console.blueprints.platform.summaries import seed_platform_demo
from console.timeutil import utcnow


def test_super_admin_toggles_a_matrix_cell(live, page, sign_in, output_dir):
    sign_in("super_admin")
    page.goto(f"{live.live_url}/roles")
    cell = page.locator("#cell-analyst-hardening-view")
    assert cell.get_attribute("data-granted") == "false"
    cell.locator("button").click()
    page.wait_for_selector("#confirm-change")  # see before you save: who gains and loses, then confirm
    page.locator("#confirm-change").click()
    page.locator(".toast").filter(has_text="hardening.view granted to analyst.").wait_for()
    page.wait_for_selector('#cell-analyst-hardening-view[data-granted="true"]')
    assert page.locator("#cell-analyst-hardening-view button.is-on").is_visible()
    page.screenshot(path=str(output_dir / "roles-matrix-super_admin.png"), full_page=True)
    with live.app_context():
        assert "hardening.view" in Role.objects.get(name="analyst").permissions
        assert AuditLog.objects(action="role.permissions_changed", target="role:analyst").count() == 1
    assert page.locator("#cell-super_admin-roles-manage button").count() == 0  # super_admin stays whole
    assert not page.js_errors, page.js_errors


def test_admin_sees_a_read_only_matrix(live, page, sign_in, output_dir):
    sign_in("admin")
    page.goto(f"{live.live_url}/roles")
    assert page.locator("#permission-matrix.matrix-readonly").is_visible()
    assert page.locator(".cell-toggle").count() == 0
    assert page.locator(".cell-mark").count() == len(PERMISSIONS) * len(BUILTIN_ROLES)
    assert "Read-only" in page.locator(".subtitle").inner_text()
    groups = page.locator("tr.group-row th").all_text_contents()
    assert [g.strip().lower() for g in groups] == ["content", "moderation", "analytics", "communication", "roles",
                                                   "hardening"]
    page.screenshot(path=str(output_dir / "roles-matrix-admin.png"), full_page=True)


def test_admin_assigns_a_role_on_the_admin_page(live, page, sign_in, output_dir):
    sign_in("analyst", email="ana@browser.example.com")
    page.context.clear_cookies()
    sign_in("admin")
    page.goto(f"{live.live_url}/admins")
    page.screenshot(path=str(output_dir / "roles-admins.png"), full_page=True)
    page.get_by_role("link", name="Ana").click()
    offered = page.locator("input[name=roles]")
    assert sorted(offered.evaluate_all("els => els.map(e => e.value)")) == [
        "admin", "analyst", "content_manager", "moderator"]
    page.check("input[name=roles][value=moderator]")
    page.click("text=Save roles")
    assert "now has: moderator, analyst" in page.locator(".flash-success").inner_text()
    assert "admin.roles_changed" in page.locator("#audit-trail").inner_text()
    page.screenshot(path=str(output_dir / "roles-admin-page.png"), full_page=True)

    page.goto(f"{live.live_url}/audit")
    page.select_option("select[name=action]", "admin.")
    page.click("#audit-filters button[type=submit]")
    rows = page.locator("#audit-table tbody tr")
    assert rows.count() == 1 and "ana@browser.example.com" in rows.first.inner_text()
    assert "action=admin." in page.locator("text=Export CSV").get_attribute("href")
    page.screenshot(path=str(output_dir / "roles-audit-log.png"), full_page=True)


def _seed_analytics() -> None:
    """Activity for 80 demo members, their churn scores, a little mail history and one sent campaign."""
    from console.blueprints.communication.demo import seed_communication
    from console.blueprints.communication.models import EmailTemplate
    from console.blueprints.engagement import campaigns
    from console.blueprints.engagement.churn import rescore
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill

    ids = [f"m{n:04d}" for n in range(1, 81)]
    backfill(demo_events(random.Random(2), utcnow(), ids))
    rescore()
    seed_communication(random.Random(2), utcnow())
    template = EmailTemplate.objects(key="engagement.we_miss_you").first()
    campaigns.trigger({"name": "Autumn win-back", "template_id": str(template.id), "holdout_percent": 40,
                       "segment": {"user_ids": ids[:40]}}, actor="seed")


# role → (widget titles that must show, widget titles that must not, nav sections that must not show)
DASHBOARDS = {
    "super_admin": (["Moderation queue", "Content pipeline", "Reports", "Volunteers", "Security activity"], [], []),
    "admin": (["Moderation queue", "Content pipeline", "Reports", "Security activity"], [], []),
    "content_manager": (["Content pipeline", "Blogs", "Events", "Email templates"],
                        ["Moderation queue", "Volunteers", "Security activity", "Members", "Reports"],
                        ["Administration", "Engagement"]),
    "moderator": (["Moderation queue", "Volunteers"],
                  ["Content pipeline", "Blogs", "Events", "Email templates", "Security activity", "Members", "Reports"],
                  ["Administration", "Engagement"]),
    "analyst": (["Members", "Engagement", "Reports"],
                ["Moderation queue", "Content pipeline", "Volunteers", "Blogs", "Events", "Security activity"],
                ["Administration", "Content"]),
}
# the block each role's work starts from: first on the dashboard
FIRST = {"super_admin": "Moderation queue", "admin": "Moderation queue", "content_manager": "Content pipeline",
         "moderator": "Moderation queue", "analyst": "Members"}


@pytest.mark.parametrize("role", list(DASHBOARDS))
def test_dashboard_per_role(live, page, sign_in, output_dir, role):
    with live.app_context():
        seed_members(random.Random(1))
        seed_platform_demo(random.Random(1), utcnow())
        if "analytics.view" in BUILTIN_ROLES[role]["permissions"]:
            _seed_analytics()
    sign_in(role)
    page.wait_for_selector(".widget .skeleton", state="detached", timeout=15000)
    shown, hidden, hidden_sections = DASHBOARDS[role]
    titles = [t.strip() for t in page.locator(".widget .card-title").all_text_contents()]
    for title in shown:
        assert title in titles, (role, titles)
    for title in hidden:
        assert title not in titles, (role, titles)
    sections = [s.strip().lower() for s in page.locator(".nav-heading").all_inner_texts()]
    for section in hidden_sections:
        assert section.lower() not in sections, (role, sections)
    if "Security activity" in shown:
        assert "administration" in sections
        assert page.locator(".sidebar").get_by_text("Roles & permissions").is_visible()
    assert titles[0] == FIRST[role], (role, titles)
    if "Moderation queue" in shown:
        assert page.locator("[data-widget=submissions] .stat-value").first.inner_text().isdigit()
    page.screenshot(path=str(output_dir / f"dashboard-{role}.png"), full_page=True)
    assert not page.js_errors, page.js_errors

"""Drill-down: the members behind a retention cell and a lifecycle bar segment, paged."""

from __future__ import annotations

import pytest

from tests.engagement_helpers import BASE, ev, track


@pytest.fixture
def reader(api):
    return api("analyst")


@pytest.fixture
def weeks(client):
    """a: Jan 5, Jan 12 · b: Jan 6 · c: Dec 29, Jan 7, Jan 13 (ISO weeks start Monday: Dec 29, Jan 5, Jan 12)."""
    track(client, [
        ev("a", "2026-01-05T10:00:00Z", traits={"email": "a@example.org"}), ev("a", "2026-01-12T10:00:00Z"),
        ev("b", "2026-01-06T10:00:00Z"),
        ev("c", "2025-12-29T10:00:00Z"), ev("c", "2026-01-07T10:00:00Z"), ev("c", "2026-01-13T10:00:00Z"),
    ])


def ids(body):
    return [item["user_id"] for item in body["items"]]


def test_cohort_members_first_time_and_recurring(reader, weeks):
    first = reader.get(f"{BASE}/cohort-members?period=week&mode=first_time&cohort=2026-01-05&offset=0").get_json()
    assert ids(first) == ["a", "b"] and first["total"] == 2 and first["next_cursor"] is None
    assert first["items"][0]["email"] == "a@example.org" and first["items"][0]["last_seen"] == "2026-01-12T10:00:00Z"
    back = reader.get(f"{BASE}/cohort-members?period=week&mode=first_time&cohort=2026-01-05&offset=1").get_json()
    assert ids(back) == ["a"]
    recurring = reader.get(f"{BASE}/cohort-members?period=week&mode=recurring&cohort=2026-01-05&offset=1").get_json()
    assert ids(recurring) == ["a", "c"]


def test_lifecycle_members_by_stage(reader, weeks):
    def stage(period, name):
        return ids(reader.get(f"{BASE}/lifecycle-members?interval=week&period={period}&stage={name}").get_json())

    assert stage("2026-01-12", "returning") == ["a", "c"] and stage("2026-01-12", "dormant") == ["b"]
    assert stage("2026-01-05", "new") == ["a", "b"] and stage("2026-01-05", "returning") == ["c"]
    assert stage("2026-01-05", "resurrecting") == []


def test_paging_and_bad_queries(reader, weeks):
    url = f"{BASE}/cohort-members?period=week&mode=recurring&cohort=2026-01-05"
    first = reader.get(f"{url}&limit=2").get_json()
    rest = reader.get(f"{url}&limit=2&cursor={first['next_cursor']}").get_json()
    assert ids(first) == ["a", "b"] and ids(rest) == ["c"] and rest["next_cursor"] is None and rest["total"] == 3
    for query in ("cohort-members?cohort=nope", "cohort-members?cohort=2026-01-05&offset=-1",
                  "cohort-members", "lifecycle-members?period=2026-01-05&stage=asleep",
                  "cohort-members?cohort=2026-01-05&cursor=garbage"):
        assert reader.get(f"{BASE}/{query}").status_code == 422, query
    assert reader.get(f"{BASE}/lifecycle-members?period=2026-01-05&stage=new").status_code == 200


# --- pages: every number opens its members ---------------------------------------------------------------

COHORT_PAGE = "/engagement/drilldown?kind=cohort&period=week&mode=recurring&cohort=2026-01-05&offset=1"


def rows(html: str) -> list[str]:
    import re

    return re.findall(r'<tr><td><a href="/engagement/members/([^"]+)"', html)


def test_drilldown_page_lists_the_members_of_each_kind(login, weeks):
    browser = login("analyst")
    page = browser.get(COHORT_PAGE)
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert rows(html) == ["a", "c"] and "back 1 week later" in html and 'id="drill-total"' in html
    assert "campaign-form" not in html  # no campaigns.send: no button
    lifecycle = browser.get("/engagement/drilldown?kind=lifecycle&interval=week&at=2026-01-12&stage=dormant")
    assert rows(lifecycle.get_data(as_text=True)) == ["b"]
    feature = browser.get("/engagement/drilldown?kind=feature&feature=chat&from=2026-01-01&to=2026-01-31")
    assert "Nobody here" in feature.get_data(as_text=True)
    sticky = browser.get("/engagement/drilldown?kind=stickiness&window=30&to=2026-01-13&days=3")
    assert rows(sticky.get_data(as_text=True)) == ["c"]  # c: Dec 29, Jan 7, Jan 13; a: 2 days; b: 1
    sticky7 = browser.get("/engagement/drilldown?kind=stickiness&window=7&to=2026-01-13&days=1")
    assert rows(sticky7.get_data(as_text=True)) == ["a"]  # Jan 7-13: a once (Jan 12), c twice
    for bad in ("kind=cohort", "kind=nope", "kind=cohort&cohort=2026-13-01", "kind=lifecycle&at=2026-01-05",
                "kind=stickiness&window=7&days=8", "kind=stickiness&window=9&days=1", "kind=feature"):
        assert browser.get(f"/engagement/drilldown?{bad}").status_code == 400, bad
        assert browser.get(f"/engagement/drilldown.csv?{bad}").status_code == 400, bad


def test_feature_drilldown_and_paging(login, client):
    track(client, [ev(f"u{n:03d}", "2026-02-02T10:00:00Z", feature="blog_read") for n in range(60)]
          + [ev("other", "2026-02-02T10:00:00Z", feature="search")])
    browser = login("analyst")
    url = "/engagement/drilldown?kind=feature&feature=blog_read&from=2026-02-01&to=2026-02-03"
    html = browser.get(url).get_data(as_text=True)
    assert len(rows(html)) == 50 and "60</strong> members" in html and 'id="drill-more"' in html
    import re

    more = re.search(r'id="drill-more" hx-get="([^"]+)"', html).group(1).replace("&amp;", "&")
    rest = browser.get(more, headers={"HX-Request": "true"}).get_data(as_text=True)
    assert rows(rest) == [f"u{n:03d}" for n in range(50, 60)] and "<html" not in rest and "drill-more" not in rest
    csv_body = browser.get(url.replace("drilldown?", "drilldown.csv?")).get_data(as_text=True).splitlines()
    assert csv_body[0] == "user_id,email,last_seen" and len(csv_body) == 61 and csv_body[1].startswith("u000,")


def test_drilldown_csv_and_campaign_from_exactly_these_members(login, weeks, api):
    sender = api("admin")
    template = sender.post("/api/phase14/communication/templates", json={
        "name": "Back", "subject": "Hi", "category": "marketing", "html_body": "<p>Hi</p>"}).get_json()["id"]
    browser = login("admin")
    csv_body = browser.get(COHORT_PAGE.replace("drilldown?", "drilldown.csv?")).get_data(as_text=True)
    assert csv_body.splitlines() == ["user_id,email,last_seen", "a,a@example.org,2026-01-12T10:00:00Z",
                                     "c,,2026-01-13T10:00:00Z"]
    html = browser.get(COHORT_PAGE).get_data(as_text=True)
    assert 'id="campaign-form"' in html and html.count('type="hidden" name="user_ids"') == 2
    assert "Exactly the members listed above." in html and "tick some rows" not in html
    form = {"name": "Drill", "template_id": template, "holdout_percent": "0", "user_ids": ["a", "c"]}
    preview = browser.post("/engagement/campaigns/preview", data=form).get_data(as_text=True)
    assert "<strong>2</strong> members match" in preview
    started = browser.post("/engagement/campaigns/start", data=form)
    assert started.status_code == 204
    from console.blueprints.engagement.models import Campaign

    campaign = Campaign.objects.get()
    assert campaign.segment == {"user_ids": ["a", "c"]} and campaign.treated == ["a"]  # c has no email
    assert campaign.skipped["no_email"] == 1


def test_pages_link_their_numbers_to_the_drilldown(login, weeks):
    browser = login("analyst")
    retention = browser.get("/engagement/fragments/retention?period=week&mode=recurring&cohorts=60")
    assert "/engagement/drilldown?kind=cohort&amp;period=week&amp;mode=recurring&amp;cohort=2026-01-05&amp;offset=1" \
        in retention.get_data(as_text=True)
    lifecycle = browser.get("/engagement/fragments/lifecycle?interval=week&periods=52").get_data(as_text=True)
    assert "kind=lifecycle" in lifecycle and "data-drill=" in lifecycle and "stage=__NAME__" in lifecycle
    overview = browser.get("/engagement/fragments/overview?from=2026-01-01&to=2026-01-13").get_data(as_text=True)
    assert "kind=stickiness" in overview and "kind=feature" not in overview  # no features tracked: no rows


def test_never_active_is_a_campaign_segment(api, client):
    from console.blueprints.engagement.campaigns import lifecycle_stages
    from console.members import Member
    from console.timeutil import utcnow

    Member._get_collection().insert_one({"user_id": "ghost", "email": "g@example.org", "created_at": utcnow()})
    track(client, [ev("here", utcnow().isoformat())])
    stages = lifecycle_stages(utcnow())
    assert stages["ghost"] == "never_active" and stages["here"] in {"new", "returning"}
    body = {"name": "x", "segment": {"lifecycle": "never_active"}, "template_id": "0" * 24, "holdout_percent": 0}
    response = api("admin").post(f"{BASE}/campaigns/trigger", json=body)
    assert response.status_code == 422 and "template" in response.get_data(as_text=True).lower()  # segment valid
    body["segment"] = {"lifecycle": "asleep"}
    assert "segment" in api("admin").post(f"{BASE}/campaigns/trigger", json=body).get_data(as_text=True)

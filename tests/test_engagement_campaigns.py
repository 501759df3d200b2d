"""Re-engagement campaigns: segment, deterministic holdout, skips, dry run, real sends, results and lift."""

from __future__ import annotations

from datetime import timedelta

import pytest

from console.blueprints.communication.models import EmailQueue
from console.blueprints.engagement.campaigns import in_holdout, lift
from console.blueprints.engagement.models import Campaign
from console.members import Member
from console.timeutil import isoformat, utcnow
from tests.engagement_helpers import BASE, ev, track

TRIGGER = f"{BASE}/campaigns/trigger"


@pytest.fixture
def sender(api):
    return api("admin")


@pytest.fixture
def template_id(sender):
    response = sender.post("/api/phase14/communication/templates", json={
        "name": "We miss you", "subject": "Come back, {{ name }}", "category": "marketing",
        "html_body": "<p>Hello {{ name }}, there is news in the community.</p>", "sample_data": {"name": "Ava"}})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.get_json()["id"]


@pytest.fixture
def lapsed(client):
    """20 members (c01..c20) last active 40 days ago, with emails; one active member (fresh)."""
    long_ago = isoformat(utcnow() - timedelta(days=40))
    track(client, [ev(f"c{n:02d}", long_ago, traits={"email": f"c{n:02d}@example.org", "name": f"C {n}"})
                   for n in range(1, 21)] + [ev("fresh", isoformat(utcnow() - timedelta(hours=1)),
                                                traits={"email": "fresh@example.org"})])
    return [f"c{n:02d}" for n in range(1, 21)]


def trigger(client, template_id, expect=202, **overrides):
    body = {"name": "Win back", "segment": {"inactive_days": 30}, "template_id": template_id,
            "holdout_percent": 20, **overrides}
    response = client.post(TRIGGER, json=body)
    assert response.status_code == expect, response.get_data(as_text=True)
    return response.get_json()


def test_dry_run_counts_and_sends_nothing(sender, template_id, lapsed, servers, run_jobs):
    body = trigger(sender, template_id, dry_run=True)
    assert body["targeted"] == 20 and body["enqueued"] == 0 and body["campaign_id"] is None
    assert body["holdout"] + body["treated"] == 20
    assert body["skipped"] == {"opted_out": 0, "suppressed": 0, "in_holdout": 0, "frequency_capped": 0, "no_email": 0}
    run_jobs()
    assert EmailQueue.objects.count() == 0 and servers.messages() == [] and Campaign.objects.count() == 0


def test_holdout_is_deterministic_per_salt():
    ids = [f"user-{n}" for n in range(2000)]
    first = [uid for uid in ids if in_holdout("salt-a", uid, 25)]
    assert first == [uid for uid in ids if in_holdout("salt-a", uid, 25)]
    assert 400 < len(first) < 600  # about a quarter
    assert first != [uid for uid in ids if in_holdout("salt-b", uid, 25)]
    assert not any(in_holdout("salt-a", uid, 0) for uid in ids)


def test_real_send_through_mail_pipeline_then_results(sender, template_id, lapsed, servers, run_jobs, client):
    body = trigger(sender, template_id)
    campaign = Campaign.objects.get(id=body["campaign_id"])
    expected_holdout = [uid for uid in lapsed if in_holdout(campaign.salt, uid, 20)]
    assert campaign.holdout == expected_holdout and body["holdout"] == len(expected_holdout)
    assert body["enqueued"] == 20 - len(expected_holdout) == len(campaign.treated)
    status = sender.get(f"{BASE}/campaigns/{body['campaign_id']}").get_json()
    assert status["status"] in {"queued", "sending"} and status["progress"] == 0
    run_jobs()
    messages = servers.messages()
    assert sorted(m["To"] for m in messages) == sorted(f"{uid}@example.org" for uid in campaign.treated)
    assert all(m["Subject"].startswith("Come back") for m in messages)
    # one treated and one held-out member come back
    track(client, [ev(campaign.treated[0], isoformat(utcnow())), ev(campaign.holdout[0], isoformat(utcnow()))]
          if campaign.holdout else [ev(campaign.treated[0], isoformat(utcnow()))])
    report = sender.get(f"{BASE}/campaigns/{body['campaign_id']}").get_json()
    assert report["status"] == "complete" and report["progress"] == 100
    results = report["results"]
    assert results["treated"] == {"members": len(campaign.treated), "reactivated": 1}
    assert results["treated_rate"] == pytest.approx(1 / len(campaign.treated))
    assert results["window_days"] == 14 and results["final"] is False
    if campaign.holdout:
        assert results["holdout"]["reactivated"] == 1
        assert results["lift"] == pytest.approx(1 / len(campaign.treated) - 1 / len(campaign.holdout))


def test_skips_opted_out_suppressed_no_email_and_frequency_cap(sender, template_id, lapsed, api):
    from console.blueprints.communication.prefs import suppress

    prefs = api("super_admin")
    response = prefs.post("/api/phase14/communication/preferences/c01",
                          json={"channels": {"email": True, "sms": True}, "categories": {"marketing": False}})
    assert response.status_code == 200, response.get_data(as_text=True)
    suppress("c02@example.org", "hard_bounce")
    Member._get_collection().update_one({"user_id": "c03"}, {"$unset": {"email": 1}})
    first = trigger(sender, template_id, segment={"user_ids": ["c04", "c05"]}, holdout_percent=0)
    assert first["enqueued"] == 2
    body = trigger(sender, template_id, holdout_percent=0)
    assert body["skipped"] == {"opted_out": 1, "suppressed": 1, "in_holdout": 0, "frequency_capped": 2, "no_email": 1}
    assert body["targeted"] == 20 and body["enqueued"] == 15
    treated = set(Campaign.objects.get(id=body["campaign_id"]).treated)
    assert not treated & {"c01", "c02", "c03", "c04", "c05"}


def test_segments_by_risk_and_lifecycle(sender, template_id, lapsed):
    assert trigger(sender, template_id, segment={"lifecycle": "churned"}, dry_run=True)["targeted"] == 20
    assert trigger(sender, template_id, segment={"lifecycle": "new"}, dry_run=True)["targeted"] == 1
    from console.blueprints.engagement.churn import rescore

    rescore()  # risk comes from stored scores: the lapsed members are churned, not scored
    assert trigger(sender, template_id, segment={"min_risk": 0.0}, dry_run=True)["targeted"] == 1
    assert trigger(sender, template_id, segment={"inactive_days": 30, "user_ids": ["c01", "fresh"]},
                   dry_run=True)["targeted"] == 1


@pytest.mark.parametrize("override, field", [
    ({"holdout_percent": 60}, "holdout_percent"),
    ({"holdout_percent": -1}, "holdout_percent"),
    ({"segment": {}}, "segment"),
    ({"segment": {"lifecycle": "asleep"}}, "segment.lifecycle"),
    ({"template_id": "000000000000000000000000"}, "template_id"),
    ({"template_id": "not-an-id"}, "template_id"),
    ({"name": ""}, "name"),
    ({"surprise": 1}, "surprise"),
])
def test_bad_trigger_bodies(sender, template_id, lapsed, override, field):
    body = trigger(sender, override.pop("template_id", template_id), expect=422, **override)
    assert any(error["field"].startswith(field) for error in body["errors"]), body
    assert Campaign.objects.count() == 0


@pytest.mark.parametrize("role", ["analyst", "moderator", "content_manager"])
def test_only_campaign_senders_trigger(api, role, template_id):
    response = api(role).post(TRIGGER, json={"name": "x", "segment": {"inactive_days": 30},
                                             "template_id": template_id, "holdout_percent": 10})
    assert response.status_code == 403


def test_unknown_campaign_is_404(sender):
    assert sender.get(f"{BASE}/campaigns/000000000000000000000000").status_code == 404
    assert sender.get(f"{BASE}/campaigns/nope").status_code == 404


def test_lift_newcombe_interval_and_when_it_may_be_significant():
    result = lift(30, 100, 20, 100, final=True)
    assert result["difference"] == pytest.approx(0.1) and result["method"] == "newcombe-hybrid-score"
    assert result["ci_low"] == pytest.approx(-0.0202, abs=1e-3) and result["ci_high"] == pytest.approx(0.2167, abs=1e-3)
    assert result["significant"] is False and result["relative_lift"] == pytest.approx(0.5)
    assert lift(60, 100, 20, 100, final=True)["significant"] is True
    assert lift(60, 100, 20, 100, final=False)["significant"] is False  # the window is still open
    assert lift(5, 10, 0, 0, final=True)["difference"] is None


def test_lift_degenerate_holdouts_are_not_significant():
    # 5/90 vs 0/10: the normal approximation said [+0.8, +10.3] points; the score interval spans zero
    result = lift(5, 90, 0, 10, final=True)
    assert result["ci_low"] < 0 < result["ci_high"] and result["significant"] is False
    assert result["ci_low"] == pytest.approx(-0.2236, abs=2e-3) and result["ci_high"] == pytest.approx(0.1235, abs=2e-3)
    # 3/3 vs 0/1: a holdout of one member is never a verdict, whatever the interval
    tiny = lift(3, 3, 0, 1, final=True)
    assert tiny["difference"] == 1.0 and tiny["ci_high"] <= 1.0 and tiny["ci_low"] < 1.0
    assert tiny["significant"] is False and tiny["min_holdout"] == 30


def test_open_holdout_members_are_skipped_unless_overridden(sender, template_id, lapsed):
    first = trigger(sender, template_id, name="First", holdout_percent=50)
    held = Campaign.objects.get(id=first["campaign_id"]).holdout
    assert held
    second = trigger(sender, template_id, name="Second", holdout_percent=0, segment={"user_ids": held})
    assert second["skipped"]["in_holdout"] == len(held) and second["enqueued"] == 0
    third = trigger(sender, template_id, name="Third", holdout_percent=0, segment={"user_ids": held[:1]},
                    include_holdout_members=True)
    assert third["enqueued"] == 1
    first_report = sender.get(f"{BASE}/campaigns/{first['campaign_id']}").get_json()["contamination"]
    assert first_report["contaminated"] is True
    assert first_report["holdout_mailed_by"] == [{"campaign_id": third["campaign_id"], "name": "Third", "members": 1}]
    third_report = sender.get(f"{BASE}/campaigns/{third['campaign_id']}").get_json()["contamination"]
    assert third_report["mailed_from_holdouts_of"] == [{"campaign_id": first["campaign_id"], "name": "First",
                                                        "members": 1}]


def test_analysts_read_campaigns_but_cannot_trigger(api, sender, template_id, lapsed, login):
    body = trigger(sender, template_id, segment={"user_ids": ["c01"]})
    analyst = api("analyst")
    assert analyst.get(f"{BASE}/campaigns").status_code == 200
    assert analyst.get(f"{BASE}/campaigns/{body['campaign_id']}").status_code == 200
    assert analyst.post(TRIGGER, json={"name": "x", "segment": {"user_ids": ["c02"]}, "template_id": template_id,
                                       "holdout_percent": 0}).status_code == 403
    page = login("analyst").get("/engagement/campaigns").get_data(as_text=True)
    assert "Win back" in page and "Start from at-risk" not in page


def test_campaign_pages_preview_then_send(login, template_id, lapsed, run_jobs, servers):
    browser = login("admin")
    preview = browser.post("/engagement/campaigns/preview", data={
        "name": "From the page", "template_id": template_id, "holdout_percent": "0", "inactive_days": "30",
        "user_ids": ["c06", "c07"]})
    assert preview.status_code == 200 and "Send to 2 members" in preview.get_data(as_text=True)
    assert EmailQueue.objects.count() == 0
    sent = browser.post("/engagement/campaigns/start", data={
        "name": "From the page", "template_id": template_id, "holdout_percent": "0", "inactive_days": "30",
        "user_ids": ["c06", "c07"]})
    assert sent.status_code == 204 and sent.headers["HX-Redirect"].startswith("/engagement/campaigns/")
    page = browser.get(sent.headers["HX-Redirect"]).get_data(as_text=True)
    assert "From the page" in page and 'hx-trigger="every 2s"' in page
    run_jobs()
    done = browser.get(sent.headers["HX-Redirect"] + "/status").get_data(as_text=True)
    assert 'data-status="complete"' in done and "every 2s" not in done and "Did it work?" in done
    assert len(servers.messages()) == 2
    assert "From the page" in browser.get("/engagement/campaigns").get_data(as_text=True)


def test_campaign_list(sender, template_id, lapsed):
    first = trigger(sender, template_id, name="First", segment={"user_ids": ["c01"]})
    second = trigger(sender, template_id, name="Second", segment={"user_ids": ["c02"]})
    page = sender.get(f"{BASE}/campaigns?limit=1").get_json()
    assert [item["id"] for item in page["items"]] == [second["campaign_id"]]
    rest = sender.get(f"{BASE}/campaigns?limit=1&cursor={page['next_cursor']}").get_json()
    assert [item["id"] for item in rest["items"]] == [first["campaign_id"]] and rest["next_cursor"] is None
    assert sender.get(f"{BASE}/campaigns?cursor=not-a-cursor").status_code == 422

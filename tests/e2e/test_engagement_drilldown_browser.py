"""An admin opens the members behind a number: a retention cell lists its members, they export as CSV and a
campaign starts from exactly them; a stickiness bar and a lifecycle bar segment open their members too; the
At-risk page shows when it was scored, the backtest beside the list and a rescore's progress."""

from __future__ import annotations

import csv
import io
import random

import pytest

from console.timeutil import utcnow


@pytest.fixture
def demo(live):
    from console.blueprints.communication.models import EmailTemplate
    from console.blueprints.engagement.churn import rescore
    from console.blueprints.engagement.demo import demo_events
    from console.blueprints.engagement.ingest import backfill
    from console.members import Member

    with live.app_context():
        ids = [f"m{n:04d}" for n in range(1, 121)]
        Member._get_collection().insert_many([{"user_id": uid, "email": f"{uid}@example.org", "name": f"Demo {uid}",
                                               "created_at": utcnow()} for uid in ids])
        backfill(demo_events(random.Random(5), utcnow(), ids))
        rescore()
        EmailTemplate(name="Win back", subject="We miss you, {{ name }}", html_body="<p>Hi {{ name }}</p>",
                      category="marketing").save()
    return ids


def test_retention_cell_to_members_csv_and_campaign(live, page, sign_in, demo, output_dir):
    from console.blueprints.engagement.models import Campaign

    sign_in("admin")
    page.goto(f"{live.live_url}/engagement/retention")
    page.wait_for_selector("#retention-table a.cell-link")
    cell = page.locator("#retention-table a.cell-link[data-offset='1']").first
    count = int(cell.locator("xpath=..").get_attribute("title").split(" of ")[0])
    assert count > 0
    cell.click()
    page.wait_for_selector("#drill-table")
    assert "back 1 week later" in page.locator("#drill-what").inner_text()
    listed = page.locator("#drill-table tbody tr td:first-child a").all_inner_texts()
    assert page.locator("#drill-total").inner_text().startswith(f"{count} member") and len(listed) == min(count, 50)
    page.screenshot(path=str(output_dir / "engagement-drilldown.png"), full_page=True)

    with page.expect_download() as download:
        page.click("#drill-csv")
    rows = list(csv.reader(io.StringIO(download.value.path().read_text())))
    assert rows[0] == ["user_id", "email", "last_seen"] and [row[0] for row in rows[1:]][:len(listed)] == listed
    assert len(rows) == count + 1

    page.fill("#campaign-form input[name=holdout_percent]", "0")
    page.click("#campaign-preview-btn")
    page.wait_for_selector("#preview-result")
    assert f"{count}</strong> members match" in page.locator("#preview-result").inner_html()
    page.click("#campaign-send")
    page.wait_for_url("**/engagement/campaigns/*")
    page.wait_for_selector("#campaign-status")
    with live.app_context():
        campaign = Campaign.objects.get()
        assert sorted(campaign.segment["user_ids"]) == sorted(row[0] for row in rows[1:])
        assert len(campaign.treated) + len(campaign.holdout) + sum(campaign.skipped.values()) == count
    assert not page.js_errors, page.js_errors


def test_stickiness_and_lifecycle_bar_clicks_open_their_members(live, page, sign_in, demo):
    sign_in("analyst")
    page.goto(f"{live.live_url}/engagement")
    page.wait_for_selector("#chart-stickiness[data-drill-bound=true]")
    bars = page.locator("#chart-stickiness .bars .point path")
    heights = [box["height"] if (box := bars.nth(n).bounding_box()) else 0 for n in range(bars.count())]
    tallest = max(range(len(heights)), key=heights.__getitem__)
    expected = page.evaluate("JSON.parse(document.querySelector('#chart-stickiness')"
                             f".getAttribute('data-plotly')).data[0].y[{tallest}]")
    page.locator("#chart-stickiness").scroll_into_view_if_needed()
    box = bars.nth(tallest).bounding_box()  # plotly hit-tests clicks on its drag layer, above the bars
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#drill-card[data-kind=stickiness]")
    assert f"active on exactly {tallest + 1} of the 30 days" in page.locator("#drill-what").inner_text()
    assert page.locator("#drill-total").inner_text().startswith(f"{expected} member")
    assert page.locator("#campaign-form").count() == 0  # an analyst cannot send campaigns

    page.goto(f"{live.live_url}/engagement/lifecycle")
    page.wait_for_selector("#chart-lifecycle[data-drill-bound=true]")
    figure = page.evaluate("JSON.parse(document.querySelector('#chart-lifecycle').getAttribute('data-plotly'))")
    returning = next(n for n, trace in enumerate(figure["data"]) if trace["name"] == "Returning")
    segments = page.locator("#chart-lifecycle .trace.bars").nth(returning).locator(".point path")
    page.locator("#chart-lifecycle").scroll_into_view_if_needed()
    heights = [box["height"] if (box := segments.nth(n).bounding_box()) else 0 for n in range(segments.count())]
    tallest = max(range(len(heights)), key=heights.__getitem__)
    box = segments.nth(tallest).bounding_box()
    page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.wait_for_selector("#drill-card[data-kind=lifecycle]")
    period = figure["data"][returning]["customdata"][tallest]
    assert f"returning in the week starting {period}" in page.locator("#drill-what").inner_text()
    expected = figure["data"][returning]["y"][tallest]
    assert page.locator("#drill-total").inner_text().startswith(f"{expected} member")
    assert not page.js_errors, page.js_errors


def test_at_risk_page_scored_backtest_and_rescore_progress(live, page, sign_in, demo, output_dir):
    from tests.conftest import work_queued_jobs

    sign_in("analyst")
    page.goto(f"{live.live_url}/engagement/at-risk")
    assert "Scored" in page.locator("#scored-at").inner_text()
    verdict = page.locator("#backtest-verdict").inner_text()
    assert "simple rule" in verdict and page.locator("#backtest-table tbody tr").count() == 2
    page.click("#rescore-btn")
    page.wait_for_selector("#rescore-status[data-status=queued] .progress")
    page.screenshot(path=str(output_dir / "engagement-at-risk-rescoring.png"), full_page=True)
    work_queued_jobs(live)
    # finished: the server asks htmx to reload the page, which shows the new scores and backtest
    page.wait_for_function("() => !document.querySelector('#rescore-status')", timeout=15000)
    page.wait_for_selector("#scored-at")
    page.wait_for_selector("#risk-table, .empty")
    page.screenshot(path=str(output_dir / "engagement-at-risk.png"), full_page=True)
    page.screenshot(path=str(output_dir / "engagement-at-risk-top.png"))
    assert not page.js_errors, page.js_errors

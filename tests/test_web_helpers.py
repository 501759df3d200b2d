"""The shared helpers pages and APIs use: one cursor decoder (console.pagination) and the page helpers
(console/web.py: query strings read by the API's query models, CSV downloads with the formula guard)."""

from __future__ import annotations

import csv
import io
from datetime import UTC, datetime

import pytest
from bson import ObjectId

from console.blueprints.communication.schemas import QueueQuery
from console.errors import ApiError
from console.pagination import (
    INVALID_CURSOR,
    cursor_for,
    cursor_or_none,
    decode_cursor,
    decode_id_cursor,
    encode_cursor,
    encode_id_cursor,
)
from console.web import csv_lines, query_args


def test_a_cursor_comes_back_as_the_kinds_it_was_made_of(app):
    with app.app_context():
        stamp = datetime(2026, 3, 4, 5, 6, 7, 8000, tzinfo=UTC)
        assert decode_cursor(encode_cursor([stamp, "u1"]), datetime, str) == [stamp, "u1"]
        assert decode_cursor(encode_cursor([0.25, "u2"]), float, str) == [0.25, "u2"]
        assert decode_cursor(encode_cursor([40]), int) == [40]
        assert decode_cursor(None, datetime, str) is None and cursor_for(None) is None


@pytest.mark.parametrize("values, kinds", [
    (["u1"], (datetime, str)),           # too short
    (["not a time", "u1"], (datetime, str)),
    ([-1], (int,)),                      # an offset is never negative
    ([True], (int,)),
    (["0.5", "u1"], (float, str)),
    ([3], (str,)),
])
def test_a_cursor_of_another_shape_is_refused_with_the_one_message(app, values, kinds):
    with app.app_context():
        cursor = encode_cursor(values)
        with pytest.raises(ApiError) as error:
            decode_cursor(cursor, *kinds)
        assert error.value.status == 422 and error.value.errors == [{"field": "cursor", "message": INVALID_CURSOR}]
        assert cursor_or_none(cursor, *kinds) is None  # pages start again instead
        assert cursor_or_none("hand-edited", *kinds) is None


def test_id_cursors_keep_whether_the_id_was_an_object_id(app):
    with app.app_context():
        oid = ObjectId()
        assert decode_id_cursor(encode_id_cursor(oid)) == oid
        assert decode_id_cursor(encode_id_cursor("post-7")) == "post-7"
        with pytest.raises(ApiError):
            decode_id_cursor(encode_cursor(["zz", "oid"]))


def test_csv_guards_formulas_in_header_and_cells_and_streams_in_chunks():
    rows = [["=SUM(A1)", "+1", "@x", None, datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC), {"b": 1}]]
    rows += [[f"member {i}", i, "", "", "", ""] for i in range(3000)]
    chunks = list(csv_lines(["-header", "b", "c", "d", "e", "f"], rows))
    assert len(chunks) > 1  # sent while the rows are read, not all at the end
    parsed = list(csv.reader(io.StringIO("".join(chunks))))
    assert parsed[0][0] == "'-header"
    assert parsed[1] == ["'=SUM(A1)", "'+1", "'@x", "", "2026-01-02T03:04:05Z", '{"b": 1}']
    assert len(parsed) == 3002 and parsed[-1][:2] == ["member 2999", "2999"]


def test_a_page_reads_its_query_string_by_the_api_model_and_keeps_what_it_can(app):
    with app.test_request_context("/communication/queue?status=failed&priority=urgent&q=+a@example.com+&x=1"):
        query = query_args(QueueQuery)
    assert (query.status, query.priority, query.q) == ("failed", None, "a@example.com")
    with app.test_request_context("/communication/queue?status=&limit=9999"):
        query = query_args(QueueQuery)
    assert (query.status, query.limit) == (None, 50)


def test_a_rule_across_fields_that_still_fails_leaves_every_field_at_its_default(app):
    from console.blueprints.engagement.schemas import MetricsQuery

    with app.test_request_context("/engagement?from=2000-01-01&to=2026-01-01&interval=week"):  # > 10 years
        query = query_args(MetricsQuery)
    assert (query.start, query.end, query.interval) == (None, None, "day")


LONG = "x" * 400


@pytest.mark.parametrize("path, shown", [
    ("/system/errors?hours=abc&state=everything", ['chip chip-on" data-hours="24"', 'chip-on" data-state="active"']),
    ("/system/errors?hours=100000", ['chip chip-on" data-hours="24"']),
    ("/system/performance?hours=0", []),
    ("/engagement/fragments/overview?interval=year&from=2026-02-30&to=nope", ['data-interval="day"']),
    ("/engagement/fragments/retention?period=year&cohorts=0&mode=x", ['data-period="week" data-mode="first_time"',
                                                                       ">8 weekly cohorts"]),
    ("/engagement/lifecycle?interval=hour&periods=abc", ['<option value="week" selected>']),
    ("/engagement/inactive?days=-3&cursor=" + LONG, ['name="days" min="1" max="3650" value="30"']),
    ("/engagement/at-risk?tier=extreme&min_risk=7", ['<option value="high" selected>']),
    (f"/engagement/members?q={LONG}", []),
    (f"/engagement/members/u1/activity?event={LONG}&cursor=abc", []),
    (f"/audit?from=2026-13-01&to=yesterday&cursor=abc&actor={LONG}", ['name="from" value=""', 'name="actor" value=""']),
    (f"/admins?q={LONG}&role={LONG}&cursor={LONG}", []),
    ("/moderation/submissions?status=Pending!&from=soon&cursor=abc", ['<option value="pending" selected>']),
    ("/moderation/volunteers.csv?status=%24ne&to=2026-02-31", []),
    (f"/content/blogs?status=gone&cursor=abc&q={LONG}", []),
    (f"/communication/templates?category={LONG}", []),
])
def test_a_page_shows_its_default_for_a_query_value_the_api_refuses(login, path, shown):
    """Where the API answers 422, a page (a person's typo, an old bookmark) shows its default: never a 4xx/500."""
    response = login("super_admin").get(path)
    assert response.status_code == 200, (path, response.status_code)
    html = response.get_data(as_text=True)
    for text in shown:
        assert text in html, (path, text)


def test_the_overview_reads_a_from_after_to_the_other_way_round(login):
    response = login("super_admin").get("/engagement/overview.csv?from=2026-03-15&to=2026-03-04&interval=week")
    assert response.status_code == 200
    assert "engagement-week-2026-03-04-2026-03-15.csv" in response.headers["Content-Disposition"]

"""Telemetry: error groups, request timings and slow MongoDB commands, read back through the API."""

from console import telemetry
from console.members import Member
from console.telemetry.models import TELEMETRY_COLLECTIONS, ErrorEvent, RequestMetric, SlowQuery
from tests.hardening_helpers import API, add_failing_routes


def test_a_failing_route_is_one_error_group_with_the_right_count(app, api):
    add_failing_routes(app)
    client = api("admin")
    for n in (1, 2, 3):
        response = client.get(f"/probe/fail/{n}?token=s3cr3t-value&page=2")
        assert response.status_code == 500
        assert "boom" not in response.get_data(as_text=True)  # never a stack trace or message in the response
    assert client.get("/probe/ok").status_code == 200
    assert ErrorEvent.objects.count() == 1
    telemetry.flush(app)

    body = client.get(f"{API}/error-analysis?hours=1").json
    assert body["total"] == 3
    [group] = body["groups"]
    assert group["count"] == 3
    assert group["exception"] == "ValueError"
    assert group["endpoint"] == "/probe/fail/<int:n>"
    assert "someone@example.com" not in group["message"] and "<email>" in group["message"]
    assert group["sample"]["path"].startswith("/probe/fail/") and group["sample"]["query_keys"] == ["page", "token"]
    assert group["first_seen"] <= group["last_seen"]
    assert "s3cr3t-value" not in str(ErrorEvent.objects.as_pymongo().first())
    # 3 errors among the requests recorded in the window (the three failures, one success, one token call...)
    assert 0 < body["error_rate"] <= 0.75


def test_fingerprints_follow_the_code_path_or_the_normalized_message(app):
    from console.errors import ApiError
    from console.pagination import decode_cursor, object_id_or_404
    from console.telemetry import fingerprint

    prints = []
    for call in (lambda: object_id_or_404("x"), lambda: object_id_or_404("y"), lambda: decode_cursor("bad")):
        try:
            call()
        except ApiError as error:
            prints.append(fingerprint(error))
    assert prints[0][0] == prints[1][0]  # same in-app frames
    assert prints[0][0] != prints[2][0]  # another function raised it
    assert prints[0][2] == ["console.pagination:object_id_or_404"]
    # without in-app frames, the message decides, with numbers, ids and addresses stripped
    assert fingerprint(ValueError("user 12 missing"))[0] == fingerprint(ValueError("user 99 missing"))[0]
    assert fingerprint(ValueError("user 12 missing"))[0] != fingerprint(ValueError("order 12 missing"))[0]


def test_performance_review_reports_percentiles_and_error_rate(app, api):
    add_failing_routes(app)
    client = api("admin")
    for _ in range(8):
        assert client.get("/probe/ok").status_code == 200
    for n in range(2):
        client.get(f"/probe/fail/{n}")
    client.get("/probe/missing")
    written = telemetry.flush(app)
    assert written["request_metrics"] >= 3
    body = client.get(f"{API}/performance-review?hours=1").json
    rows = {(e["endpoint"], e["method"]): e for e in body["endpoints"]}
    ok = rows[("/probe/ok", "GET")]
    assert ok["count"] == 8 and ok["error_rate"] == 0
    assert 0 < ok["p50_ms"] <= ok["p95_ms"] <= ok["p99_ms"]
    failing = rows[("/probe/fail/<int:n>", "GET")]
    assert failing["count"] == 2 and failing["error_rate"] == 1.0
    assert rows[("/probe/missing", "GET")]["error_rate"] == 0  # a 404 is not a server error
    p95s = [e["p95_ms"] for e in body["endpoints"]]
    assert p95s == sorted(p95s, reverse=True)
    stored = RequestMetric.objects(endpoint="/probe/ok").first()
    assert stored.expires_at > stored.at


def test_a_collscan_is_recorded_as_a_shape_with_its_plan_and_a_suggested_index(make_app, app, api):
    slow_app = make_app(SLOW_QUERY_MS=0)
    with slow_app.app_context():
        Member(user_id="u1", email="one@example.com", name="Private Name").save()
        assert Member.objects(name="Private Name").first() is not None  # no index on name: COLLSCAN
        assert Member.objects(user_id="member-4711").first() is None  # indexed
        telemetry.flush(slow_app)
        client = api("admin")
        body = client.get(f"{API}/slow-queries?threshold_ms=0").json
    assert body["threshold_ms"] == 0
    finds = [q for q in body["items"] if q["collection"] == "users" and q["command_name"] == "find"]
    by_field = {next(iter(q["command"]["filter"])): q for q in finds}
    scan = by_field["name"]
    assert scan["command"]["filter"] == {"name": "<str>"}
    assert scan["plan"]["stage"] == "COLLSCAN"
    assert scan["suggested_index"]["keys"] == {"name": 1}
    assert "createIndex" in scan["suggested_index"]["command"]
    indexed = by_field["user_id"]
    assert indexed["plan"]["stage"] == "IXSCAN" and indexed["plan"]["index"] == "user_id_1"
    assert indexed["suggested_index"] is None
    stored = str(list(SlowQuery.objects.as_pymongo()))
    assert "Private Name" not in stored and "member-4711" not in stored
    assert not SlowQuery.objects(collection__in=list(TELEMETRY_COLLECTIONS)).count()
    assert api("admin").get(f"{API}/slow-queries?threshold_ms=60000").json["items"] == []


def test_shapes_keep_structure_and_drop_values():
    shape = telemetry.command_shape("find", {
        "find": "users", "filter": {"age": {"$gt": 30}, "tags": {"$in": ["a", "b"]}, "email": "x@y.z"},
        "sort": {"last_seen": -1}, "limit": 5, "lsid": {"id": "abc"}, "$db": "console"})
    assert shape == {"find": "users", "filter": {"age": {"$gt": "<int>"}, "tags": {"$in": ["<str>"]},
                                                 "email": "<str>"},
                     "sort": {"last_seen": -1}, "limit": "<int>"}


def test_the_background_flusher_writes_in_bulk_without_help(make_app, app, api):
    import time

    busy = make_app(TELEMETRY_FLUSH_EVERY=5)
    add_failing_routes(busy)
    client = busy.test_client()
    client.environ_base.update(api("admin").environ_base)
    for _ in range(5):
        assert client.get("/probe/ok").status_code == 200
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline and not RequestMetric.objects(endpoint="/probe/ok").count():
        time.sleep(0.05)
    [batch] = RequestMetric.objects(endpoint="/probe/ok")
    assert batch.n == 5 and len(batch.d) == 5 and batch.statuses == {"200": 5}


def test_under_load_durations_are_sampled_but_counts_stay_exact():
    collector = telemetry.Telemetry({"TELEMETRY_RESERVOIR": 50, "TELEMETRY_FLUSH_EVERY": 10**9})
    for i in range(2000):
        collector.record_request("/busy", "GET", 500 if i % 100 == 0 else 200, float(i % 97))
    bucket = collector._buckets[("/busy", "GET")]
    assert bucket.n == 2000 and bucket.errors == 20
    assert bucket.statuses == {"200": 1980, "500": 20}
    assert len(bucket.d) == 50

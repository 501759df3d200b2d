"""Property-based fuzzing of every /api operation from the OpenAPI document (schemathesis).

Pass means: no 5xx, every response conforms to the documented schema and status codes, a request refused
with 4xx writes nothing, and what is stored afterwards is whole (tests/fuzz_helpers.py). One test per
operation, then stateful runs that follow the spec's OpenAPI links (create a template → get, update with its
version, send, delete it; batch → status; role → assign → permissions ...).
`make test` runs a bounded number of examples; `make fuzz` runs many more (FUZZ_EXAMPLES, FUZZ_SCENARIOS).
"""

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from console import create_app, db
from console.openapi import build_spec
from tests.conftest import clean_state
from tests.fuzz_helpers import STATS, WriteRecorder, refused_requests_change_nothing, store_problems

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "15"))
SCENARIOS = int(os.environ.get("FUZZ_SCENARIOS", str(max(EXAMPLES, 60))))
# Schema-valid bodies may still be refused with a documented 422 for reasons a JSON Schema cannot say
# (an unknown referenced id, a template that does not compile, a weak password); likewise a request that
# breaks the schema may still be accepted where we are lenient (query strings). Everything else is checked.
SEMANTIC_CHECKS = [schemathesis.checks.positive_data_acceptance, schemathesis.checks.negative_data_rejection]
# The fuzzer calls as the platform's frontend would: cross-origin, from an origin CORS_ORIGINS allows.
CORS_ORIGIN = "https://app.example.org"
# Schemathesis' own strategies draw from `random` at times; Hypothesis warns about it, which is not our finding.
pytestmark = pytest.mark.filterwarnings("ignore:Do not use the `random` module inside strategies")


def _operations() -> list[tuple[str, str]]:
    """Every documented operation, read from the spec of an app that is never connected."""
    spec = build_spec(create_app({"TESTING": True, "SECRET_KEY": "collect-only", "MONGODB_URI":
                                  "mongodb://127.0.0.1:9/collect", "MONGO_TIMEOUT_MS": 10}))
    return [(path, method.upper()) for path, methods in spec["paths"].items() for method in methods]


@pytest.fixture
def recorder(app):
    """The app's MongoDB client, reconnected with a listener that records every write."""
    # Schemathesis probes every case without credentials too; that many anonymous requests would trip the
    # ingest limit (429, as documented for repeated failures) and hide what the probe is after (401).
    app.config["INGEST_RATE_LIMIT"] = "100000 per minute"
    listener = WriteRecorder()
    app.extensions.setdefault("command_listeners", []).append(listener)
    db.init_app(app)
    return listener


@pytest.fixture(autouse=True)
def _cors_on(monkeypatch):
    monkeypatch.setenv("CORS_ORIGINS", CORS_ORIGIN)  # read by create_app, so it must come before the app


@pytest.fixture
def headers(api):
    return {"Authorization": f"Bearer {api('super_admin').token}", "Origin": CORS_ORIGIN}


def _assert_store_whole(app) -> None:
    problems = store_problems(db.get_db())
    assert not problems, "\n".join(problems[:20])


@pytest.mark.parametrize(("path", "method"), _operations())
def test_api_operation_never_fails_and_matches_its_schema(app, recorder, headers, path, method):
    operation = schemathesis.openapi.from_wsgi("/api/openapi.json", app)[path][method]
    checks = [refused_requests_change_nothing(recorder)]

    @settings(max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True,
              database=None)
    @given(case=operation.as_strategy())
    def fuzz(case):
        recorder.clear()
        response = case.call(headers=headers)
        STATS["cases"][f"{method} {path}"] += 1
        STATS["statuses"][response.status_code] += 1
        assert response.headers.get("access-control-allow-origin") == [CORS_ORIGIN], response.status_code
        case.validate_response(response, additional_checks=checks, excluded_checks=SEMANTIC_CHECKS, headers=headers)

    fuzz()
    _assert_store_whole(app)


def test_linked_workflows_never_fail_and_leave_the_store_whole(app, servers, recorder, headers, create_admin):
    """Sequences of calls chained by the OpenAPI links; the auth operations stay out (one would revoke the
    fuzzer's own token). Every scenario starts from the same clean store, so Hypothesis can replay one."""
    from console.cli import prepare_database
    from console.security import issue_token

    def fresh_store():
        clean_state(servers)
        prepare_database()
        create_admin("analyst", email="a-target@test.example.com")  # someone the fuzzer may assign roles to
        headers["Authorization"] = f"Bearer {issue_token(create_admin('super_admin'))[0]}"

    schema = schemathesis.openapi.from_wsgi("/api/openapi.json", app).exclude(path_regex="^/api/auth/")
    checks = [refused_requests_change_nothing(recorder)]

    class Workflows(schema.as_state_machine()):
        def setup(self):
            fresh_store()
            STATS["scenarios"]["stateful"] += 1

        def get_call_kwargs(self, case):
            return {"headers": headers}

        def step(self, input):
            if input.transition is not None and input.is_applied:
                STATS["links"][input.transition.id] += 1
            recorder.clear()
            return super().step(input)

        def after_call(self, response, case):
            super().after_call(response, case)
            STATS["stateful_steps"][f"{case.method} {case.path}"] += 1
            STATS["statuses"][response.status_code] += 1

        def validate_response(self, response, case, additional_checks=None, **kwargs):
            case.validate_response(response, additional_checks=checks, excluded_checks=SEMANTIC_CHECKS,
                                   headers=headers, transport_kwargs=kwargs or None, recorder=self.recorder)

        def teardown(self):
            _assert_store_whole(app)

    Workflows.run(settings=settings(max_examples=SCENARIOS, stateful_step_count=8, deadline=None,
                                    suppress_health_check=list(HealthCheck), derandomize=True, database=None))
    followed = {name.split("] ")[1].split(" -> ")[0] for name in STATS["links"]}
    # Which links a bounded run reaches depends on the whole schema (the run is derandomized over it); the
    # template chain itself is walked link by link in test_foundation_api.py.
    from console.blueprints.communication.api import TEMPLATE_LINKS
    assert len(followed) >= 8 and followed & set(TEMPLATE_LINKS), sorted(followed)


def test_the_fuzzers_own_checks_see_writes_and_half_written_documents(app, recorder, api):
    """Neither check may pass vacuously: the recorder sees real writes, the store check a torn batch."""
    from bson import ObjectId

    client = api("super_admin")
    template = {"name": "t", "subject": "s", "html_body": "<p>x</p>", "category": "news"}
    recorder.clear()
    created = client.post("/api/phase14/communication/templates", json=template)
    assert created.status_code == 201 and ("insert", "email_templates") in recorder.changes
    recorder.clear()
    assert client.post("/api/phase14/communication/templates", json=template).status_code == 409
    assert recorder.changes == []
    recorder.clear()
    updated = client.put(f"/api/phase14/communication/templates/{created.json['id']}", json=template)
    assert updated.status_code == 200 and ("update", "email_templates") in recorder.changes
    other = api("analyst", email="other@test.example.com").admin
    recorder.clear()  # a refused assignment takes and gives back the assignment lock, and changes nothing
    assert client.post(f"/api/phase14/admin/{other.id}/assign-role", json={"role": "nope"}).status_code == 422
    assert recorder.changes == []

    assert store_problems(db.get_db()) == []
    db.get_db().email_batches.insert_one({"_id": ObjectId(), "total": 2, "queued": 2, "skipped": 0})
    db.get_db().email_template_versions.delete_many({})
    assert len(store_problems(db.get_db())) == 2


# Explicit examples of malformed input an attacker's read of the code found (issue 15); each must be a 4xx
# problem that writes nothing, never a 500.
NESTED = "[" * 5000 + "]" * 5000
TEMPLATE = "/api/phase14/communication/templates"
TRACK = "/api/phase14/engagement/track-activity"
MALFORMED = {
    "nested JSON to the token endpoint": ("POST", "/api/auth/token", {"data": NESTED}, {}, 400),
    "nested objects to the token endpoint": ("POST", "/api/auth/token", {"data": '{"a":' * 3000 + "1" + "}" * 3000},
                                             {}, 400),
    "nested JSON to ingestion": ("POST", TRACK, {"data": NESTED}, {"X-Ingest-Key": "test-ingest-key"}, 400),
    "non-ASCII ingest key": ("POST", TRACK, {"json": {"user_id": "u1", "event": "e"}}, {"X-Ingest-Key": "clé"}, 401),
    "non-ASCII bearer token": ("GET", "/api/auth/me", {}, {"Authorization": "Bearer jeton-é"}, 401),
    "invalid UTF-8 body": ("POST", "/api/auth/token", {"data": b'{"email": "\xff\xfe"}'}, {}, 400),
    "$-keys in sample data": ("POST", TEMPLATE, {"json": {"name": "t", "subject": "s", "html_body": "<p>x</p>",
                                                          "category": "news", "sample_data": {"$where": "1"}}},
                              "bearer", 422),
    "constant-folded power": ("POST", TEMPLATE, {"json": {"name": "t", "subject": "s", "category": "news",
                                                          "html_body": "{% if 3**40000000 %}x{% endif %}"}},
                              "bearer", 422),
    "printed huge power": ("POST", TEMPLATE, {"json": {"name": "t", "subject": "s", "category": "news",
                                                       "html_body": "{{ 3**300000 }}"}}, "bearer", 422),
    "recursive macro": ("POST", TEMPLATE, {"json": {"name": "t", "subject": "s", "category": "news",
                                                    "html_body": "{% macro f() %}{{ f() }}{% endmacro %}{{ f() }}"}},
                        "bearer", 422),
    "deeply nested template expression": ("POST", TEMPLATE, {"json": {
        "name": "t", "subject": "s", "category": "news", "html_body": "{{ " + "(" * 3000 + "1" + ")" * 3000 + " }}"}},
        "bearer", 422),
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_input_examples_are_4xx_problems_that_change_nothing(app, recorder, headers, name):
    method, path, body, extra, status = MALFORMED[name]
    sent = dict(headers) if extra == "bearer" else dict(extra)
    if "data" in body:
        body = {**body, "content_type": "application/json"}
    recorder.clear()
    response = app.test_client().open(path, method=method, headers=sent, **body)
    assert response.status_code == status, response.get_data(as_text=True)[:500]
    assert response.mimetype == "application/problem+json"
    assert recorder.changes == []

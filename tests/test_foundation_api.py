"""API conventions every endpoint inherits: problem+json, pagination, OpenAPI."""

from datetime import timedelta

import pytest

from console.errors import ApiError
from console.members import Member
from console.pagination import PageQuery, decode_cursor, paginate
from console.timeutil import utcnow
from console.validation import OPERATOR_KEY, TOO_BIG, unstorable


@pytest.mark.parametrize("method,path,status", [
    ("get", "/api/does-not-exist", 404),
    ("get", "/api/auth/token", 405),
    ("put", "/api/auth/me", 405),
])
def test_api_errors_are_problem_json(client, method, path, status):
    response = getattr(client, method)(path)
    assert response.status_code == status
    assert response.mimetype == "application/problem+json"
    body = response.json
    assert body["status"] == status and body["title"] and body["detail"] and body["errors"] == []
    assert "Traceback" not in response.get_data(as_text=True)


def test_unknown_page_is_a_friendly_html_page(client):
    response = client.get("/no-such-page")
    assert response.status_code == 404
    assert response.mimetype == "text/html"
    assert "nothing here" in response.get_data(as_text=True)


def test_unstorable_keys_and_numbers_are_found_at_any_depth():
    assert unstorable({"a": {"$gt": 1}, "b": [{"c.d": 1}], "ok": {"x": 1}}) == [
        {"field": "a.$gt", "message": OPERATOR_KEY}, {"field": "b.0.c.d", "message": OPERATOR_KEY}]
    assert unstorable({"fine": ["$not-a-key-but-a-value", 2 ** 63 - 1, -(2 ** 63), 1e300]}) == []
    assert unstorable({"n": [2 ** 63], "m": {"k": -(2 ** 63) - 1}}) == [
        {"field": "n.0", "message": TOO_BIG}, {"field": "m.k", "message": TOO_BIG}]


@pytest.mark.parametrize("descending", [True, False])
def test_keyset_pagination_visits_every_item_once_even_with_ties(app, descending):
    now = utcnow().replace(microsecond=0)
    for index in range(11):
        Member(user_id=f"u{index:02d}", last_seen=now - timedelta(hours=index // 3)).save()
    seen, cursor, pages = [], None, 0
    while True:
        page = paginate(Member.objects, PageQuery(limit=4, cursor=cursor), sort_field="last_seen",
                        descending=descending, transform=lambda m: (m.last_seen, m.user_id))
        seen.extend(page["items"])
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(user for _, user in seen) == [f"u{i:02d}" for i in range(11)]
    times = [when for when, _ in seen]
    assert times == sorted(times, reverse=descending)


def test_tampered_cursor_is_422(app):
    with pytest.raises(ApiError) as error:
        decode_cursor("not-a-real-cursor")
    assert error.value.status == 422 and error.value.errors[0]["field"] == "cursor"


def test_openapi_document_is_3_1_and_covers_every_api_route(client, app):
    spec = client.get("/api/openapi.json").json
    assert spec["openapi"] == "3.1.0"
    documented = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/") or rule.endpoint == "core.openapi_json" or \
                rule.endpoint == "core.api_docs":
            continue
        path = rule.rule.replace("<", "{").replace(">", "}")
        path = __import__("re").sub(r"\{[a-z_]+:", "{", path)
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert (path, method.lower()) in documented, f"{method} {rule.rule} is not in the OpenAPI document"
    token = spec["paths"]["/api/auth/token"]["post"]
    assert token["requestBody"]["content"]["application/json"]["schema"]["$ref"].endswith("/TokenRequest")
    assert "422" in token["responses"] and "429" in token["responses"]


def test_api_docs_page_renders_for_people(client):
    page = client.get("/api/docs")
    assert page.status_code == 200
    assert "/api/auth/token" in page.get_data(as_text=True)


def _resolve(expression: str, body: dict):
    """A `$response.body#/a/0/b` runtime expression against a response body."""
    value = body
    for part in expression.removeprefix("$response.body#/").split("/"):
        value = value[int(part)] if isinstance(value, list) else value[part]
    return value


def test_openapi_links_of_a_new_template_lead_to_working_requests(api):
    """Clients (and the stateful fuzzer) follow these: read, edit with the version, restore, delete."""
    client = api("super_admin")
    spec = client.get("/api/openapi.json").json
    by_id = {op["operationId"]: (path, method) for path, ops in spec["paths"].items() for method, op in ops.items()}
    template = {"name": "welcome", "subject": "Hi", "html_body": "<p>Hi {{ name }}</p>", "category": "news"}
    created = client.post("/api/phase14/communication/templates", json=template).json
    links = spec["paths"]["/api/phase14/communication/templates"]["post"]["responses"]["201"]["links"]

    def follow(name: str, body: dict | None = None):
        path, method = by_id[links[name]["operationId"]]
        for parameter, expression in links[name].get("parameters", {}).items():
            path = path.replace("{" + parameter + "}", str(_resolve(expression, created)))
        extra = {key: _resolve(value, created) for key, value in links[name].get("requestBody", {}).items()}
        return client.open(path, method=method.upper(), json={**body, **extra} if body is not None else None)

    assert follow("GetTemplate").json["id"] == created["id"]
    assert follow("UpdateTemplate", {**template, "subject": "Hello"}).json["version"] == 2
    assert follow("UpdateTemplate", template).status_code == 409  # the link carried version 1, now stale
    assert follow("SendEmail", {"to": {"email": "m@example.org"}}).status_code == 202
    assert follow("DeleteTemplate").status_code == 204
    assert follow("GetTemplate").status_code == 404

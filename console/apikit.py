"""JSON endpoints: one decorator that authorizes, validates with pydantic and documents for OpenAPI."""

from __future__ import annotations

import json
from datetime import datetime
from functools import wraps
from typing import Any

from bson import ObjectId
from bson.errors import InvalidId
from flask import Response, current_app, jsonify, request
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from console.errors import ApiError, validation_error
from console.security import csrf_exempt, login_only, permission_required, public
from console.timeutil import as_utc, isoformat

JSON_MIMETYPES = {"application/json"}
LOGIN = "@login"  # `permission=LOGIN`: any signed-in admin


class RequestModel(BaseModel):
    """A request body: unknown fields are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class QueryModel(BaseModel):
    """Query-string parameters: unknown ones are ignored, as browsers and proxies add their own."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


class PageQuery(QueryModel):
    limit: int = Field(50, ge=1, le=500, description="Items per page (max 500)")
    cursor: str | None = Field(None, max_length=2000, description="Opaque cursor from `next_cursor`")


def pydantic_errors(error: ValidationError, prefix: str = "") -> list[dict]:
    out = []
    for item in error.errors(include_url=False):
        field = ".".join(str(part) for part in item["loc"]) or "body"
        out.append({"field": f"{prefix}{field}" if prefix else field, "message": item["msg"]})
    return out


INT64_MIN, INT64_MAX = -(2 ** 63), 2 ** 63 - 1
OPERATOR_KEY = "keys may not be empty, start with '$' or contain '.'"
TOO_BIG = "integers must fit in 64 bits (between -2^63 and 2^63-1)"


def unstorable(value: Any, path: str = "") -> list[dict]:
    """What MongoDB could not store as sent: operator-like keys (`$x`, `a.b`, empty) and integers beyond
    64 bits, each as {"field", "message"}."""
    found: list[dict] = []
    if isinstance(value, dict):
        items = value.items()
    elif isinstance(value, list):
        items = enumerate(value)
    else:
        return found
    keyed = isinstance(value, dict)
    for key, item in items:  # (the path is spelled out only where needed: this runs for every ingested event)
        if keyed and (not isinstance(key, str) or not key or key.startswith("$") or "." in key or "\x00" in key):
            found.append({"field": f"{path}.{key}" if path else str(key), "message": OPERATOR_KEY})
        if isinstance(item, (dict, list)):
            if item:
                found.extend(unstorable(item, f"{path}.{key}" if path else str(key)))
        elif type(item) is int and not INT64_MIN <= item <= INT64_MAX:
            found.append({"field": f"{path}.{key}" if path else str(key), "message": TOO_BIG})
    return found


def read_json() -> Any:
    """The request body as JSON: 415 when it is not JSON, 400 when it does not parse."""
    if request.mimetype not in JSON_MIMETYPES and not request.mimetype.endswith("+json"):
        raise ApiError(415, "Send the body as application/json.")
    raw = request.get_data(cache=True)
    try:
        return json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}") from None


def parse_body(model: type[BaseModel], data: Any, *, check_operators: bool = True) -> BaseModel:
    if check_operators:
        bad = unstorable(data)
        if bad:
            raise ApiError(422, "The body holds keys or numbers the database cannot store.", bad)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise ApiError(422, "The request body failed validation.", pydantic_errors(error)) from None


def parse_query(model: type[BaseModel]) -> BaseModel:
    args = {key: values if len(values) > 1 else values[0] for key, values in request.args.lists()}
    try:
        return model.model_validate(args)
    except ValidationError as error:
        raise ApiError(422, "A query parameter failed validation.", pydantic_errors(error)) from None


def object_id_or_404(value: str) -> ObjectId:
    try:
        return ObjectId(value)
    except (InvalidId, TypeError):
        raise ApiError(404, "No item has this id.") from None


def get_or_404(model, object_id: str, **filters):
    doc = model.objects(id=object_id_or_404(object_id), **filters).first()
    if doc is None:
        raise ApiError(404, f"No {model.__name__.lower()} has the id {object_id}.")
    return doc


def link(operation_id: str, body: dict | None = None, **parameters: str) -> dict:
    """An OpenAPI link to `operation_id`; values are runtime expressions such as `$response.body#/id`."""
    out: dict = {"operationId": operation_id}
    if parameters:
        out["parameters"] = parameters
    if body is not None:
        out["requestBody"] = body
    return out


def _to_response(result, status: int) -> Response:
    if isinstance(result, Response):
        return result
    headers = None
    if isinstance(result, tuple):
        result, status, *rest = result
        headers = rest[0] if rest else None
    if result is None:
        response = Response(status=status)
    else:
        if isinstance(result, BaseModel):
            result = result.model_dump(mode="json")
        response = jsonify(result)
        response.status_code = status
    if headers:
        response.headers.update(headers)
    return response


def endpoint(bp, rule: str, *, methods=("GET",), permission: str | None, summary: str, body=None, query=None,
             response=None, status: int = 200, tags=None, allow_ingest_key: bool = False,
             max_body: int | None = None, check_operators: bool = True, responses: dict | None = None,
             csrf: bool = True, rate_limit=None, alt_media_types: tuple[str, ...] = (), links: dict | None = None):
    """Register a JSON endpoint on `bp`.

    The view receives `body=` and `query=` (validated models) when declared, and returns a dict, a pydantic
    model, `(data, status)`, `None` (no content) or a Response. `permission=None` marks it public,
    `permission=LOGIN` allows any signed-in admin.
    `rate_limit` is a `limiter.limit(...)` decorator; it must wrap the registered view to take effect.
    `alt_media_types` documents other success bodies the view can send (e.g. "text/csv" for exports).
    `links` are OpenAPI links from the success response: name → {"operationId", "parameters"?, "requestBody"?},
    telling clients (and the stateful fuzzer) which operation takes an id this one returns.
    """

    def decorator(view):
        @wraps(view)
        def handler(*args, **kwargs):
            if max_body:
                request.max_content_length = max_body
            if body is not None:
                kwargs["body"] = parse_body(body, read_json(), check_operators=check_operators)
            if query is not None:
                kwargs["query"] = parse_query(query)
            return _to_response(view(*args, **kwargs), status)

        if permission is None:
            guarded = public(handler)
        elif permission == LOGIN:
            guarded = login_only(handler)
        else:
            guarded = permission_required(permission, allow_ingest_key=allow_ingest_key)(handler)
        if rate_limit is not None:
            guarded = rate_limit(guarded)
        if not csrf:
            csrf_exempt(guarded)
        guarded.__openapi__ = {
            "summary": summary, "description": (view.__doc__ or "").strip(), "body": body, "query": query,
            "response": response, "status": status, "tags": tags or [bp.name], "permission": permission,
            "ingest_key": allow_ingest_key, "responses": responses or {}, "alt_media_types": alt_media_types,
            "links": links or {},
        }
        bp.add_url_rule(rule, view_func=guarded, methods=list(methods))
        return guarded

    return decorator


# --- cursor pagination -------------------------------------------------------------------------------------

def _cursor_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="page-cursor")


def encode_cursor(values: list) -> str:
    return _cursor_serializer().dumps([str(v) if isinstance(v, ObjectId) else v for v in values])


def decode_cursor(cursor: str | None) -> list | None:
    if not cursor:
        return None
    try:
        values = _cursor_serializer().loads(cursor)
    except BadSignature:
        raise validation_error("cursor", "This cursor is not valid; start again without it.") from None
    if not isinstance(values, list):
        raise validation_error("cursor", "This cursor is not valid; start again without it.")
    return values


def paginate(queryset, page: PageQuery, *, sort_field: str | None = None, descending: bool = True,
             transform=None) -> dict:
    """Keyset pagination over a mongoengine queryset, by (sort_field, _id) or by _id alone.

    Returns {"items": [...], "next_cursor": str | None}. `transform` maps each document to its JSON shape.
    """
    after = decode_cursor(page.cursor)
    op = "$lt" if descending else "$gt"
    direction = -1 if descending else 1
    if after is not None:
        try:
            if sort_field:
                value = after[0]
                if isinstance(value, str) and value.endswith("Z"):
                    value = as_utc(datetime.fromisoformat(value.replace("Z", "+00:00")))
                last_id = ObjectId(after[1])
                queryset = queryset.filter(__raw__={"$or": [{sort_field: {op: value}},
                                                            {sort_field: value, "_id": {op: last_id}}]})
            else:
                queryset = queryset.filter(__raw__={"_id": {op: ObjectId(after[0])}})
        except (IndexError, InvalidId, TypeError, ValueError):
            raise validation_error("cursor", "This cursor is not valid; start again without it.") from None
    order = [("_id", direction)]
    if sort_field:
        order.insert(0, (sort_field, direction))
    docs = list(queryset.order_by(*[("-" if d < 0 else "+") + (f if f != "_id" else "id") for f, d in order])
                .limit(page.limit + 1))
    has_more = len(docs) > page.limit
    docs = docs[: page.limit]
    next_cursor = None
    if has_more and docs:
        last = docs[-1]
        if sort_field:
            value = last._data.get(sort_field) if hasattr(last, "_data") else last[sort_field]
            key_value = isoformat(value) if hasattr(value, "isoformat") else value
            next_cursor = encode_cursor([key_value, str(last.id)])
        else:
            next_cursor = encode_cursor([str(last.id)])
    return {"items": [transform(doc) if transform else doc for doc in docs], "next_cursor": next_cursor}

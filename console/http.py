"""JSON endpoints: one decorator that authorizes, validates with pydantic and documents for OpenAPI."""

from __future__ import annotations

import json
from functools import wraps
from typing import Any

from flask import Response, jsonify, request
from pydantic import BaseModel, ValidationError

from console.errors import ApiError
from console.security import csrf_exempt, login_only, permission_required, public
from console.validation import pydantic_errors, unstorable

JSON_MIMETYPES = {"application/json"}
LOGIN = "@login"  # `permission=LOGIN`: any signed-in admin
MAX_JSON_DEPTH = 32  # deeper bodies would reach recursive validators (and Python's recursion limit)


def read_json(*, text_plain: bool = False) -> Any:
    """The request body as JSON: 415 when it is not JSON, 400 when it does not parse. `text_plain` also
    accepts a text/plain body (what navigator.sendBeacon sends without a CORS preflight)."""
    plain = text_plain and request.mimetype == "text/plain"
    if request.mimetype not in JSON_MIMETYPES and not request.mimetype.endswith("+json") and not plain:
        raise ApiError(415, "Send the body as application/json.")
    raw = request.get_data(cache=True)
    try:
        data = json.loads(raw or b"null")
    except (ValueError, UnicodeDecodeError) as error:
        raise ApiError(400, f"The body is not valid JSON: {error}") from None
    except RecursionError:
        raise ApiError(400, "The body is nested too deeply.") from None
    if depth_over(data, MAX_JSON_DEPTH):
        raise ApiError(400, f"The body is nested more than {MAX_JSON_DEPTH} levels deep.")
    return data


def depth_over(value: Any, limit: int) -> bool:
    """True when containers nest deeper than `limit` (checked without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > limit:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


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

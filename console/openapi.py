"""OpenAPI 3.1, generated from the same pydantic models that validate requests."""

from __future__ import annotations

import re

from flask import current_app
from pydantic import BaseModel

from console.errors import TITLES

PROBLEM_SCHEMA = {
    "type": "object",
    "required": ["type", "title", "status", "detail", "errors"],
    "properties": {
        "type": {"type": "string"}, "title": {"type": "string"}, "status": {"type": "integer"},
        "detail": {"type": "string"},
        "errors": {"type": "array", "items": {"type": "object", "properties": {
            "field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}
_CONVERTER = re.compile(r"<(?:[a-z_]+:)?([a-zA-Z_][a-zA-Z0-9_]*)>")


def _schema(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _response_schema(model, components: dict) -> dict:
    if model is None:
        return {"type": "object"}
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = definition
    components[model.__name__ + "Out" if model.__name__ in components else model.__name__] = schema
    return schema


def _query_parameters(model: type[BaseModel]) -> list[dict]:
    schema = model.model_json_schema()
    required = set(schema.get("required", []))
    params = []
    for name, prop in schema.get("properties", {}).items():
        prop = {key: value for key, value in prop.items() if key != "title"}
        params.append({"name": name, "in": "query", "required": name in required,
                       "description": prop.pop("description", ""), "schema": prop})
    return params


def _problem(status: int) -> dict:
    return {"description": TITLES.get(status, "Error"),
            "content": {"application/problem+json": {"schema": {"$ref": "#/components/schemas/Problem"}}}}


def _permission_note(permission: str | None) -> str:
    if permission is None:
        return "\n\nPublic."
    if permission == "@login":
        return "\n\nAny signed-in admin."
    return f"\n\nPermission: `{permission}`"


def _check_links(paths: dict) -> None:
    """Fail at build time when a link names an operation that does not exist (a renamed view)."""
    operations = {op["operationId"] for methods in paths.values() for op in methods.values()}
    for methods in paths.values():
        for op in methods.values():
            for response in op["responses"].values():
                for name, link in response.get("links", {}).items():
                    if link["operationId"] not in operations:
                        raise ValueError(f"link {name} of {op['operationId']} names no operation: "
                                         f"{link['operationId']}")


def _success(meta: dict, components: dict) -> dict:
    if meta["status"] == 204:
        return {"description": "No content"}
    response = {"description": "Success", "content": {
        "application/json": {"schema": _response_schema(meta["response"], components)}}}
    for media_type in meta.get("alt_media_types", ()):
        response["content"][media_type] = {"schema": {"type": "string"}}
    if meta.get("links"):
        response["links"] = meta["links"]
    return response


def _error_codes(meta: dict, has_path_arguments: bool) -> list[int]:
    codes = {400, 401, 403, 413, 415, 422, 429} if meta["body"] is not None else {401, 403, 422, 429}
    if has_path_arguments:
        codes.add(404)
    return sorted(codes | set(meta["responses"]))


def _operation(rule, method: str, meta: dict, components: dict) -> dict:
    """One OpenAPI operation from the metadata `http.endpoint` attached to the view."""
    operation = {
        "operationId": f"{rule.endpoint}_{method.lower()}".replace(".", "_"),
        "summary": meta["summary"],
        "description": meta["description"] + _permission_note(meta["permission"]),
        "tags": meta["tags"],
        "parameters": [{"name": arg, "in": "path", "required": True, "schema": {"type": "string"}}
                       for arg in sorted(rule.arguments)],
        "responses": {str(meta["status"]): _success(meta, components)},
    }
    if meta["query"] is not None:
        operation["parameters"] += _query_parameters(meta["query"])
    if meta["body"] is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema(meta["body"], components)}}}
    for code in _error_codes(meta, bool(rule.arguments)):
        operation["responses"][str(code)] = _problem(code)
    if meta["permission"] is None:
        operation["security"] = []
    elif meta["ingest_key"]:
        operation["security"] = [{"bearer": []}, {"ingestKey": []}, {"ingestKeyQuery": []}, {"cookie": []}]
    return operation


def build_spec(app=None) -> dict:
    """The whole document: every view registered through `http.endpoint`."""
    app = app or current_app
    components: dict = {"Problem": PROBLEM_SCHEMA}
    paths: dict = {}
    for rule in sorted(app.url_map.iter_rules(), key=lambda r: r.rule):
        meta = getattr(app.view_functions.get(rule.endpoint), "__openapi__", None)
        if meta is None:
            continue
        path = _CONVERTER.sub(r"{\1}", rule.rule)
        for method in sorted(rule.methods - {"HEAD", "OPTIONS"}):
            paths.setdefault(path, {})[method.lower()] = _operation(rule, method, meta, components)
    _check_links(paths)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Community Console API (Phase 14)", "version": "1.0.0",
                 "description": "Engagement, communication, roles and hardening. Errors are "
                                "application/problem+json (RFC 9457)."},
        "servers": [{"url": "/"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {
                "bearer": {"type": "http", "scheme": "bearer", "description": "From POST /api/auth/token"},
                "ingestKey": {"type": "apiKey", "in": "header", "name": "X-Ingest-Key"},
                "ingestKeyQuery": {"type": "apiKey", "in": "query", "name": "ingest_key",
                                   "description": "For navigator.sendBeacon (no headers): the body may then be "
                                                  "text/plain JSON; a browser's Origin must be allowed"},
                "cookie": {"type": "apiKey", "in": "cookie", "name": "session"},
            },
        },
        "security": [{"bearer": []}, {"cookie": []}],
    }

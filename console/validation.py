"""Validation shared by every feature: pydantic base models, their errors as problem fields, and what
MongoDB could not store (operator-like keys, integers beyond 64 bits)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, ValidationError


class RequestModel(BaseModel):
    """A request body: unknown fields are an error, so a typo never passes silently."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


class QueryModel(BaseModel):
    """Query-string parameters: unknown ones are ignored, as browsers and proxies add their own."""

    model_config = ConfigDict(extra="ignore", str_strip_whitespace=True)


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

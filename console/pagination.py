"""Keyset pagination with opaque signed cursors, and id lookups that answer 404."""

from __future__ import annotations

from datetime import datetime

from bson import ObjectId
from bson.errors import InvalidId
from flask import current_app
from itsdangerous import BadSignature, URLSafeSerializer
from pydantic import Field

from console.errors import ApiError, validation_error
from console.timeutil import as_utc, isoformat
from console.validation import QueryModel

INVALID_CURSOR = "This cursor is not valid; start again without it."


class PageQuery(QueryModel):
    limit: int = Field(50, ge=1, le=500, description="Items per page (max 500)")
    cursor: str | None = Field(None, max_length=2000, description="Opaque cursor from `next_cursor`")


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


def _cursor_serializer() -> URLSafeSerializer:
    return URLSafeSerializer(current_app.config["SECRET_KEY"], salt="page-cursor")


def encode_cursor(values: list) -> str:
    """A signed cursor for these values (ObjectIds as strings, datetimes as ISO 8601)."""
    return _cursor_serializer().dumps([str(v) if isinstance(v, ObjectId) else v.isoformat() if isinstance(v, datetime)
                                       else v for v in values])


def cursor_for(values: list | None) -> str | None:
    """The next page's cursor: encode_cursor(values), or None when there is no next page."""
    return encode_cursor(values) if values else None


def _as_time(value) -> datetime:
    return as_utc(datetime.fromisoformat(str(value).replace("Z", "+00:00")))


def _as_count(value) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError("not a count")
    return value


def _as_number(value) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise TypeError("not a number")
    return value


def _as_text(value) -> str:
    if not isinstance(value, str):
        raise TypeError("not text")
    return value


CURSOR_KINDS = {datetime: _as_time, int: _as_count, float: _as_number, str: _as_text}


def decode_cursor(cursor: str | None, *kinds: type) -> list | None:
    """The values a cursor carries (None without one); 422 with INVALID_CURSOR when it is not one of ours.

    Given `kinds`, the values must match them one for one: `datetime` (returned aware, UTC), `int` (a count or
    offset, never negative), `float` (any number), `str`."""
    if not cursor:
        return None
    try:
        values = _cursor_serializer().loads(cursor)
        if not isinstance(values, list) or (kinds and len(values) != len(kinds)):
            raise ValueError("not a cursor of this list")
        return [CURSOR_KINDS[kind](value) for kind, value in zip(kinds, values, strict=True)] if kinds else values
    except (BadSignature, TypeError, ValueError):
        raise validation_error("cursor", INVALID_CURSOR) from None


def cursor_or_none(cursor: str | None, *kinds: type) -> list | None:
    """decode_cursor for pages: a stale or hand-edited cursor starts again from the first page (None)."""
    try:
        return decode_cursor(cursor, *kinds)
    except ApiError:
        return None


def encode_id_cursor(last_id) -> str:
    """A cursor after a document whose _id is an ObjectId or a string (collections the platform writes)."""
    return encode_cursor([str(last_id), "oid" if isinstance(last_id, ObjectId) else "str"])


def decode_id_cursor(cursor: str | None) -> ObjectId | str | None:
    """The _id an encode_id_cursor cursor carries; 422 when it is not one."""
    after = decode_cursor(cursor, str, str)
    if after is None:
        return None
    if after[1] != "oid":
        return after[0]
    try:
        return ObjectId(after[0])
    except InvalidId:
        raise validation_error("cursor", INVALID_CURSOR) from None


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
            raise validation_error("cursor", INVALID_CURSOR) from None
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

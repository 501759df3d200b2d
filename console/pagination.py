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
    return _cursor_serializer().dumps([str(v) if isinstance(v, ObjectId) else v for v in values])


def decode_cursor(cursor: str | None) -> list | None:
    if not cursor:
        return None
    try:
        values = _cursor_serializer().loads(cursor)
    except BadSignature:
        raise validation_error("cursor", INVALID_CURSOR) from None
    if not isinstance(values, list):
        raise validation_error("cursor", INVALID_CURSOR)
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

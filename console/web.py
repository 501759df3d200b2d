"""Helpers every feature's pages share: toasts, streamed CSV downloads, htmx detection, query strings, 404s."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable
from datetime import datetime
from typing import TypeVar
from urllib.parse import unquote, urlsplit

from flask import Response, abort, stream_with_context
from htmx_flask import request
from pydantic import BaseModel, ValidationError

from console.timeutil import isoformat

FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")
M = TypeVar("M", bound=BaseModel)


def toast(message: str, tone: str = "success") -> dict:
    """Response headers that make the shell show a toast (`tone`: success | error | info)."""
    return {"HX-Trigger": json.dumps({"toast": {"message": message, "tone": tone}})}


def is_htmx() -> bool:
    """True for a request htmx made (a fragment is wanted, not a whole page)."""
    return bool(request.htmx)


def query_args(model: type[M]) -> M:
    """The page's query string read by the API's query model; a value the model refuses is left at its default
    (a page shows something sensible where the API would answer 422). A rule across fields (`from` after `to`)
    that still fails leaves every field at its default."""
    data = {key: value for key, value in request.args.items() if value != ""}
    try:
        return model.model_validate(data)
    except ValidationError as error:
        refused = {str(item["loc"][0]) for item in error.errors() if item["loc"]}
    try:
        return model.model_validate({key: value for key, value in data.items() if key not in refused})
    except ValidationError:
        return model()


def or_404(value):
    """The value, or a 404 page when there is none."""
    if value is None:
        abort(404)
    return value


def csv_cell(value) -> str:
    """A cell as text; a leading = + - @ (which spreadsheets run as a formula) is neutralised with a quote."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return isoformat(value)
    if isinstance(value, (dict, list)):
        value = json.dumps(value, default=str, sort_keys=True)
    text = str(value)
    return "'" + text if text.startswith(FORMULA_STARTS) else text


CSV_CHUNK = 32_768  # characters sent at a time: few writes, and the first rows leave before the last are read


def csv_lines(header: Iterable, rows: Iterable[Iterable]) -> Iterable[str]:
    """The header and rows as CSV text in chunks of about CSV_CHUNK characters, every cell through `csv_cell`."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow([csv_cell(value) for value in header])
    for row in rows:
        writer.writerow([csv_cell(value) for value in row])
        if buffer.tell() > CSV_CHUNK:
            yield buffer.getvalue()
            buffer.seek(0)
            buffer.truncate()
    yield buffer.getvalue()


def csv_response(filename: str, header: list[str], rows: Iterable[Iterable]) -> Response:
    """A streamed CSV download: rows are read (e.g. from a database cursor) while the response is sent."""
    return Response(stream_with_context(csv_lines(header, rows)), mimetype="text/csv",
                    headers={"Content-Disposition": f'attachment; filename="{filename}"'})


def same_origin_path(target: str) -> bool:
    """A path on this site however a browser reads it: backslashes count as slashes, tabs and newlines are
    dropped, percent-escapes are decoded; anything that could name another host (`//`, `/\\`, a scheme) fails."""
    if len(target) > 2048 or any(ord(ch) < 0x21 or ord(ch) == 0x7F or ch == "\\" for ch in target):
        return False
    decoded = target
    for _ in range(3):
        decoded = unquote(decoded)
    if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in decoded):
        return False
    decoded = decoded.replace("\\", "/")
    if not decoded.startswith("/") or decoded.startswith("//"):
        return False
    parts = urlsplit(decoded)
    return not parts.scheme and not parts.netloc

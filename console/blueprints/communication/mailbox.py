"""The development SMTP sink's Maildir, read for the Mailbox page (like Mailpit)."""

from __future__ import annotations

import mailbox
import re
from email import message_from_bytes, policy
from email.utils import parsedate_to_datetime
from pathlib import Path

KEY_RE = re.compile(r"^[A-Za-z0-9._,:=-]{1,200}$")


def _box(folder: str) -> mailbox.Maildir | None:
    path = Path(folder)
    if not (path / "new").is_dir() and not (path / "cur").is_dir():
        return None
    return mailbox.Maildir(str(path), create=False)


def _headers(key: str, raw: bytes) -> dict:
    message = message_from_bytes(raw, policy=policy.default)
    try:
        date = parsedate_to_datetime(message["Date"]) if message["Date"] else None
    except (TypeError, ValueError):
        date = None
    return {"key": key, "subject": str(message["Subject"] or "(no subject)"), "to": str(message["To"] or ""),
            "from": str(message["From"] or ""), "date": date, "message_id": str(message["Message-ID"] or ""),
            "message": message}


def list_messages(folder: str, limit: int = 200, q: str | None = None) -> list[dict]:
    """Newest first (by file time), with subject and recipient."""
    box = _box(folder)
    if box is None:
        return []
    paths = []
    for sub in ("new", "cur"):
        paths.extend(p for p in (Path(folder) / sub).iterdir() if p.is_file())
    paths.sort(key=lambda p: p.stat().st_mtime, reverse=True)
    out = []
    needle = (q or "").strip().lower()
    for path in paths:
        key = path.name.split(":")[0]
        with path.open("rb") as handle:
            head = handle.read(16384)
        info = _headers(key, head)
        info.pop("message")
        if needle and needle not in (info["subject"] + " " + info["to"]).lower():
            continue
        out.append(info)
        if len(out) >= limit:
            break
    return out


def get_message(folder: str, key: str) -> dict | None:
    """One message with its HTML and text parts."""
    box = _box(folder)
    if box is None or not KEY_RE.match(key or ""):
        return None
    try:
        raw = box.get_bytes(key)
    except KeyError:
        return None
    info = _headers(key, raw)
    message = info.pop("message")
    html_part = message.get_body(preferencelist=("html",))
    text_part = message.get_body(preferencelist=("plain",))
    info["html"] = html_part.get_content() if html_part is not None else None
    info["text"] = text_part.get_content() if text_part is not None else None
    info["headers"] = [(name, str(value)) for name, value in message.items()
                       if name.lower() in {"from", "to", "subject", "date", "message-id", "list-unsubscribe",
                                           "list-unsubscribe-post", "x-console-email-id", "x-console-category"}]
    info["size"] = len(raw)
    return info

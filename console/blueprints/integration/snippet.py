"""What the platform pastes into its pages, from this deployment's settings."""

from __future__ import annotations

import json

from flask import current_app
from markupsafe import escape

from console.cors import parse_origins

TRACK_PATH = "/static/track.js"


def tracking_key() -> str | None:
    """TRACKING_INGEST_KEY when it is one of INGEST_KEYS, else the first ingest key (None when there is none)."""
    keys = [key.strip() for key in str(current_app.config.get("INGEST_KEYS") or "").split(",") if key.strip()]
    chosen = str(current_app.config.get("TRACKING_INGEST_KEY") or "").strip()
    if chosen and chosen in keys:
        return chosen
    return keys[0] if keys else None


def console_origin() -> str:
    return str(current_app.config.get("PUBLIC_BASE_URL") or "").rstrip("/")


def allowed_origins() -> list[str]:
    ingest, _ = parse_origins(current_app.config.get("INGEST_CORS_ORIGINS"))
    api, _ = parse_origins(current_app.config.get("CORS_ORIGINS"))
    return sorted(ingest | api)


def install_lines(key: str, user_expression: str = '"USER_ID"') -> list[str]:
    """The two lines: load the snippet with the key, then say who the member is."""
    src = f"{console_origin()}{TRACK_PATH}"
    return [
        f'<script src="{escape(src)}" data-ingest-key="{escape(key)}"></script>',
        f"<script>ConsoleTrack.identify({user_expression}, {json.dumps({'email': 'EMAIL', 'name': 'NAME'})});"
        "</script>",
    ]

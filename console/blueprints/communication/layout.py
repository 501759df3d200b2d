"""The shared layout every email wears (stored once in `email_layouts`, editable by admins) and `compose()`,
which wraps rendered content in it with the tracking pixel, rewritten links, and the unsubscribe and
preference-center links."""

from __future__ import annotations

import time
import weakref

from flask import current_app
from jinja2 import TemplateError
from markupsafe import Markup

from console import audit
from console.blueprints.communication.models import EmailLayout
from console.blueprints.communication.render import HTML_ENV, TEXT_ENV, RenderError, check_sources, html_to_text
from console.errors import ApiError
from console.timeutil import utcnow

CACHE_SECONDS = 10  # other processes see an edited layout within this
REQUIRED = {"html": ("content", "unsubscribe_url", "preferences_url"),
            "text": ("text", "unsubscribe_url", "preferences_url")}
_cache: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()  # app → (expires, layout)


def get_layout() -> dict:
    """The stored layout (the built-in one until init-db has run), cached for a few seconds."""
    from console.blueprints.communication.catalog import LAYOUT

    app = current_app._get_current_object()
    hit = _cache.get(app)
    if hit and hit[0] > time.monotonic():
        return hit[1]
    doc = EmailLayout._get_collection().find_one({"key": "default"}) or {**LAYOUT, "version": 0}
    _cache[app] = (time.monotonic() + CACHE_SECONDS, doc)
    return doc


def _validate(html: str, text: str) -> None:
    errors = []
    try:
        names = {"html": set(check_sources({"html_body": html})), "text": set(check_sources({"text_body": text}))}
    except ApiError as error:
        raise ApiError(422, "The layout has errors.", [{**e, "field": "html" if e["field"] == "html_body" else "text"}
                                                        for e in error.errors]) from None
    for part, needed in REQUIRED.items():
        for name in needed:
            if name not in names[part]:
                errors.append({"field": part, "message": f"the {part} layout must contain {{{{ {name} }}}}"})
    if errors:
        raise ApiError(422, "The layout lacks a required placeholder.", errors)


def save_layout(html: str, text: str, version: int | None, actor: str | None) -> dict:
    """Replace the layout (optimistic locking on `version`); every email composed afterwards wears it."""
    _validate(html, text)
    current = EmailLayout._get_collection().find_one({"key": "default"})
    if current is None:
        raise ApiError(404, "No layout yet: run `flask --app wsgi init-db`.")
    if version is not None and version != current["version"]:
        raise ApiError(409, f"The layout changed since version {version}; it is now at version "
                            f"{current['version']}.", [{"field": "version", "message": "stale"}])
    result = EmailLayout._get_collection().update_one(
        {"key": "default", "version": current["version"]},
        {"$set": {"html": html, "text": text, "updated_at": utcnow(), "updated_by": actor}, "$inc": {"version": 1}})
    if not result.modified_count:
        raise ApiError(409, "The layout changed while saving.", [{"field": "version", "message": "stale"}])
    _cache.clear()
    audit.record("layout.update", "email_layout:default", {"version": current["version"]},
                 {"version": current["version"] + 1}, actor=actor)
    return get_layout()


def reset_layout(actor: str | None) -> dict:
    """Back to the built-in layout (as a new version)."""
    from console.blueprints.communication.catalog import LAYOUT

    return save_layout(LAYOUT["html"], LAYOUT["text"], None, actor)


def compose(rendered: dict, email_id, *, category: str | None, user_id: str | None = None,
            to_email: str | None = None, track: bool = True, layout: dict | None = None) -> dict:
    """Wrap rendered content in the layout; rewrite links and add the pixel when tracking."""
    from console.blueprints.communication.preference_center import preferences_url
    from console.blueprints.communication.tracking import make_token, public_url, rewrite_links

    layout = layout or get_layout()
    unsubscribe_url = public_url("tracking.unsubscribe", token=make_token("unsubscribe", email_id))
    content, links = rewrite_links(rendered["html_body"], email_id) if track else (rendered["html_body"], [])
    pixel = public_url("tracking.open_pixel", token=make_token("open", email_id)) if track else None
    text = rendered.get("text_body") or html_to_text(rendered["html_body"])
    context = {"subject": rendered["subject"], "content": Markup(content),  # noqa: S704  (sandbox-rendered)
               "text": text, "category": category, "unsubscribe_url": unsubscribe_url, "pixel_url": pixel,
               "preferences_url": preferences_url(user_id, to_email),
               "brand": current_app.config.get("MAIL_BRAND", "Community")}
    try:
        html = _compiled(HTML_ENV, layout["html"]).render(context)
        text_body = _compiled(TEXT_ENV, layout["text"]).render(context)
    except (TemplateError, TypeError, ValueError) as error:  # a bad admin layout must not stop mail
        from console.blueprints.communication.catalog import LAYOUT

        if layout.get("html") == LAYOUT["html"]:
            raise RenderError([{"field": "layout", "message": str(error)}]) from error
        current_app.logger.warning("email layout failed to render (%s); using the built-in one", error)
        return compose(rendered, email_id, category=category, user_id=user_id, to_email=to_email, track=track,
                       layout=LAYOUT)
    return {"subject": rendered["subject"], "html_body": html, "text_body": text_body, "links": links,
            "unsubscribe_url": unsubscribe_url}


_COMPILED: dict = {}


def _compiled(env, source: str):
    key = (id(env), source)
    if key not in _COMPILED:
        if len(_COMPILED) > 16:
            _COMPILED.clear()
        _COMPILED[key] = env.from_string(source)
    return _COMPILED[key]

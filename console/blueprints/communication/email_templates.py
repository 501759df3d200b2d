"""Email templates: validated at save, every previous state kept as a version, optimistic locking."""

from __future__ import annotations

import difflib
import re

from bson import ObjectId
from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from console import audit
from console.blueprints.communication.models import EmailTemplate, EmailTemplateVersion
from console.blueprints.communication.render import RenderError, check_sources, render_fields
from console.errors import ApiError
from console.pagination import get_or_404, object_id_or_404
from console.timeutil import utcnow

EDITABLE = ("name", "subject", "html_body", "text_body", "category", "description", "sample_data")
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def to_dict(template: EmailTemplate, *, with_versions: bool = False) -> dict:
    out = {"id": str(template.id), "name": template.name, "subject": template.subject,
           "html_body": template.html_body, "text_body": template.text_body or None, "category": template.category,
           "description": template.description or "", "sample_data": template.sample_data or {},
           "variables": list(template.variables or []), "version": template.version,
           "created_at": template.created_at, "updated_at": template.updated_at,
           "created_by": template.created_by, "updated_by": template.updated_by}
    if with_versions:
        out["versions"] = versions(template)
    return out


def versions(template: EmailTemplate) -> list[dict]:
    """The current version first, then every kept one, newest first."""
    current = [{"version": template.version, "saved_at": template.updated_at, "saved_by": template.updated_by,
                "subject": template.subject, "current": True}]
    kept = EmailTemplateVersion._get_collection().find(
        {"template_id": template.id}, {"version": 1, "saved_at": 1, "saved_by": 1, "subject": 1}).sort("version", -1)
    return current + [{"version": v["version"], "saved_at": v["saved_at"], "saved_by": v.get("saved_by"),
                       "subject": v.get("subject"), "current": False} for v in kept]


def get_template(template_id: str) -> EmailTemplate:
    return get_or_404(EmailTemplate, template_id)


def _validate(data: dict) -> list[str]:
    if not CATEGORY_RE.match(data.get("category") or ""):
        raise ApiError(422, "Bad category.", [{"field": "category",
                                               "message": "lowercase letters, digits, '-' or '_', up to 40"}])
    variables = check_sources(data)
    try:
        render_fields(data, data.get("sample_data") or {})
    except RenderError as error:
        raise ApiError(422, "The template fails to render with its sample data.", error.errors) from None
    return variables


def create_template(data: dict, actor: str | None = None) -> EmailTemplate:
    variables = _validate(data)
    now = utcnow()
    template = EmailTemplate(**{k: data.get(k) for k in EDITABLE}, variables=variables, version=1,
                             created_at=now, updated_at=now, created_by=actor, updated_by=actor)
    try:
        template.save(force_insert=True)
    except (DuplicateKeyError, NotUniqueError):
        raise ApiError(409, f"A template named {data['name']!r} already exists.",
                       [{"field": "name", "message": "already taken"}]) from None
    audit.record("template.create", f"template:{template.id}", None, {"name": template.name})
    return template


def _snapshot(doc: dict) -> dict:
    return {k: doc.get(k) for k in EDITABLE}


def update_template(template_id: str, data: dict, expected_version: int | None = None,
                    actor: str | None = None) -> EmailTemplate:
    """Save a new version; the previous one is kept. A stale `expected_version` is a 409."""
    oid = object_id_or_404(template_id)
    coll = EmailTemplate._get_collection()
    current = coll.find_one({"_id": oid})
    if current is None:
        raise ApiError(404, f"No template has the id {template_id}.")
    if expected_version is not None and expected_version != current["version"]:
        raise ApiError(409, f"The template changed since version {expected_version}; it is now at version "
                            f"{current['version']}. Reload and apply your edits again.",
                       [{"field": "version", "message": f"stale: current version is {current['version']}"}])
    variables = _validate(data)
    now = utcnow()
    changes = {k: data.get(k) for k in EDITABLE}
    try:
        result = coll.update_one({"_id": oid, "version": current["version"]},
                                 {"$set": {**changes, "variables": variables, "updated_at": now, "updated_by": actor},
                                  "$inc": {"version": 1}})
    except DuplicateKeyError:
        raise ApiError(409, f"A template named {data['name']!r} already exists.",
                       [{"field": "name", "message": "already taken"}]) from None
    if not result.modified_count:  # someone saved in between
        raise ApiError(409, "The template changed while saving. Reload and apply your edits again.",
                       [{"field": "version", "message": "stale"}])
    EmailTemplateVersion._get_collection().insert_one(
        {"template_id": oid, "version": current["version"], **_snapshot(current),
         "saved_at": current.get("updated_at"), "saved_by": current.get("updated_by")})
    audit.record("template.update", f"template:{oid}", {"version": current["version"]},
                 {"version": current["version"] + 1})
    return EmailTemplate.objects.get(id=oid)


def version_content(template: EmailTemplate, version: int) -> dict:
    if version == template.version:
        return _snapshot(to_dict(template))
    doc = EmailTemplateVersion._get_collection().find_one({"template_id": template.id, "version": version})
    if doc is None:
        raise ApiError(404, f"Template {template.id} has no version {version}.")
    return _snapshot(doc)


def restore_version(template_id: str, version: int, actor: str | None = None) -> EmailTemplate:
    """Make an old version current again (as a new version, so nothing is lost)."""
    template = get_template(template_id)
    content = version_content(template, version)
    return update_template(template_id, content, template.version, actor)


def diff_versions(template: EmailTemplate, old: int, new: int) -> list[dict]:
    """Unified diffs per field between two versions."""
    before, after = version_content(template, old), version_content(template, new)
    out = []
    for field in ("subject", "html_body", "text_body", "category"):
        a, b = str(before.get(field) or ""), str(after.get(field) or "")
        if a != b:
            lines = list(difflib.unified_diff(a.splitlines(), b.splitlines(), f"v{old}", f"v{new}", lineterm=""))
            out.append({"field": field, "lines": lines})
    return out


def delete_template(template_id: str) -> None:
    """The template and its version history go; mail already rendered from it keeps its own copy."""
    template = get_template(template_id)
    template.delete()
    EmailTemplateVersion._get_collection().delete_many({"template_id": template.id})
    audit.record("template.delete", f"template:{template.id}", {"name": template.name}, None)


def list_templates(category: str | None = None, q: str | None = None):
    queryset = EmailTemplate.objects
    if category:
        queryset = queryset.filter(category=category)
    if q:
        queryset = queryset.filter(__raw__={"name": {"$regex": re.escape(q), "$options": "i"}})
    return queryset


def preview(data: dict, sample: dict | None = None) -> dict:
    """Render unsaved template fields for the editor; errors come back instead of raising."""
    from console.blueprints.communication.tracking import compose

    try:
        variables = check_sources(data)
        rendered = render_fields(data, sample if sample is not None else data.get("sample_data") or {})
    except ApiError as error:
        return {"ok": False, "errors": error.errors, "variables": []}
    except RenderError as error:
        return {"ok": False, "errors": error.errors, "variables": []}
    composed = compose(rendered, ObjectId(), category=data.get("category"), track=False)
    return {"ok": True, "errors": [], "variables": variables, **composed}

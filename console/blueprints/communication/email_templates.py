"""Email templates: validated at save, every previous state kept as a version, optimistic locking."""

from __future__ import annotations

import difflib
import re

from bson import ObjectId
from mongoengine.errors import NotUniqueError
from pymongo.errors import DuplicateKeyError

from console import audit
from console.blueprints.communication.models import EmailTemplate, EmailTemplateVersion
from console.blueprints.communication.render import RenderError, check_sources, render_fields, required_variables
from console.errors import ApiError
from console.pagination import get_or_404, object_id_or_404
from console.timeutil import utcnow

EDITABLE = ("name", "subject", "html_body", "text_body", "category", "description", "sample_data", "declared")
CATEGORY_RE = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")
KEY_RE = re.compile(r"^[a-z][a-z0-9_]*(\.[a-z0-9_]+){0,4}$")


def to_dict(template: EmailTemplate, *, with_versions: bool = False) -> dict:
    out = {"id": str(template.id), "name": template.name, "subject": template.subject,
           "html_body": template.html_body, "text_body": template.text_body or None, "category": template.category,
           "description": template.description or "", "sample_data": template.sample_data or {},
           "variables": list(template.variables or []), "version": template.version,
           "created_at": template.created_at, "updated_at": template.updated_at,
           "created_by": template.created_by, "updated_by": template.updated_by,
           "key": template.key, "builtin": bool(template.builtin), "enabled": template.enabled is not False,
           "declared": [dict(d) for d in template.declared or []],
           "required_variables": required_of(template)}
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


def required_of(template) -> list[str]:
    """The variables a send of this template must give (declared required, or used without a fallback)."""
    get = template.get if isinstance(template, dict) else lambda name: getattr(template, name, None)
    return required_variables({field: get(field) for field in ("subject", "html_body", "text_body")},
                              get("declared") or [])


def template_for_send(template_id: str | None = None, template_key: str | None = None,
                      field: str | None = None) -> EmailTemplate:
    """The template a send names by id or by key; 422 when unknown or disabled."""
    if template_key:
        template, field, name = EmailTemplate.objects(key=template_key).first(), field or "template_key", template_key
    else:
        oid = ObjectId(template_id) if template_id and ObjectId.is_valid(template_id) else None
        template, field, name = (EmailTemplate.objects(id=oid).first() if oid else None), field or "template_id", \
            template_id
    if template is None:
        raise ApiError(422, "Unknown template.", [{"field": field, "message": f"no template {name!r}"}])
    if template.enabled is False:
        raise ApiError(422, f"The template {template.name!r} is disabled.",
                       [{"field": field, "message": "the template is disabled; enable it first"}])
    return template


def _validate(data: dict) -> list[str]:
    for index, spec in enumerate(data.get("declared") or []):
        if not isinstance(spec, dict) or not re.match(r"^[A-Za-z_][A-Za-z0-9_]{0,63}$", str(spec.get("name", ""))):
            raise ApiError(422, "Bad declared variable.", [{"field": f"declared.{index}.name",
                                                             "message": "a variable name (letters, digits, _)"}])
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
    key = data.get("key") or None
    if key and not KEY_RE.match(key):
        raise ApiError(422, "Bad key.", [{"field": "key", "message": "dotted lowercase words, e.g. event.registered"}])
    if key and EmailTemplate.objects(key=key).first():
        raise ApiError(409, f"A template with the key {key!r} already exists.",
                       [{"field": "key", "message": "already taken"}])
    now = utcnow()
    template = EmailTemplate(**{k: data.get(k) for k in EDITABLE if data.get(k) is not None}, key=key,
                             variables=variables, version=1, created_at=now, updated_at=now, created_by=actor,
                             updated_by=actor)
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
    if data.get("declared") is None:  # a form or client that does not send them keeps the declared variables
        data = {**data, "declared": current.get("declared") or []}
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
    """The template and its version history go; mail already rendered from it keeps its own copy.

    A built-in cannot be deleted (code and bindings name it by key): disable it instead."""
    template = get_template(template_id)
    if template.builtin:
        raise ApiError(409, f"{template.name!r} is built in and cannot be deleted; disable it instead.",
                       [{"field": "template_id", "message": "built-in templates can only be disabled"}])
    template.delete()
    EmailTemplateVersion._get_collection().delete_many({"template_id": template.id})
    audit.record("template.delete", f"template:{template.id}", {"name": template.name}, None)


def set_enabled(template_id: str, enabled: bool, actor: str | None = None) -> EmailTemplate:
    """Turn a template on or off; a disabled template refuses sends and its bindings skip."""
    template = get_template(template_id)
    EmailTemplate._get_collection().update_one({"_id": template.id},
                                               {"$set": {"enabled": bool(enabled), "updated_at": utcnow()}})
    audit.record("template.enable" if enabled else "template.disable", f"template:{template.id}",
                 {"enabled": template.enabled is not False}, {"enabled": bool(enabled)}, actor=actor)
    return get_template(template_id)


def reset_to_builtin(template_id: str, expected_version: int | None = None, actor: str | None = None) -> EmailTemplate:
    """Restore a built-in's catalog content, as a new version (the edited ones stay in the history)."""
    from console.blueprints.communication.catalog import content, spec

    template = get_template(template_id)
    builtin = spec(template.key) if template.builtin and template.key else None
    if builtin is None:
        raise ApiError(409, "Only built-in templates can be reset.",
                       [{"field": "template_id", "message": "not a built-in template"}])
    fields = content(builtin)
    if EmailTemplate.objects(name=fields["name"], id__ne=template.id).first():
        fields["name"] = template.name  # an admin's template took the name meanwhile
    return update_template(template_id, fields, expected_version, actor)


def list_templates(category: str | None = None, q: str | None = None):
    queryset = EmailTemplate.objects
    if category:
        queryset = queryset.filter(category=category)
    if q:
        queryset = queryset.filter(__raw__={"name": {"$regex": re.escape(q), "$options": "i"}})
    return queryset


def preview(data: dict, sample: dict | None = None) -> dict:
    """Render unsaved template fields for the editor; errors come back instead of raising."""
    from console.blueprints.communication.layout import compose

    try:
        variables = check_sources(data)
        rendered = render_fields(data, sample if sample is not None else data.get("sample_data") or {})
    except (ApiError, RenderError) as error:
        return {"ok": False, "errors": error.errors, "variables": [], "required": []}
    composed = compose(rendered, ObjectId(), category=data.get("category"), to_email="preview@example.com",
                       track=False)
    return {"ok": True, "errors": [], "variables": variables, "required": required_of(data), **composed}


# --- for other features (named in the package docstring) ----------------------------------------------------

def find_template(template_id: str | None) -> EmailTemplate | None:
    """The template with this id, or None (also for a malformed id)."""
    if not template_id or not ObjectId.is_valid(template_id):
        return None
    return EmailTemplate.objects(id=ObjectId(template_id)).first()


def sendable_templates(limit: int = 200) -> list[EmailTemplate]:
    """Enabled templates by name (id, name and category only), for a picker."""
    return list(EmailTemplate.objects(enabled__ne=False).only("id", "name", "category").order_by("name").limit(limit))


def ensure_template(data: dict, actor: str | None = None) -> EmailTemplate:
    """The template named `data["name"]`, created from `data` the first time (a concurrent create is tolerated)."""
    template = EmailTemplate.objects(name=data["name"]).only("id").first()
    if template is None:
        try:
            template = create_template(data, actor=actor)
        except ApiError:  # created concurrently
            template = EmailTemplate.objects(name=data["name"]).only("id").first()
    return template

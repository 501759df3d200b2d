"""The suppression list: addresses no email goes to (hard bounces, complaints, unsubscribes, added by hand).
Every change made here is audited by the operation itself."""

from __future__ import annotations

import re

from email_validator import EmailNotValidError, validate_email
from pymongo.errors import DuplicateKeyError

from console import audit
from console.blueprints.communication.models import Suppression
from console.errors import ApiError
from console.pagination import PageQuery, paginate
from console.timeutil import utcnow

REASONS = ("manual", "unsubscribed", "hard_bounce", "complaint")
MEMBER_LIFTABLE = ("unsubscribed",)  # what a member may lift themselves (a bounce or complaint needs an admin)


def normalize(address: str, field: str = "email") -> str:
    try:
        return validate_email(address or "", check_deliverability=False).normalized.lower()
    except EmailNotValidError:
        raise ApiError(422, "Not a valid email address.",
                       [{"field": field, "message": f"{address!r} is not a valid email address"}]) from None


def to_dict(doc: dict) -> dict:
    return {"email": doc["email"], "reason": doc.get("reason"), "detail": doc.get("detail") or "",
            "email_id": str(doc["email_id"]) if doc.get("email_id") else None, "created_at": doc.get("created_at"),
            "created_by": doc.get("created_by")}


def get(email: str) -> dict | None:
    doc = Suppression._get_collection().find_one({"email": (email or "").lower()})
    return to_dict(doc) if doc else None


def query(q: str | None = None, reason: str | None = None):
    match: dict = {}
    if q:
        match["email"] = {"$regex": re.escape(q.strip().lower())}
    if reason:
        match["reason"] = reason
    return Suppression.objects(__raw__=match)


def list_page(page: PageQuery, q: str | None = None, reason: str | None = None) -> dict:
    return paginate(query(q, reason), page, sort_field="created_at",
                    transform=lambda doc: to_dict(doc.to_mongo().to_dict()))


def add(email: str, reason: str = "manual", detail: str = "", *, actor: str | None = None, email_id=None) -> dict:
    """Suppress an address (an existing entry keeps its first reason); 201-worthy when new."""
    address = normalize(email)
    if reason not in REASONS:
        raise ApiError(422, "Unknown reason.", [{"field": "reason", "message": f"one of {', '.join(REASONS)}"}])
    return record(address, reason, detail, actor=actor, email_id=email_id)


def record(address: str, reason: str, detail: str = "", *, actor: str | None = None, email_id=None) -> dict:
    """Suppress an address the system already checked (a bounce, a complaint, an unsubscribe link); audited."""
    address = address.strip().lower()
    doc = {"email": address, "reason": reason, "detail": detail or "", "email_id": email_id,
           "created_at": utcnow(), "created_by": actor}
    coll = Suppression._get_collection()
    try:
        coll.insert_one(doc)
    except DuplicateKeyError:
        return {**to_dict(coll.find_one({"email": address})), "created": False}
    audit.record("suppression.add", f"suppression:{address}", None, to_dict(doc), actor=actor)
    return {**to_dict(doc), "created": True}


def remove(email: str, reason: str, *, actor: str | None = None) -> dict:
    """Lift a suppression; `reason` says why (kept in the audit log). 404 when the address is not suppressed."""
    address = (email or "").strip().lower()
    if not (reason or "").strip():
        raise ApiError(422, "Say why the address may get email again.",
                       [{"field": "reason", "message": "a reason is required"}])
    doc = Suppression._get_collection().find_one_and_delete({"email": address})
    if doc is None:
        raise ApiError(404, f"{address} is not suppressed.")
    audit.record("suppression.remove", f"suppression:{address}", to_dict(doc), None, actor=actor,
                 reason=reason.strip())
    return to_dict(doc)


def lift_for_member(email: str, actor: str) -> bool:
    """A member resubscribing lifts their own unsubscribe (never a bounce or a complaint)."""
    doc = Suppression._get_collection().find_one_and_delete({"email": email.lower(),
                                                              "reason": {"$in": list(MEMBER_LIFTABLE)}})
    if doc:
        audit.record("suppression.remove", f"suppression:{doc['email']}", to_dict(doc), None, actor=actor,
                     reason="resubscribed in the preference center")
    return bool(doc)


CSV_COLUMNS = ("email", "reason", "detail", "email_id", "created_at", "created_by")


def csv_rows(q: str | None = None, reason: str | None = None):
    """Every matching suppression as CSV rows (CSV_COLUMNS), newest first, read as they are sent."""
    for doc in Suppression._get_collection().find(query(q, reason)._query).sort("created_at", -1):
        row = to_dict(doc)
        yield [row[column] for column in CSV_COLUMNS]

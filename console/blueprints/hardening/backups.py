"""The last backup the operator recorded (`flask --app wsgi record-backup`), read by the checklist."""

from __future__ import annotations

from datetime import datetime, timedelta

from console.audit import record
from console.blueprints.hardening.models import OpsSetting
from console.timeutil import as_utc, utcnow

KEY = "last_backup"


def record_backup(at: datetime | None = None, note: str = "") -> dict:
    now = utcnow()
    moment = as_utc(at) if at else now
    if moment > now + timedelta(minutes=5):
        raise ValueError("a backup cannot finish in the future")
    value = {"at": moment, "note": note[:200]}
    OpsSetting.objects(key=KEY).update_one(upsert=True, set__value=value, set__updated_at=now)
    record("hardening.backup.recorded", KEY, after={"at": moment, "note": value["note"]}, actor="cli")
    return value


def last_backup() -> dict | None:
    doc = OpsSetting.objects(key=KEY).as_pymongo().first()
    if not doc or not (doc.get("value") or {}).get("at"):
        return None
    return {"at": as_utc(doc["value"]["at"]), "note": doc["value"].get("note") or ""}

"""What the API fuzzer checks beyond schemathesis: refused requests write nothing, and what is stored stays
whole (no half-written mail, batch, template or rollup). Plus the counts `make fuzz` reports."""

from __future__ import annotations

import threading
from collections import Counter

from pymongo import monitoring

# Written on every request by design (sampled timings, error groups, slow commands): not the caller's data.
TELEMETRY = {"request_metrics", "error_events", "slow_queries"}
WRITE_COMMANDS = {"insert", "update", "delete", "findAndModify"}
# Refused attempts are audited by design (failed sign-ins, lockouts, denials): the trail, not the caller's data.
AUDITED_REFUSALS = {"auth.login_failed", "auth.lockout", "permission.denied"}
EMAIL_STATUSES = {"queued", "sending", "deferred", "sent", "failed", "skipped"}

STATS: dict[str, Counter] = {"cases": Counter(), "statuses": Counter(), "links": Counter(),
                             "stateful_steps": Counter(), "scenarios": Counter()}


def summary_lines() -> list[str]:
    """What the fuzzer did, for the end of the pytest run."""
    if not STATS["cases"] and not STATS["stateful_steps"]:
        return []
    statuses = ", ".join(f"{code}: {n}" for code, n in sorted(STATS["statuses"].items()))
    return [
        f"fuzz: {len(STATS['cases'])} operations, {sum(STATS['cases'].values())} generated cases; "
        f"{sum(STATS['scenarios'].values())} stateful scenarios of {sum(STATS['stateful_steps'].values())} calls "
        f"over {len(STATS['stateful_steps'])} operations, following {len(STATS['links'])} links "
        f"{sum(STATS['links'].values())} times",
        f"fuzz: responses by status: {statuses}",
    ]


class WriteRecorder(monitoring.CommandListener):
    """Remembers every MongoDB write that changed a document, outside the telemetry collections."""

    def __init__(self):
        self._lock = threading.Lock()
        self._pending: dict[int, tuple[str, str]] = {}
        self.changes: list[tuple[str, str]] = []

    def clear(self) -> None:
        with self._lock:
            self.changes.clear()

    def started(self, event):
        if event.command_name in WRITE_COMMANDS:
            collection = event.command.get(event.command_name)
            if collection not in TELEMETRY and not _is_lease(collection, event.command) \
                    and not _is_audited_refusal(collection, event.command):
                with self._lock:
                    self._pending[event.request_id] = (event.command_name, collection)

    def succeeded(self, event):
        with self._lock:
            write = self._pending.pop(event.request_id, None)
            if write is not None and _changed(write[0], event.reply):
                self.changes.append(write)

    def failed(self, event):
        with self._lock:
            self._pending.pop(event.request_id, None)


def _is_lease(collection: str, command: dict) -> bool:
    """The role-assignment lock: taken and given back within the request that checks the rules, so even a
    refused assignment writes it; it holds no data."""
    from console.blueprints.roles.manage import LOCK_KEY

    updates = command.get("updates") or []
    return collection == "authz_state" and bool(updates) and all(u["q"].get("_id") == LOCK_KEY for u in updates)


def _changed(command: str, reply: dict) -> bool:
    if command == "findAndModify":
        last = reply.get("lastErrorObject") or {}
        return bool(last.get("n")) and (bool(last.get("upserted")) or reply.get("value") is not None)
    if command == "update":
        return bool(reply.get("nModified")) or bool(reply.get("upserted"))
    return bool(reply.get("n"))


def _is_audited_refusal(collection: str, command) -> bool:
    documents = command.get("documents") or []
    return collection == "audit_log" and bool(documents) and all(
        doc.get("action") in AUDITED_REFUSALS for doc in documents)


def refused_requests_change_nothing(recorder: WriteRecorder):
    """A schemathesis check: a request answered 4xx left every collection as it was."""

    def check(ctx, response, case):
        # the one write a refusal may make is its own audit entry (failed sign-ins and denials are audited)
        changes = [write for write in recorder.changes if write != ("insert", "audit_log")]
        if 400 <= response.status_code < 500 and changes:
            raise AssertionError(f"{case.method} {case.formatted_path} was refused with {response.status_code} "
                                 f"but wrote {sorted(set(changes))}")
        return True

    check.__name__ = "refused_requests_change_nothing"
    return check


def store_problems(db) -> list[str]:
    """Every way the stored documents contradict each other; empty when the store is whole."""
    problems = []
    for doc in db.email_queue.find({}, {"html_body": 0, "text_body": 0, "links": 0}):
        where = f"email_queue {doc['_id']}"
        if doc.get("status") not in EMAIL_STATUSES:
            problems.append(f"{where}: status {doc.get('status')!r}")
        for field in ("to_email", "subject", "category", "priority", "created_at"):
            if not doc.get(field):
                problems.append(f"{where}: no {field}")
        if doc.get("status") == "skipped" and not doc.get("reason"):
            problems.append(f"{where}: skipped without a reason")
        if doc.get("status") in {"queued", "deferred"} and not doc.get("job_id"):
            problems.append(f"{where}: {doc['status']} without a delivery job")
    skipped = {doc["_id"] for doc in db.email_queue.find({"status": "skipped"}, {"_id": 1})}
    in_history = {doc["email_id"] for doc in db.notification_history.find({"email_id": {"$in": list(skipped)}},
                                                                            {"email_id": 1})}
    problems += [f"email_queue {oid}: skipped but not in notification_history" for oid in skipped - in_history]

    per_batch = {row["_id"]: row["n"] for row in db.email_queue.aggregate(
        [{"$match": {"batch_id": {"$ne": None}}}, {"$group": {"_id": "$batch_id", "n": {"$sum": 1}}}])}
    for batch in db.email_batches.find():
        stored = per_batch.pop(batch["_id"], 0)
        if stored != batch.get("total") or batch.get("queued", 0) + batch.get("skipped", 0) != batch.get("total"):
            problems.append(f"email_batches {batch['_id']}: total {batch.get('total')}, queued {batch.get('queued')}"
                            f", skipped {batch.get('skipped')}, {stored} emails stored")
    problems += [f"email_queue: {n} emails of batch {oid}, which does not exist" for oid, n in per_batch.items()]

    kept = {}
    for version in db.email_template_versions.find({}, {"template_id": 1, "version": 1}):
        kept.setdefault(version["template_id"], set()).add(version["version"])
    templates = list(db.email_templates.find({}, {"version": 1, "variables": 1, "name": 1}))
    problems += [f"email_template_versions: history of template {oid}, which does not exist"
                 for oid in set(kept) - {template["_id"] for template in templates}]
    for template in templates:
        if set(range(1, template["version"])) != kept.get(template["_id"], set()):
            problems.append(f"email_templates {template['_id']}: version {template['version']} but history "
                            f"{sorted(kept.get(template['_id'], set()))}")
        if not isinstance(template.get("variables"), list):
            problems.append(f"email_templates {template['_id']}: no variables list")

    per_day = {(row["_id"]["u"], row["_id"]["d"]): row["n"] for row in db.user_activities.aggregate([
        {"$group": {"_id": {"u": "$user_id", "d": {"$dateToString": {"format": "%Y-%m-%d", "date": "$timestamp"}}},
                    "n": {"$sum": 1}}}])}
    for rollup in db.activity_rollups.find({}, {"user_id": 1, "day": 1, "events": 1}):
        key = (rollup["user_id"], rollup["day"].strftime("%Y-%m-%d"))
        stored = per_day.pop(key, 0)
        if stored != rollup.get("events"):
            problems.append(f"activity_rollups {key}: {rollup.get('events')} events counted, {stored} stored")
    problems += [f"user_activities {key}: {n} events without a rollup" for key, n in per_day.items()]
    members = {doc["user_id"] for doc in db.users.find({}, {"user_id": 1})}
    problems += [f"user_activities: events of {user!r}, who is not a member"
                 for user in db.user_activities.distinct("user_id") if user not in members]

    roles = {doc["name"] for doc in db.roles.find({}, {"name": 1})}
    for admin in db.admins.find({}, {"roles": 1, "email": 1}):
        problems += [f"admins {admin['email']}: role {role!r} does not exist"
                     for role in admin.get("roles", []) if role not in roles]
    for entry in db.audit_log.find({"$or": [{"action": {"$in": [None, ""]}}, {"at": None}]}, {"_id": 1}):
        problems.append(f"audit_log {entry['_id']}: no action or time")
    return problems

"""Error groups (one per fingerprint: request errors and failed RQ jobs) over a time window, their trend, and
their life: resolve, ignore (for a while or for good), reopen; a resolved group that recurs is reopened and
marked as a regression (console.telemetry records that). Failed jobs of a group can be retried or discarded."""

from __future__ import annotations

from datetime import datetime, timedelta

from console.audit import record
from console.errors import ApiError
from console.telemetry import hour_key
from console.telemetry.models import ErrorEvent, RequestMetric
from console.timeutil import as_utc, utcnow

STATES = ("open", "resolved", "ignored")
STATE_FILTERS = ("active", "open", "resolved", "ignored", "regressed", "all")


def requests_in_window(since) -> tuple[int, int]:
    """(requests, server errors) recorded since `since`."""
    pipeline = [{"$match": {"at": {"$gte": since}}},
                {"$group": {"_id": None, "n": {"$sum": "$n"}, "errors": {"$sum": "$errors"}}}]
    rows = list(RequestMetric.objects.aggregate(pipeline))
    return (rows[0]["n"], rows[0]["errors"]) if rows else (0, 0)


def effective_state(doc: dict, now: datetime) -> str:
    """An ignore that has run out reads as open, before the next occurrence writes it."""
    state = doc.get("state") or "open"
    if state == "ignored" and doc.get("ignored_until") and as_utc(doc["ignored_until"]) <= now:
        return "open"
    return state


def _matches(state: str, doc: dict, wanted: str) -> bool:
    if wanted == "all":
        return True
    if wanted == "active":  # what needs a look: open, including regressions
        return state == "open"
    if wanted == "regressed":
        return bool(doc.get("regressed")) and state == "open"
    return state == wanted


def error_analysis(hours: int = 24, limit: int = 100, state: str = "active", source: str | None = None) -> dict:
    """Groups seen in the last `hours`, most frequent first; `count` is the occurrences inside the window.
    `total` and `error_rate` count request errors (of every state) against the requests recorded;
    `job_failures` counts failed job runs."""
    now = utcnow()
    since = now - timedelta(hours=hours)
    first_hour = hour_key(since)
    docs = ErrorEvent.objects(last_seen__gte=since).as_pymongo()
    groups, total, job_failures, states = [], 0, 0, dict.fromkeys(STATES, 0)
    for doc in docs:
        in_window = sum(n for key, n in (doc.get("hours") or {}).items() if key >= first_hour)
        kind = doc.get("source") or "request"
        if kind == "job":
            job_failures += in_window
        else:
            total += in_window
        current = effective_state(doc, now)
        states[current] += 1
        if not _matches(current, doc, state) or (source and kind != source):
            continue
        groups.append(_group(doc, in_window, current))
    _count_failed_jobs(groups)
    groups.sort(key=lambda g: (not g["regressed"], -g["count"], g["fingerprint"]))
    requests, _server_errors = requests_in_window(since)
    return {"hours": hours, "total": total, "requests": requests, "job_failures": job_failures,
            "error_rate": round(total / requests, 4) if requests else 0.0, "states": states,
            "state": state, "groups": groups[:limit]}


def _group(doc: dict, in_window: int, state: str) -> dict:
    job = doc.get("job") or None
    if job:
        job = {key: job.get(key) for key in ("name", "func", "queue", "attempts", "will_retry", "job_id",
                                             "traceback")}
        job["job_ids"] = list(dict.fromkeys(doc.get("job_ids") or []))  # counted against RQ below, then dropped
    return {
        "fingerprint": doc["fingerprint"], "exception": doc.get("exception"), "message": doc.get("message"),
        "endpoint": doc.get("endpoint"), "count": in_window, "total_count": doc.get("count", 0),
        "first_seen": doc.get("first_seen"), "last_seen": doc.get("last_seen"),
        "frames": doc.get("frames") or [], "sample": _sample(doc.get("sample")),
        "source": doc.get("source") or "request", "job": job, "state": state,
        "regressed": bool(doc.get("regressed")) and state == "open", "regressed_at": doc.get("regressed_at"),
        "resolved_at": doc.get("resolved_at"), "ignored_until": doc.get("ignored_until") if state == "ignored"
        else None,
    }


def _count_failed_jobs(groups: list[dict]) -> None:
    """`failed_jobs`: the group's jobs still in RQ's failed registry (one Redis pipeline for every group)."""
    from rq.registry import FailedJobRegistry

    from console.queues import get_redis

    jobs = [g["job"] for g in groups if g.get("job")]
    if not jobs:
        return
    conn = get_redis()
    try:
        with conn.pipeline(transaction=False) as pipe:
            for job in jobs:
                key = FailedJobRegistry(name=job["queue"] or "default", connection=conn).key
                for job_id in job["job_ids"]:
                    pipe.zscore(key, job_id)
            scores = iter(pipe.execute())
        for job in jobs:
            job["failed_jobs"] = sum(1 for _ in job["job_ids"] if next(scores) is not None)
    except Exception:  # Redis down: the groups still show, without the retry count
        for job in jobs:
            job["failed_jobs"] = 0
    for job in jobs:
        del job["job_ids"]


def _sample(sample: dict | None) -> dict:
    sample = dict(sample or {})
    return {key: sample[key] for key in ("method", "path", "query_keys", "queue", "at") if key in sample}


def error_trend(hours: int = 24) -> dict:
    """Per UTC hour of the window: requests, request errors, the error rate and failed job runs."""
    now = utcnow()
    since = now - timedelta(hours=hours)
    hour_keys = [hour_key(since + timedelta(hours=i)) for i in range(hours + 1)]
    first = hour_keys[0]
    requests = dict.fromkeys(hour_keys, 0)
    pipeline = [{"$match": {"at": {"$gte": since.replace(minute=0, second=0, microsecond=0)}}},
                {"$group": {"_id": {"$dateToString": {"format": "%Y%m%d%H", "date": "$at"}}, "n": {"$sum": "$n"}}}]
    for row in RequestMetric.objects.aggregate(pipeline):
        if row["_id"] in requests:
            requests[row["_id"]] = row["n"]
    errors, jobs = dict.fromkeys(hour_keys, 0), dict.fromkeys(hour_keys, 0)
    for doc in ErrorEvent.objects(last_seen__gte=since).only("hours", "source").as_pymongo():
        target = jobs if doc.get("source") == "job" else errors
        for key, n in (doc.get("hours") or {}).items():
            if key >= first and key in target:
                target[key] += n
    series = [{"hour": datetime.strptime(key, "%Y%m%d%H").replace(tzinfo=now.tzinfo), "requests": requests[key],
               "errors": errors[key], "job_failures": jobs[key],
               "error_rate": round(errors[key] / requests[key], 4) if requests[key] else None}
              for key in hour_keys]
    return {"hours": hours, "series": series}


# --- the life of a group --------------------------------------------------------------------------------------

def _group_or_404(fingerprint: str) -> ErrorEvent:
    group = ErrorEvent.objects(fingerprint=fingerprint).first() if len(fingerprint) <= 64 else None
    if group is None:
        raise ApiError(404, f"No error group has the fingerprint {fingerprint}.")
    return group


def change_state(fingerprint: str, action: str, actor: str, minutes: int | None = None) -> dict:
    """resolve | ignore (`minutes` None: for good) | reopen; audited."""
    group = _group_or_404(fingerprint)
    now = utcnow()
    before = {"state": effective_state(group.to_mongo(), now)}
    if action == "resolve":
        changes = {"set__state": "resolved", "set__resolved_at": now, "set__regressed": False,
                   "unset__ignored_until": True}
    elif action == "ignore":
        changes = {"set__state": "ignored", "set__ignored_until": now + timedelta(minutes=minutes)
                   if minutes else None}
    elif action == "reopen":
        changes = {"set__state": "open", "unset__ignored_until": True, "unset__resolved_at": True}
    else:
        raise ApiError(422, f"Unknown action {action!r}.")
    group.update(set__changed_by=actor, **changes)
    group.reload()
    after = {"state": group.state, "ignored_until": group.ignored_until}
    record(f"hardening.error_group.{action}", fingerprint, before=before, after=after)
    result = _group(group.to_mongo().to_dict(), 0, effective_state(group.to_mongo(), now))
    _count_failed_jobs([result])
    return result


def job_action(fingerprint: str, action: str) -> dict:
    """retry | discard the group's failed jobs still in RQ's failed registries; audited."""
    from rq.exceptions import NoSuchJobError
    from rq.job import Job
    from rq.registry import FailedJobRegistry

    from console.queues import get_redis

    group = _group_or_404(fingerprint)
    if group.source != "job":
        raise ApiError(422, "Only failed-job groups can be retried or discarded.")
    conn = get_redis()
    done, gone = [], []
    for job_id in list(dict.fromkeys(group.job_ids or [])):
        try:
            job = Job.fetch(job_id, connection=conn)
        except NoSuchJobError:
            gone.append(job_id)
            continue
        registry = FailedJobRegistry(name=job.origin, connection=conn)
        if job_id not in registry:
            gone.append(job_id)  # retried by RQ already, or finished since
            continue
        if action == "retry":
            registry.requeue(job_id)
        elif action == "discard":
            registry.remove(job, delete_job=True)
        else:
            raise ApiError(422, f"Unknown action {action!r}.")
        done.append(job_id)
    group.update(pull_all__job_ids=done + gone)
    if action == "discard":
        group.update(set__state="resolved", set__resolved_at=utcnow(), set__regressed=False)
    result = {"fingerprint": fingerprint, "action": action, "jobs": done, "already_gone": len(gone)}
    record(f"hardening.failed_jobs.{action}", fingerprint, after={"jobs": done})
    return result

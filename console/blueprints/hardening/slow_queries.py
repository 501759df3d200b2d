"""Slow MongoDB commands: recent shapes, their plan (explain) and an index that would serve them."""

from __future__ import annotations

import json
import logging

from bson import ObjectId
from pymongo.errors import PyMongoError

from console.db import get_db
from console.telemetry.models import SlowQuery
from console.timeutil import utcnow

log = logging.getLogger(__name__)

_RANGE_OPS = {"$gt", "$gte", "$lt", "$lte", "$ne", "$nin", "$exists", "$regex", "$not", "$type", "$mod"}
_ACCESS_STAGES = {"COLLSCAN", "IXSCAN", "IDHACK", "EXPRESS_IXSCAN", "EOF", "COUNT_SCAN", "DISTINCT_SCAN"}


def _dummy(placeholder: str):
    """A value of the placeholder's type: the plan depends on fields and operators, not on values."""
    kind = placeholder[1:-1] if placeholder.startswith("<") and placeholder.endswith(">") else "str"
    return {"int": 0, "float": 0.0, "bool": False, "Int64": 0, "Decimal128": 0, "NoneType": None,
            "datetime": utcnow(), "ObjectId": ObjectId(), "dict": {}, "list": []}.get(kind, "")


def concretize(shape):
    if isinstance(shape, dict):
        return {key: concretize(value) for key, value in shape.items()}
    if isinstance(shape, list):
        return [concretize(item) for item in shape]
    if isinstance(shape, str):
        return _dummy(shape)
    return shape


def query_parts(name: str, shape: dict) -> tuple[dict | None, dict | None]:
    """(filter shape, sort spec) of a command, or (None, None) when it reads no documents."""
    if name == "find":
        return shape.get("filter") or {}, shape.get("sort")
    if name in {"count", "distinct"}:
        return shape.get("query") or {}, None
    if name == "findAndModify":
        return shape.get("query") or {}, shape.get("sort")
    if name in {"update", "delete"}:
        key = "updates" if name == "update" else "deletes"
        statements = shape.get(key) or [{}]
        first = statements[0] if isinstance(statements[0], dict) else {}
        return first.get("q") or {}, None
    if name == "aggregate":
        match: dict = {}
        sort = None
        for stage in shape.get("pipeline") or []:
            if not isinstance(stage, dict) or len(stage) != 1:
                break
            (op, spec), = stage.items()
            if op == "$match" and isinstance(spec, dict) and sort is None:
                match.update(spec)
            elif op == "$sort" and isinstance(spec, dict) and sort is None:
                sort = spec
            else:
                break
        return match, sort
    return None, None


def summarize_plan(winning: dict) -> dict:
    """The access stage (COLLSCAN, IXSCAN…), the index used and whether the sort happens in memory."""
    stages, index, access = [], None, None
    stack = [winning]
    while stack:
        node = stack.pop(0)
        if not isinstance(node, dict):
            continue
        stage = node.get("stage")
        if stage:
            stages.append(stage)
            if stage in _ACCESS_STAGES and access is None:
                access = stage
                index = node.get("indexName")
        if "inputStage" in node:
            stack.append(node["inputStage"])
        stack.extend(node.get("inputStages") or [])
    access = access or (stages[-1] if stages else None)
    return {"stage": access, "index": index, "stages": stages, "in_memory_sort": "SORT" in stages}


def explain(database: str, collection: str, name: str, shape: dict) -> dict | None:
    filter_shape, sort = query_parts(name, shape)
    if filter_shape is None:
        return None
    command = {"find": collection, "filter": concretize(filter_shape)}
    if sort:
        command["sort"] = sort
    try:
        result = get_db().client[database].command({"explain": command, "verbosity": "queryPlanner"})
    except PyMongoError as error:
        return {"stage": None, "error": type(error).__name__}
    return summarize_plan((result.get("queryPlanner") or {}).get("winningPlan") or {})


def _filter_fields(filter_shape: dict) -> tuple[list[str], list[str]]:
    """Equality fields and range fields of a filter (top level and inside $and)."""
    equality, ranges = [], []
    for key, value in (filter_shape or {}).items():
        if key == "$and" and isinstance(value, list):
            for clause in value:
                more_eq, more_range = _filter_fields(clause if isinstance(clause, dict) else {})
                equality += more_eq
                ranges += more_range
            continue
        if key.startswith("$") or key == "_id":
            continue
        operators = set(value) if isinstance(value, dict) and all(str(k).startswith("$") for k in value) else set()
        if operators and operators & _RANGE_OPS:
            ranges.append(key)
        else:
            equality.append(key)
    return equality, ranges


def suggest_index(collection: str, name: str, shape: dict, plan: dict | None) -> dict | None:
    """Equality, then sort, then range fields (the ESR rule), when the plan scans the collection or sorts
    in memory."""
    if not plan or not (plan.get("stage") == "COLLSCAN" or plan.get("in_memory_sort")):
        return None
    filter_shape, sort = query_parts(name, shape)
    equality, ranges = _filter_fields(filter_shape or {})
    keys: dict = {}
    for field in equality:
        keys.setdefault(field, 1)
    for field, direction in (sort or {}).items():
        if field != "_id" or keys:
            keys.setdefault(field, -1 if direction in (-1, "-1") else 1)
    for field in ranges:
        keys.setdefault(field, 1)
    if not keys:
        return None
    return {"keys": keys, "command": f"db.{collection}.createIndex({json.dumps(keys)})"}


def slow_queries(threshold_ms: float, limit: int = 50, explain_shapes: int = 10) -> dict:
    """Recent commands at or above the threshold, newest first; each distinct shape is explained once."""
    docs = list(SlowQuery.objects(duration_ms__gte=threshold_ms).order_by("-at").limit(limit).as_pymongo())
    plans: dict[str, dict | None] = {}
    items = []
    for doc in docs:
        key = doc.get("shape_id") or ""
        name, collection, shape = doc.get("command_name"), doc.get("collection"), doc.get("shape") or {}
        if key not in plans and len(plans) < explain_shapes:
            plans[key] = explain(doc.get("database") or get_db().name, collection, name, shape)
        plan = plans.get(key)
        items.append({"collection": collection, "command_name": name, "command": shape,
                      "duration_ms": doc.get("duration_ms"), "at": doc.get("at"), "plan": plan,
                      "suggested_index": suggest_index(collection, name, shape, plan)})
    return {"threshold_ms": threshold_ms, "items": items}


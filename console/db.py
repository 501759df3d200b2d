"""MongoDB connection (mongoengine) and index management."""

from __future__ import annotations

import mongoengine
from mongoengine import Document

ALIAS = "default"


def init_app(app) -> None:
    """Connect mongoengine to MONGODB_URI; listeners from app.extensions['command_listeners'] see every command."""
    mongoengine.disconnect(ALIAS)
    mongoengine.connect(
        host=app.config["MONGODB_URI"],
        alias=ALIAS,
        tz_aware=True,
        uuidRepresentation="standard",
        serverSelectionTimeoutMS=int(app.config.get("MONGO_TIMEOUT_MS", 3000)),
        connectTimeoutMS=3000,
        event_listeners=list(app.extensions.get("command_listeners", [])),
        appname="community-console",
    )


def get_db():
    return mongoengine.get_db(ALIAS)


def all_documents() -> list[type[Document]]:
    """Every concrete Document class the app declares: the kernel's, and those of every feature (create_app
    imports each feature's models when it registers the feature)."""
    from console import accounts, audit, authz, members  # noqa: F401  (the kernel's documents)
    from console.telemetry import models  # noqa: F401

    seen, out = set(), []
    stack = list(Document.__subclasses__())
    while stack:
        cls = stack.pop()
        stack.extend(cls.__subclasses__())
        if cls._meta.get("abstract") or cls in seen:
            continue
        seen.add(cls)
        out.append(cls)
    return sorted(out, key=lambda cls: cls._get_collection_name())


def ensure_indexes() -> list[str]:
    """Create every index declared in model meta; return the collections touched."""
    done = []
    for cls in all_documents():
        cls.ensure_indexes()
        done.append(cls._get_collection_name())
    return done


IN_SLICE = 25


def find_in(collection, field: str, values, projection: dict | None = None, extra: dict | None = None, **options):
    """Documents whose `field` is one of `values`, asked for in small slices.

    SecantusDB matches each candidate against the whole `$in` list, so one `$in` of n values costs about n²:
    300 ids in one query take four times as long as twelve queries of 25."""
    unique = list(dict.fromkeys(values))
    for start in range(0, len(unique), IN_SLICE):
        yield from collection.find({field: {"$in": unique[start:start + IN_SLICE]}, **(extra or {})}, projection,
                                   **options)

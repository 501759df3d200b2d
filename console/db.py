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
    """Every concrete Document class the app declares."""
    import console.models  # noqa: F401  (registers every model module)

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

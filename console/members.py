"""Members: the platform's end users, in the shared `users` collection."""

from __future__ import annotations

from mongoengine import DateTimeField, DynamicDocument, StringField

from console.timeutil import utcnow


class Member(DynamicDocument):
    """One document per member keyed by `user_id`; fields the platform stores there are kept untouched."""

    user_id = StringField(required=True, unique=True, max_length=200)
    email = StringField(max_length=254)
    name = StringField(max_length=200)
    created_at = DateTimeField(default=utcnow)
    first_seen = DateTimeField()
    last_seen = DateTimeField()

    meta = {
        "collection": "users",
        "strict": False,
        # Each index costs every ingestion write of last_seen; these serve inactive members, new members per
        # period and never-active members. (Search by email is a regex, which no index serves.)
        "indexes": ["last_seen", "first_seen", "created_at"],
    }

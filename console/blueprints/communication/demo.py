"""A little sent history, so the communication pages have something to show (templates come from the catalog)."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId

from console.blueprints.communication.models import EmailQueue, EmailTemplate, EmailTracking, NotificationHistory

DEMO_KEYS = ("account.welcome", "event.reminder", "digest.weekly", "engagement.we_miss_you")


def seed_communication(rng, now) -> str:
    """Once, a few weeks of sent history with opens and clicks, from the built-in templates (catalog.py)."""
    from console.blueprints.communication.catalog import install
    from console.members import Member

    install()  # seed-demo runs init-db's steps first; this keeps the seeder usable on its own
    templates = {doc["key"]: doc for doc in EmailTemplate._get_collection().find({"key": {"$in": list(DEMO_KEYS)}})}
    if EmailQueue._get_collection().count_documents({"source.demo": True}, limit=1):
        return "history already there"
    members = list(Member._get_collection().find({}, {"user_id": 1, "email": 1, "name": 1}).limit(120))
    docs, history, events = [], [], []
    for member in members:
        if not member.get("email"):
            continue
        template = templates[rng.choice(DEMO_KEYS)]
        created = now - timedelta(days=rng.randint(0, 27), hours=rng.randint(0, 23))
        status = rng.choices(["sent", "sent", "sent", "skipped", "failed"], k=1)[0]
        email_id = ObjectId()
        opened = status == "sent" and rng.random() < 0.45
        clicked = opened and rng.random() < 0.35
        docs.append({"_id": email_id, "channel": "email", "to_email": member["email"], "user_id": member["user_id"],
                     "template_id": template["_id"], "template_name": template["name"], "template_version": 1,
                     "subject": template["subject"].split("{{")[0].strip() or template["name"],
                     "html_body": f"<p>{template['name']} (demo)</p>", "text_body": f"{template['name']} (demo)",
                     "links": [], "priority": "normal", "category": template["category"], "status": status,
                     "reason": {"skipped": "opted_out", "failed": "recipient refused: 550 No such user"}.get(status),
                     "attempts": 1 if status != "skipped" else 0, "created_at": created, "updated_at": created,
                     "sent_at": created + timedelta(seconds=5) if status == "sent" else None,
                     "opens": int(opened), "clicks": int(clicked),
                     "first_opened_at": created + timedelta(hours=2) if opened else None,
                     "source": {"demo": True}})
        history.append({"user_id": member["user_id"], "recipient": member["email"], "channel": "email",
                        "category": template["category"], "template_id": template["_id"],
                        "template": template["name"], "status": status, "email_id": email_id, "created_at": created})
        if opened:
            events.append({"email_id": email_id, "type": "open", "at": created + timedelta(hours=2)})
        if clicked:
            events.append({"email_id": email_id, "type": "click", "at": created + timedelta(hours=2, minutes=1),
                           "url": "https://example.org"})
    if docs:
        EmailQueue._get_collection().insert_many(docs, ordered=False)
        NotificationHistory._get_collection().insert_many(history, ordered=False)
    if events:
        EmailTracking._get_collection().insert_many(events, ordered=False)
    return f"{len(docs)} emails of history"

"""Demo templates and a little sent history, so the communication pages have something to show."""

from __future__ import annotations

from datetime import timedelta

from bson import ObjectId
from pymongo import UpdateOne

from console.blueprints.communication.models import EmailQueue, EmailTemplate, EmailTracking, NotificationHistory

DEMO_TEMPLATES = [
    {
        "name": "Welcome",
        "category": "product",
        "description": "Sent when a member joins.",
        "subject": "Welcome to the community, {{ first_name or 'friend' }}!",
        "html_body": (
            "<h1 style=\"font-size:22px\">Welcome, {{ first_name or 'friend' }}!</h1>\n"
            "<p>We are glad you joined {{ community }}. Here is how to get started:</p>\n"
            "<ul>\n{% for step in steps %}  <li>{{ step }}</li>\n{% endfor %}</ul>\n"
            "<p><a href=\"{{ profile_url }}\">Complete your profile</a></p>"
        ),
        "sample_data": {"first_name": "Ava", "community": "Makers Guild",
                        "steps": ["Say hello in the forum", "Join an event", "Follow three topics"],
                        "profile_url": "https://example.org/profile"},
    },
    {
        "name": "Event reminder",
        "category": "events",
        "description": "A day before an event the member registered for.",
        "subject": "Reminder: {{ event.title }} is {{ event.when }}",
        "html_body": (
            "<p>Hi {{ first_name or 'there' }},</p>\n"
            "<p><strong>{{ event.title }}</strong> starts {{ event.when }} at {{ event.place }}.</p>\n"
            "<p><a href=\"{{ event.url }}\">See the details</a> or <a href=\"{{ event.calendar_url }}\">add it to "
            "your calendar</a>.</p>"
        ),
        "sample_data": {"first_name": "Liam", "event": {"title": "Community meetup", "when": "tomorrow at 18:00",
                                                          "place": "Room 4, Central Library",
                                                          "url": "https://example.org/events/42",
                                                          "calendar_url": "https://example.org/events/42.ics"}},
    },
    {
        "name": "Weekly digest",
        "category": "digest",
        "description": "The week's most-read posts.",
        "subject": "This week: {{ posts|length }} posts you might like",
        "html_body": (
            "<p>Hi {{ first_name or 'there' }}, here is what happened this week:</p>\n"
            "{% for post in posts %}\n<p><a href=\"{{ post.url }}\">{{ post.title }}</a><br>"
            "<span style=\"color:#6b7280\">{{ post.comments }} comments</span></p>\n{% endfor %}"
        ),
        "sample_data": {"first_name": "Mia", "posts": [
            {"title": "How we built the new garden", "url": "https://example.org/p/1", "comments": 12},
            {"title": "Volunteers wanted for June", "url": "https://example.org/p/2", "comments": 5},
            {"title": "Photos from the spring fair", "url": "https://example.org/p/3", "comments": 21}]},
    },
    {
        "name": "We miss you",
        "category": "marketing",
        "description": "Re-engagement for members who went quiet.",
        "subject": "{{ first_name or 'Hey' }}, we miss you",
        "html_body": (
            "<p>Hi {{ first_name or 'there' }},</p>\n"
            "<p>It has been {{ days_inactive }} days since your last visit. A lot happened meanwhile:</p>\n"
            "<p><a href=\"{{ comeback_url }}\">See what's new</a></p>"
        ),
        "sample_data": {"first_name": "Noah", "days_inactive": 42, "comeback_url": "https://example.org/welcome-back"},
    },
    {
        "name": "Security notice",
        "category": "security",
        "description": "A sign-in from a new device. Members cannot turn these off.",
        "subject": "New sign-in to your account",
        "html_body": (
            "<p>Hi {{ first_name or 'there' }},</p>\n"
            "<p>Your account was signed in from <strong>{{ device }}</strong> near {{ location }} at {{ time }}.</p>\n"
            "<p>Not you? <a href=\"{{ reset_url }}\">Reset your password</a> now.</p>"
        ),
        "sample_data": {"first_name": "Emma", "device": "Firefox on Linux", "location": "Lisbon",
                        "time": "09:12 UTC", "reset_url": "https://example.org/reset"},
    },
]


def seed_communication(rng, now) -> str:
    """Upsert the demo templates and, once, a few weeks of sent history with opens and clicks."""
    from console.blueprints.communication.render import check_sources
    from console.members import Member

    coll = EmailTemplate._get_collection()
    ops = []
    for spec in DEMO_TEMPLATES:
        variables = check_sources(spec)
        ops.append(UpdateOne({"name": spec["name"]},
                             {"$setOnInsert": {**spec, "text_body": None, "variables": variables, "version": 1,
                                               "created_at": now, "updated_at": now, "created_by": "seed-demo",
                                               "updated_by": "seed-demo"}}, upsert=True))
    result = coll.bulk_write(ops, ordered=False)
    templates = {doc["name"]: doc for doc in coll.find({"name": {"$in": [t["name"] for t in DEMO_TEMPLATES]}})}
    if EmailQueue._get_collection().count_documents({"source.demo": True}, limit=1):
        return f"{result.upserted_count} templates added; history already there"
    members = list(Member._get_collection().find({}, {"user_id": 1, "email": 1, "name": 1}).limit(120))
    docs, history, events = [], [], []
    for member in members:
        if not member.get("email"):
            continue
        template = templates[rng.choice(["Welcome", "Event reminder", "Weekly digest", "We miss you"])]
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
    return f"{result.upserted_count} templates added, {len(docs)} emails of history"

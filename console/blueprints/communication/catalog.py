"""The built-in catalog: a template for each platform event, the shared layout and the default bindings.

`install()` runs on every `init-db` (a migration registered in init_app). It adds what is missing and refreshes
a built-in only while no admin has edited it; an admin's edits are never overwritten. Bump a spec's `revision`
when its content changes here.
"""

from __future__ import annotations

from pymongo import UpdateOne
from pymongo.errors import BulkWriteError

from console.blueprints.communication.models import EmailLayout, EmailTemplate, NotificationBinding
from console.timeutil import utcnow

ACTOR = "catalog"  # updated_by of built-ins no admin has touched yet


def _var(name: str, description: str, sample, required: bool = False) -> dict:
    return {"name": name, "description": description, "required": required, "sample": sample}


def _p(*paragraphs: str) -> str:
    return "\n".join(f"<p>{p}</p>" for p in paragraphs)


def _button(url: str, label: str) -> str:
    return (f'<p><a href="{{{{ {url} }}}}" style="display:inline-block;background:#4f46e5;color:#ffffff;'
            f'padding:10px 18px;border-radius:6px;text-decoration:none;">{label}</a></p>')


HI = "Hi {{ first_name or 'there' }},"

BUILTINS: list[dict] = [
    {"key": "account.welcome", "name": "Welcome to the community", "category": "product",
     "description": "Sent once when a member joins.",
     "subject": "Welcome to {{ community or 'the community' }}, {{ first_name or 'friend' }}!",
     "html_body": _p(HI, "We are glad you joined {{ community or 'us' }}. A few ways to get started:")
     + "\n<ul>{% for step in steps or [] %}<li>{{ step }}</li>{% endfor %}</ul>\n"
     + _button("profile_url", "Complete your profile"),
     "text_body": HI + "\n\nWe are glad you joined {{ community or 'us' }}.\n{% for step in steps or [] %}"
     "- {{ step }}\n{% endfor %}\nComplete your profile: {{ profile_url }}\n",
     "variables": [_var("community", "The community's name", "Makers Guild"),
                   _var("steps", "A few first steps (list of text)", ["Say hello in the forum", "Join an event"]),
                   _var("profile_url", "Link to the member's profile page", "https://example.org/profile",
                        required=True)]},
    {"key": "account.verify_email", "name": "Verify your email address", "category": "security",
     "description": "Confirms a member owns the address they signed up with.",
     "subject": "Confirm your email address",
     "html_body": _p(HI, "Please confirm that this is your email address. The link works for "
                         "{{ expires_in or '24 hours' }}.") + "\n" + _button("verify_url", "Confirm my address")
     + "\n" + _p("If you did not sign up, ignore this email."),
     "text_body": HI + "\n\nConfirm your email address (the link works for {{ expires_in or '24 hours' }}):\n"
     "{{ verify_url }}\n\nIf you did not sign up, ignore this email.\n",
     "variables": [_var("verify_url", "The signed confirmation link", "https://example.org/verify/abc123", True),
                   _var("expires_in", "How long the link works", "24 hours")]},
    {"key": "account.password_reset", "name": "Password reset", "category": "security",
     "description": "A member asked to reset their password.",
     "subject": "Reset your password",
     "html_body": _p(HI, "Someone (hopefully you) asked to reset your password. The link works for "
                         "{{ expires_in or '1 hour' }}.") + "\n" + _button("reset_url", "Choose a new password")
     + "\n" + _p("If you did not ask for this, you can ignore this email; your password stays the same."),
     "text_body": HI + "\n\nReset your password (the link works for {{ expires_in or '1 hour' }}):\n"
     "{{ reset_url }}\n\nIf you did not ask for this, ignore this email.\n",
     "variables": [_var("reset_url", "The signed reset link", "https://example.org/reset/abc123", True),
                   _var("expires_in", "How long the link works", "1 hour")]},
    {"key": "event.registered", "name": "Event registration confirmed", "category": "events",
     "description": "A member registered for an event.",
     "subject": "You're registered: {{ event_title }}",
     "html_body": _p(HI, "You are registered for <strong>{{ event_title }}</strong> on {{ event_when }}"
                         "{% if event_place %} at {{ event_place }}{% endif %}.")
     + "\n" + _button("event_url", "See the event"),
     "text_body": HI + "\n\nYou are registered for {{ event_title }} on {{ event_when }}"
     "{% if event_place %} at {{ event_place }}{% endif %}.\nDetails: {{ event_url }}\n",
     "variables": [_var("event_title", "The event's title", "Community meetup", True),
                   _var("event_when", "Date and time, as the member should read it", "12 June at 18:00", True),
                   _var("event_place", "Where it takes place", "Central Library, room 4"),
                   _var("event_url", "Link to the event page", "https://example.org/events/42", True)]},
    {"key": "event.reminder", "name": "Event reminder", "category": "events",
     "description": "Shortly before an event the member registered for.",
     "subject": "Reminder: {{ event_title }} is {{ event_when }}",
     "html_body": _p(HI, "<strong>{{ event_title }}</strong> starts {{ event_when }}"
                         "{% if event_place %} at {{ event_place }}{% endif %}.")
     + "\n" + _button("event_url", "See the details"),
     "text_body": HI + "\n\n{{ event_title }} starts {{ event_when }}{% if event_place %} at {{ event_place }}"
     "{% endif %}.\nDetails: {{ event_url }}\n",
     "variables": [_var("event_title", "The event's title", "Community meetup", True),
                   _var("event_when", "When it starts", "tomorrow at 18:00", True),
                   _var("event_place", "Where it takes place", "Central Library, room 4"),
                   _var("event_url", "Link to the event page", "https://example.org/events/42", True)]},
    {"key": "event.changed", "name": "Event changed or cancelled", "category": "events",
     "description": "An event the member registered for moved or was cancelled.",
     "subject": "{% if cancelled %}Cancelled{% else %}Changed{% endif %}: {{ event_title }}",
     "html_body": _p(HI, "{% if cancelled %}We are sorry: <strong>{{ event_title }}</strong> is cancelled."
                         "{% else %}<strong>{{ event_title }}</strong> has changed: {{ change or 'see the new "
                         "details' }}.{% endif %}", "{{ note or '' }}")
     + "\n" + _button("event_url", "See the event"),
     "text_body": HI + "\n\n{% if cancelled %}{{ event_title }} is cancelled.{% else %}{{ event_title }} has "
     "changed: {{ change or 'see the new details' }}.{% endif %}\n{{ note or '' }}\n{{ event_url }}\n",
     "variables": [_var("event_title", "The event's title", "Community meetup", True),
                   _var("cancelled", "true when the event is cancelled", False),
                   _var("change", "What changed, in a few words", "it moves to 19:00"),
                   _var("note", "A personal note from the organisers", "Thank you for understanding."),
                   _var("event_url", "Link to the event page", "https://example.org/events/42", True)]},
    {"key": "volunteer.application_received", "name": "Volunteer application received", "category": "volunteering",
     "description": "A member applied to volunteer.",
     "subject": "We got your application{% if opportunity %} for {{ opportunity }}{% endif %}",
     "html_body": _p(HI, "Thank you for offering your time{% if opportunity %} for <strong>{{ opportunity }}"
                         "</strong>{% endif %}. We will get back to you within {{ response_time or 'a week' }}."),
     "text_body": HI + "\n\nThank you for offering your time{% if opportunity %} for {{ opportunity }}{% endif %}."
     " We will get back to you within {{ response_time or 'a week' }}.\n",
     "variables": [_var("opportunity", "What they applied for", "Spring fair helpers"),
                   _var("response_time", "When they will hear back", "a week")]},
    {"key": "volunteer.approved", "name": "Volunteer approved", "category": "volunteering",
     "description": "A moderator approved a volunteer application.",
     "subject": "Welcome aboard{% if opportunity %}: {{ opportunity }}{% endif %}",
     "html_body": _p(HI, "Good news: your volunteer application{% if opportunity %} for <strong>{{ opportunity }}"
                         "</strong>{% endif %} is approved.", "{{ reason or '' }}")
     + "{% if next_steps_url %}\n" + _button("next_steps_url", "See the next steps") + "{% endif %}",
     "text_body": HI + "\n\nYour volunteer application{% if opportunity %} for {{ opportunity }}{% endif %} is "
     "approved.\n{{ reason or '' }}\n{% if next_steps_url %}Next steps: {{ next_steps_url }}{% endif %}\n",
     "variables": [_var("opportunity", "What they applied for", "Spring fair helpers"),
                   _var("reason", "A note from the moderator", "We loved your experience with kids."),
                   _var("next_steps_url", "Link to the next steps", "https://example.org/volunteer/next")]},
    {"key": "volunteer.declined", "name": "Volunteer declined", "category": "volunteering",
     "description": "A moderator declined a volunteer application.",
     "subject": "About your volunteer application",
     "html_body": _p(HI, "Thank you for applying{% if opportunity %} for <strong>{{ opportunity }}</strong>"
                         "{% endif %}. This time we could not accept your application.",
                     "{% if reason %}The reason: {{ reason }}{% endif %}",
                     "We hope to see you at another opportunity."),
     "text_body": HI + "\n\nThank you for applying{% if opportunity %} for {{ opportunity }}{% endif %}. This "
     "time we could not accept your application.\n{% if reason %}The reason: {{ reason }}\n{% endif %}",
     "variables": [_var("opportunity", "What they applied for", "Spring fair helpers"),
                   _var("reason", "Why, in the moderator's words", "All places are taken.")]},
    {"key": "donation.receipt", "name": "Donation receipt", "category": "donations",
     "description": "A receipt for a donation (keep it for tax purposes).",
     "subject": "Your receipt: {{ amount }} on {{ donated_on }}",
     "html_body": _p(HI, "Thank you for your donation of <strong>{{ amount }}</strong> on {{ donated_on }}.")
     + "\n<table role=\"presentation\" cellpadding=\"4\"><tr><td>Receipt number</td><td>{{ receipt_number }}</td>"
     "</tr><tr><td>Amount</td><td>{{ amount }}</td></tr><tr><td>Date</td><td>{{ donated_on }}</td></tr>"
     "{% if purpose %}<tr><td>For</td><td>{{ purpose }}</td></tr>{% endif %}</table>",
     "text_body": HI + "\n\nThank you for your donation.\nReceipt number: {{ receipt_number }}\nAmount: "
     "{{ amount }}\nDate: {{ donated_on }}\n{% if purpose %}For: {{ purpose }}\n{% endif %}",
     "variables": [_var("amount", "The amount with its currency", "€50.00", True),
                   _var("donated_on", "The date of the donation", "1 December 2026", True),
                   _var("receipt_number", "The receipt's number", "R-2026-00042", True),
                   _var("purpose", "What the donation supports", "The community garden")]},
    {"key": "submission.approved", "name": "Submission approved", "category": "submissions",
     "description": "A moderator approved something the member submitted.",
     "subject": "Approved: {{ title or 'your submission' }}",
     "html_body": _p(HI, "<strong>{{ title or 'Your submission' }}</strong> is approved and now visible to the "
                         "community.", "{{ reason or '' }}")
     + "{% if url %}\n" + _button("url", "See it live") + "{% endif %}",
     "text_body": HI + "\n\n{{ title or 'Your submission' }} is approved.\n{{ reason or '' }}\n"
     "{% if url %}{{ url }}{% endif %}\n",
     "variables": [_var("title", "The submission's title", "Photos from the spring fair"),
                   _var("reason", "A note from the moderator", "Lovely pictures!"),
                   _var("url", "Where it can be seen", "https://example.org/p/42")]},
    {"key": "submission.rejected", "name": "Submission rejected", "category": "submissions",
     "description": "A moderator rejected something the member submitted.",
     "subject": "Not published: {{ title or 'your submission' }}",
     "html_body": _p(HI, "We could not publish <strong>{{ title or 'your submission' }}</strong>.",
                     "{% if reason %}The reason: {{ reason }}{% endif %}",
                     "You are welcome to edit it and submit it again."),
     "text_body": HI + "\n\nWe could not publish {{ title or 'your submission' }}.\n"
     "{% if reason %}The reason: {{ reason }}\n{% endif %}You are welcome to edit it and submit it again.\n",
     "variables": [_var("title", "The submission's title", "Photos from the spring fair"),
                   _var("reason", "Why, in the moderator's words", "It shows people who did not agree.")]},
    {"key": "security.notice", "name": "Security notice", "category": "security",
     "description": "A sign-in from a new device, a changed password or email. Members cannot turn these off.",
     "subject": "{{ what or 'New sign-in to your account' }}",
     "html_body": _p(HI, "{{ what or 'Your account was signed in' }}{% if device %} from <strong>{{ device }}"
                         "</strong>{% endif %}{% if location %} near {{ location }}{% endif %} at {{ time }}.")
     + "\n" + _p("Not you? Secure your account now:") + "\n" + _button("reset_url", "Reset your password"),
     "text_body": HI + "\n\n{{ what or 'Your account was signed in' }}{% if device %} from {{ device }}{% endif %}"
     "{% if location %} near {{ location }}{% endif %} at {{ time }}.\nNot you? Reset your password: "
     "{{ reset_url }}\n",
     "variables": [_var("what", "What happened", "New sign-in to your account"),
                   _var("device", "Browser and system", "Firefox on Linux"),
                   _var("location", "Approximate place", "Lisbon"),
                   _var("time", "When, with the time zone", "09:12 UTC", True),
                   _var("reset_url", "Link to reset the password", "https://example.org/reset", True)]},
    {"key": "engagement.we_miss_you", "name": "We miss you (re-engagement)", "category": "marketing",
     "description": "For members who went quiet.",
     "subject": "{{ first_name or 'Hey' }}, we miss you",
     "html_body": _p(HI, "It has been a while{% if days_inactive %} ({{ days_inactive }} days){% endif %} since "
                         "your last visit. A lot happened meanwhile.")
     + "{% if comeback_url %}\n" + _button("comeback_url", "See what's new") + "{% endif %}",
     "text_body": HI + "\n\nIt has been a while{% if days_inactive %} ({{ days_inactive }} days){% endif %} since"
     " your last visit.\n{% if comeback_url %}See what's new: {{ comeback_url }}\n{% endif %}",
     # nothing required: campaigns send it to a segment without per-member data
     "variables": [_var("days_inactive", "Days since the member was last seen", 42),
                   _var("comeback_url", "Where to send them", "https://example.org/welcome-back")]},
    {"key": "digest.weekly", "name": "Weekly digest", "category": "digest",
     "description": "The week's most-read posts.",
     "subject": "This week: {{ posts|length }} posts you might like",
     "html_body": _p(HI + " here is what happened this week:")
     + "\n{% for post in posts %}<p><a href=\"{{ post.url }}\">{{ post.title }}</a><br>"
     "<span style=\"color:#6b7280\">{{ post.comments or 0 }} comments</span></p>\n{% endfor %}",
     "text_body": HI + " here is what happened this week:\n\n{% for post in posts %}- {{ post.title }}: "
     "{{ post.url }}\n{% endfor %}",
     "variables": [_var("posts", "Posts: a list of {title, url, comments}", [
         {"title": "How we built the new garden", "url": "https://example.org/p/1", "comments": 12},
         {"title": "Volunteers wanted for June", "url": "https://example.org/p/2", "comments": 5}], True)]},
]
for _spec in BUILTINS:
    _spec.setdefault("revision", 1)

LAYOUT = {
    "revision": 1,
    "html": """<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{{ subject }}</title>
</head>
<body style="margin:0;padding:0;background:#f4f5f9;font-family:Helvetica,Arial,sans-serif;color:#1f2937;">
<table role="presentation" width="100%" cellpadding="0" cellspacing="0" style="background:#f4f5f9;padding:24px 0;">
<tr><td align="center">
<table role="presentation" width="600" cellpadding="0" cellspacing="0" style="max-width:600px;width:100%;\
background:#ffffff;border-radius:10px;overflow:hidden;border:1px solid #e5e7eb;">
<tr><td style="background:#4f46e5;color:#ffffff;padding:18px 28px;font-size:18px;font-weight:bold;">\
&#9670; {{ brand }}</td></tr>
<tr><td style="padding:28px;font-size:15px;line-height:1.6;">
{{ content }}
</td></tr>
<tr><td style="padding:18px 28px;border-top:1px solid #e5e7eb;font-size:12px;line-height:1.5;color:#6b7280;">
You receive this email as a member of the {{ brand }} community\
{% if category %} ({{ category }} messages){% endif %}.<br>
<a href="{{ preferences_url }}" style="color:#4f46e5;">Email preferences</a> &middot;
<a href="{{ unsubscribe_url }}" style="color:#4f46e5;">Unsubscribe</a> from these emails.
</td></tr>
</table>
</td></tr>
</table>
{% if pixel_url %}<img src="{{ pixel_url }}" width="1" height="1" alt="" \
style="display:block;border:0;width:1px;height:1px;">{% endif %}
</body>
</html>
""",
    "text": """{{ text }}

--
You receive this email as a member of the {{ brand }} community{% if category %} ({{ category }} messages){% endif %}.
Email preferences: {{ preferences_url }}
Unsubscribe: {{ unsubscribe_url }}
""",
}


def spec(key: str) -> dict | None:
    return next((s for s in BUILTINS if s["key"] == key), None)


def content(builtin: dict) -> dict:
    """A catalog entry as template fields (what create/update/reset store)."""
    return {"name": builtin["name"], "subject": builtin["subject"], "html_body": builtin["html_body"],
            "text_body": builtin["text_body"], "category": builtin["category"],
            "description": builtin["description"],
            "sample_data": {v["name"]: v["sample"] for v in builtin["variables"]},
            "declared": [{k: v[k] for k in ("name", "description", "required")} for v in builtin["variables"]]}


def _template_doc(builtin: dict, now, name: str | None = None) -> dict:
    from console.blueprints.communication.render import check_sources

    fields = content(builtin)
    if name:
        fields["name"] = name
    return {**fields, "key": builtin["key"], "builtin": True, "builtin_revision": builtin["revision"],
            "enabled": True, "variables": check_sources(fields), "version": 1, "created_at": now,
            "updated_at": now, "created_by": ACTOR, "updated_by": ACTOR}


def _install_templates(now) -> int:
    """Insert missing built-ins and refresh untouched, outdated ones; one round trip when all are there."""
    coll = EmailTemplate._get_collection()
    ops = [UpdateOne({"key": b["key"]}, {"$setOnInsert": _template_doc(b, now)}, upsert=True) for b in BUILTINS]
    ops += [UpdateOne({"key": b["key"], "updated_by": ACTOR, "builtin_revision": {"$lt": b["revision"]}},
                      {"$set": {k: v for k, v in _template_doc(b, now).items() if k not in ("created_at", "version",
                                                                                         "created_by", "enabled")}})
            for b in BUILTINS]
    try:
        return coll.bulk_write(ops, ordered=False).upserted_count
    except BulkWriteError as error:
        # An admin's template already has a built-in's name: the built-in comes in beside it, marked as such.
        taken = {ops[e["index"]]._filter["key"] for e in error.details["writeErrors"] if e.get("code") == 11000}
        added = error.details.get("nUpserted", 0)
        for builtin in BUILTINS:
            if builtin["key"] in taken and not coll.count_documents({"key": builtin["key"]}, limit=1):
                coll.insert_one(_template_doc(builtin, now, name=f"{builtin['name']} (built-in)"))
                added += 1
        return added


def _install_layout(now) -> bool:
    coll = EmailLayout._get_collection()
    result = coll.update_one({"key": "default"},
                             {"$setOnInsert": {"key": "default", "html": LAYOUT["html"], "text": LAYOUT["text"],
                                               "version": 1, "builtin_revision": LAYOUT["revision"],
                                               "updated_at": now, "updated_by": ACTOR}}, upsert=True)
    return bool(result.upserted_id)


def _install_bindings(now) -> int:
    ops = [UpdateOne({"event": b["key"]},
                     {"$setOnInsert": {"event": b["key"], "template_key": b["key"], "category": None,
                                       "priority": "high" if b["category"] == "security" else "normal",
                                       "enabled": True, "description": b["description"], "builtin": True,
                                       "version": 1, "updated_at": now, "updated_by": ACTOR}}, upsert=True)
           for b in BUILTINS]
    return NotificationBinding._get_collection().bulk_write(ops, ordered=False).upserted_count


def install() -> str | None:
    """The migration: add the built-in templates, the layout and the bindings that are missing."""
    now = utcnow()
    templates, layout, bindings = _install_templates(now), _install_layout(now), _install_bindings(now)
    if templates or layout or bindings:
        return f"catalog: {templates} template(s), {int(layout)} layout, {bindings} binding(s) added"
    return None

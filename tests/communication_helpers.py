"""Helpers for the communication tests: templates, members and reading what the SMTP sink caught."""

from __future__ import annotations

API = "/api/phase14/communication"

WELCOME = {
    "name": "Welcome",
    "subject": "Welcome {{ first_name }}!",
    "html_body": "<h1>Hello {{ first_name }}</h1>\n<p>Visit <a href=\"https://example.org/start?a=1&amp;b=2\">"
                 "the start page</a> and <a href='https://example.org/faq'>the FAQ</a>.</p>",
    "category": "product",
    "description": "For new members",
    "sample_data": {"first_name": "Ava"},
}


def add_members(count: int = 3, prefix: str = "u", **fields) -> list[dict]:
    from console.members import Member

    docs = [{"user_id": f"{prefix}{i}", "email": f"{prefix}{i}@members.example.com", "name": f"Member {i}", **fields}
            for i in range(count)]
    Member._get_collection().insert_many([dict(d) for d in docs])
    return docs


def make_template(**overrides):
    from console.blueprints.communication.email_templates import create_template

    return create_template({**WELCOME, **overrides}, "tests")


def sink_ids(servers) -> list[str]:
    return [m["Message-ID"] for m in servers.messages()]


def bodies(message) -> tuple[str, str]:
    """The decoded text and HTML parts of a message the sink caught."""
    parts = {part.get_content_type(): part.get_payload(decode=True).decode() for part in message.walk()
             if not part.is_multipart()}
    return parts.get("text/plain", ""), parts.get("text/html", "")

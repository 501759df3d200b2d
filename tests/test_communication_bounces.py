"""Bounces without a provider: the VERP return path of each email, RFC 3464 reports in Gmail, Outlook and
Postfix formats, and the scheduled job reading them from a bounce mailbox over IMAP (a local server)."""

from __future__ import annotations

import imaplib
from pathlib import Path

import pytest

from console.blueprints.communication.models import EmailQueue, Suppression
from tests.communication_helpers import API, add_members, make_template
from tests.imap_server import ImapServer

pytestmark = pytest.mark.usefixtures("app")
FIXTURES = Path(__file__).parent / "fixtures" / "dsn"
BOUNCE_ADDRESS = "bounces@example.org"


@pytest.fixture
def sent(app, api, run_jobs, servers):
    """Three emails sent with a VERP return path each; their queue documents, by recipient."""
    app.config["MAIL_BOUNCE_ADDRESS"] = BOUNCE_ADDRESS
    template = make_template()
    add_members(3)
    admin = api("admin")
    for i in range(3):
        admin.post(f"{API}/send-email", json={"template_id": str(template.id), "to": {"user_id": f"u{i}"}})
    run_jobs()
    return admin, [EmailQueue._get_collection().find_one({"to_email": f"u{i}@members.example.com"})
                   for i in range(3)]


def _report(name: str, doc: dict, verp: bool = True) -> bytes:
    from console.blueprints.communication.bounces import return_path

    text = (FIXTURES / name).read_text()
    return (text.replace("{{VERP}}", return_path(doc["_id"]) if verp else BOUNCE_ADDRESS)
            .replace("{{MESSAGE_ID}}", doc["message_id"]).replace("{{RECIPIENT}}", doc["to_email"]).encode())


def test_each_email_leaves_with_its_own_signed_return_path(sent, servers):
    from console.blueprints.communication.bounces import email_id_from_address

    _admin, docs = sent
    envelope = {m["X-RcptTo"]: m["X-MailFrom"] for m in servers.messages()}
    for doc in docs:
        sender = envelope[doc["to_email"]]
        assert sender.startswith("bounces+") and sender.endswith("@example.org") and str(doc["_id"]) in sender
        assert email_id_from_address(sender) == doc["_id"]
    forged = envelope[docs[0]["to_email"]].replace(str(docs[0]["_id"]), str(docs[1]["_id"]))
    assert email_id_from_address(forged) is None  # another email's id under this signature


@pytest.mark.parametrize(("name", "verp", "status", "reason"), [
    ("gmail.eml", True, "5.1.1", "The email account that you tried to reach does not exist"),
    ("outlook.eml", False, "5.1.10", "RESOLVER.ADR.RecipientNotFound"),  # matched by the quoted Message-ID
    ("postfix.eml", True, "5.1.1", "User unknown in virtual mailbox table"),
])
def test_real_world_reports_parse_to_hard_bounces(sent, name, verp, status, reason):
    from console.blueprints.communication.bounces import parse_report

    _admin, docs = sent
    [event] = parse_report(_report(name, docs[0], verp=verp))
    assert (event.type, event.bounce_type) == ("bounced", "hard")
    assert event.reason.startswith(status) and reason in event.reason
    assert (event.email_id or event.message_id) in (docs[0]["_id"], docs[0]["message_id"])


def test_a_delay_warning_and_reports_about_others_are_no_events(sent):
    from console.blueprints.communication.bounces import parse_report

    _admin, docs = sent
    assert parse_report(_report("postfix_delayed.eml", docs[0])) == []
    stranger = {**docs[0], "message_id": "<someone-else@elsewhere.example>"}
    assert parse_report(_report("outlook.eml", stranger, verp=False)) == []
    assert parse_report(b"From: friend@example.net\r\nSubject: hello\r\n\r\nJust saying hi.\r\n") == []


def test_the_scheduled_job_reads_the_bounce_mailbox_over_imap(app, sent, run_jobs):
    from console.blueprints.communication.jobs import enqueue_bounce_check

    admin, docs = sent
    with ImapServer() as imap:
        app.config.update(imap.config())
        imap.box.add(_report("gmail.eml", docs[0]))
        imap.box.add(_report("outlook.eml", docs[1], verp=False))
        imap.box.add(_report("postfix.eml", docs[2]))
        imap.box.add(_report("postfix_delayed.eml", docs[2]))
        imap.box.add(b"From: friend@example.net\r\nSubject: hello\r\n\r\nJust saying hi.\r\n")
        enqueue_bounce_check(app)
        enqueue_bounce_check(app)  # once per interval, however often the tick comes
        assert app.extensions["queues"]["default"].count == 1
        run_jobs()
        assert imap.box.logins == 1
        statuses = {d["to_email"]: (d["status"], d["bounce_type"]) for d in EmailQueue._get_collection().find()}
        assert set(statuses.values()) == {("bounced", "hard")}
        assert {s.email: s.reason for s in Suppression.objects} == {d["to_email"]: "hard_bounce" for d in docs}
        timeline = admin.get(f"{API}/tracking/{docs[1]['_id']}").json["events"]
        assert "RecipientNotFound" in next(e for e in timeline if e["type"] == "bounced")["detail"]
        # the reports are gone; the delay warning and the stray message stay, read
        assert [(m["data"].split(b"Subject: ")[1].split(b"\r\n")[0], "\\Seen" in m["flags"])
                for m in imap.box.messages] == [(b"Delayed Mail (still being retried)", True), (b"hello", True)]

        from console.blueprints.communication.bounces import read_bounce_mailbox

        imap.box.add(_report("gmail.eml", docs[0]))  # the same report again: changes nothing
        result = read_bounce_mailbox()
        assert result["messages"] == 1 and result["processed"] == 0 and result["duplicates"] == 1
        app.config["BOUNCE_IMAP_PASSWORD"] = "wrong"
        with pytest.raises(imaplib.IMAP4.error):
            read_bounce_mailbox()


def test_without_a_bounce_mailbox_nothing_is_scheduled(app):
    from console.blueprints.communication.bounces import read_bounce_mailbox
    from console.blueprints.communication.jobs import enqueue_bounce_check

    enqueue_bounce_check(app)
    assert app.extensions["queues"]["default"].count == 0
    assert "skipped" in read_bounce_mailbox()

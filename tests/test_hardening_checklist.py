"""The production checklist's operations items, each verified live: demo content, super admins, the public URL,
the sender domain's SPF/DKIM/DMARC (a local DNS server), and the last recorded backup (the CLI command)."""

from __future__ import annotations

from datetime import timedelta

from console.timeutil import utcnow
from tests.conftest import INGEST_KEY
from tests.hardening_helpers import API, dns_server

PRODUCTION = {"CONSOLE_ENV": "production", "SECRET_KEY": "x" * 64, "INGEST_KEYS": "prod-ingest-key-0123456789"}


def _items(client) -> dict:
    return {entry["id"]: entry for entry in client.get(f"{API}/production-checklist").json["items"]}


def _checklist(app) -> dict:
    from console.blueprints.hardening.checklist import production_checklist

    with app.test_request_context():
        return {entry["id"]: entry for entry in production_checklist()["items"]}


def test_demo_admins_and_demo_data_fail_in_production_only(make_app, app, create_admin):
    from console.blueprints.hardening import mail_dns

    mail_dns.clear_cache()
    assert _checklist(app)["demo.absent"]["status"] == "pass"
    create_admin("analyst", email="analyst@example.com")  # what seed-demo creates
    app.test_client().post("/api/phase14/engagement/track-activity", headers={"X-Ingest-Key": INGEST_KEY},
                           json={"user_id": "u1", "event": "login", "event_id": "demo-u1-0-0-0"})
    item = _checklist(app)["demo.absent"]
    assert item["status"] == "warn" and "analyst@example.com" in item["detail"] and "demo activity" in item["detail"]
    production = make_app(**PRODUCTION)
    with production.app_context():
        item = _checklist(production)["demo.absent"]
    assert item["status"] == "fail"
    create_admin("analyst", email="analyst@example.com", active=False)
    from console.db import get_db

    get_db()["user_activities"].delete_many({})
    with production.app_context():
        assert _checklist(production)["demo.absent"]["status"] == "pass"


def test_fewer_than_two_active_super_admins_is_flagged(app, api, create_admin):
    client = api("admin")
    assert _items(client)["admins.super_admins"]["status"] == "fail"  # none
    create_admin("super_admin", email="one@test.example.com")
    create_admin("super_admin", email="off@test.example.com", active=False)
    item = _items(client)["admins.super_admins"]
    assert item["status"] == "warn" and item["detail"].startswith("1 active")
    create_admin("super_admin", email="two@test.example.com")
    assert _items(client)["admins.super_admins"]["status"] == "pass"


def test_public_base_url_must_be_https(make_app, app):
    assert _checklist(app)["config.public_base_url"]["status"] == "warn"  # http://localhost in development
    production = make_app(**PRODUCTION, PUBLIC_BASE_URL="http://console.example.org")
    with production.app_context():
        assert _checklist(production)["config.public_base_url"]["status"] == "fail"
    secure = make_app(**PRODUCTION, PUBLIC_BASE_URL="https://console.example.org")
    with secure.app_context():
        assert _checklist(secure)["config.public_base_url"]["status"] == "pass"


def test_sender_domain_records_are_looked_up_live(make_app, app):
    from console.blueprints.hardening import mail_dns

    records = {"mail.example.org": ["google-site-verification=abc", "v=spf1 include:_spf.example.net -all"],
               "_dmarc.mail.example.org": ["v=DMARC1; p=reject; rua=mailto:dmarc@example.org"],
               "s1._domainkey.mail.example.org": ["k=rsa; p=MIGfMA0GCSqGSIb3DQEBAQUAA4GNADCBiQKBgQC"]}
    with dns_server(records) as resolver:
        mail_dns.clear_cache()
        good = make_app(DNS_RESOLVER=resolver, MAIL_DEFAULT_SENDER="Ops <no-reply@mail.example.org>",
                        MAIL_DKIM_SELECTOR="s1")
        with good.app_context():
            item = _checklist(good)["mail.dns"]
        assert item["status"] == "pass", item
        assert item["detail"] == "mail.example.org: SPF present, DMARC present, DKIM present."

        records.pop("_dmarc.mail.example.org")
        mail_dns.clear_cache()
        with good.app_context():
            item = _checklist(good)["mail.dns"]
        assert item["status"] == "warn" and "DMARC missing" in item["detail"]
        production = make_app(**PRODUCTION, DNS_RESOLVER=resolver, MAIL_DEFAULT_SENDER="no-reply@mail.example.org")
        mail_dns.clear_cache()
        with production.app_context():
            item = _checklist(production)["mail.dns"]
        assert item["status"] == "fail" and "DKIM unknown" in item["detail"] and "MAIL_DKIM_SELECTOR" in item["detail"]

    # offline: nothing answers, so every record is unknown (a warning, never an error)
    mail_dns.clear_cache()
    offline = make_app(DNS_RESOLVER="127.0.0.1:9", DNS_TIMEOUT=0.3, MAIL_DEFAULT_SENDER="no-reply@mail.example.org",
                       MAIL_DKIM_SELECTOR="s1")
    with offline.app_context():
        item = _checklist(offline)["mail.dns"]
    assert item["status"] == "warn" and "SPF unknown" in item["detail"] and "offline" in item["detail"]


def test_backups_are_recorded_with_the_cli_and_warned_when_old(app, api):
    from console.audit import AuditLog

    client = api("admin")
    assert _items(client)["backups.recent"]["status"] == "warn"
    runner = app.test_cli_runner()
    result = runner.invoke(args=["record-backup", "--at", (utcnow() - timedelta(hours=30)).isoformat(),
                                 "--note", "nightly-2026-11-30.archive"])
    assert result.exit_code == 0, result.output
    item = _items(client)["backups.recent"]
    assert item["status"] == "warn" and "30." in item["detail"]
    result = runner.invoke(args=["record-backup", "--note", "nightly.archive"])
    assert result.exit_code == 0 and "Recorded a backup" in result.output
    item = _items(client)["backups.recent"]
    assert item["status"] == "pass" and "nightly.archive" in item["detail"]
    assert runner.invoke(args=["record-backup", "--at", "yesterday"]).exit_code != 0
    future = (utcnow() + timedelta(days=1)).isoformat()
    assert runner.invoke(args=["record-backup", "--at", future]).exit_code != 0
    assert AuditLog.objects(action="hardening.backup.recorded").count() == 2

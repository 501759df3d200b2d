"""Fixtures: real servers (SecantusDB, Redis, an SMTP sink) started once per session, a clean database
per test, an app and clients signed in as any role, an in-process RQ worker and the sink's mailbox."""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from dataclasses import dataclass, field
from email import message_from_bytes
from pathlib import Path

import pytest

from devtools import services as embedded
from devtools.smtp_sink import ensure_maildir

TEST_PASSWORD = "correct-horse-battery-staple"
INGEST_KEY = "test-ingest-key"


@dataclass
class Servers:
    mongo_uri: str
    redis_url: str
    smtp_port: int
    maildir: Path
    handles: dict = field(default_factory=dict)  # name → devtools.services.Service, for fault tests

    def messages(self) -> list:
        """Every email the sink accepted, parsed, in the order it arrived (a Maildir lists them in no order)."""
        box = ensure_maildir(self.maildir)
        return [message_from_bytes(box.get_bytes(key)) for key in sorted(box.keys(), key=_arrival)]

    def clear_mailbox(self) -> None:
        ensure_maildir(self.maildir).clear()
        (self.maildir / "REFUSE").unlink(missing_ok=True)

    def refuse_mail(self, refuse: bool = True) -> None:
        """Make the sink answer 421 (transient failure) until called with False."""
        flag = self.maildir / "REFUSE"
        if refuse:
            flag.touch()
        else:
            flag.unlink(missing_ok=True)


def _arrival(key: str) -> tuple[int, int, str]:
    """A Maildir key is "<seconds>.M<microseconds>P<pid>Q<n>.<host>" (mailbox.Maildir._create_tmp)."""
    found = re.match(r"(\d+)\.M(\d+)P", key)
    return (int(found[1]), int(found[2]), key) if found else (0, 0, key)


class UnsafeTestTarget(RuntimeError):
    """The environment names servers the suite must not wipe."""


def named_test_servers(environ) -> tuple[str | None, str | None]:
    """The MongoDB and Redis the suite may wipe besides those it starts: only TEST_MONGODB_URI / TEST_REDIS_URL,
    never MONGODB_URI / REDIS_URL (which name the console's real data), and never the same servers as those."""
    mongo, redis_url = environ.get("TEST_MONGODB_URI") or None, environ.get("TEST_REDIS_URL") or None
    if mongo and mongo == environ.get("MONGODB_URI"):
        raise UnsafeTestTarget("TEST_MONGODB_URI is the same as MONGODB_URI; the tests empty every collection")
    if mongo:
        from pymongo.uri_parser import parse_uri

        name = parse_uri(mongo).get("database") or ""
        if "test" not in name.lower():
            raise UnsafeTestTarget(f"TEST_MONGODB_URI must name a database with 'test' in its name, not {name!r}")
    if redis_url and redis_url == environ.get("REDIS_URL"):
        raise UnsafeTestTarget("TEST_REDIS_URL is the same as REDIS_URL; the tests flush the database")
    return mongo, redis_url


@pytest.fixture(scope="session")
def servers(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("servers")
    handles = {}
    try:
        mongo_uri, redis_url = named_test_servers(os.environ)
    except UnsafeTestTarget as error:
        pytest.exit(f"refusing to run the tests: {error}", returncode=4)
    if not mongo_uri:
        port = embedded.free_port()
        handles["mongodb"] = embedded.mongo(port, ":memory:", tmp / "mongo.log", test_commands=True).start(timeout=120)
        mongo_uri = f"mongodb://127.0.0.1:{port}/console_test"
    if not redis_url:
        port = embedded.free_port()
        handles["redis"] = embedded.redis(port, log_path=tmp / "redis.log").start()
        redis_url = f"redis://127.0.0.1:{port}/0"
    smtp_port = embedded.free_port()
    maildir = tmp / "mailbox"
    handles["smtp"] = embedded.smtp(smtp_port, maildir, tmp / "smtp.log").start()
    found = Servers(mongo_uri, redis_url, smtp_port, maildir, handles)
    yield found
    for service in reversed(list(handles.values())):
        service.stop()


def base_config(servers: Servers, **overrides) -> dict:
    config = {
        "TESTING": True,
        "SECRET_KEY": "test-secret-key-that-is-long-enough-0123456789",
        "MONGODB_URI": servers.mongo_uri,
        "REDIS_URL": servers.redis_url,
        "MAIL_SERVER": "127.0.0.1",
        "MAIL_PORT": servers.smtp_port,
        "MAILBOX_DIR": str(servers.maildir),
        "INGEST_KEYS": INGEST_KEY,
        "PUBLIC_BASE_URL": "http://localhost",
        "MAIL_RETRY_INTERVALS": "1,1,1,1",
        "SERVER_NAME": None,
        "ENGAGEMENT_FOLD": "request",  # tests read what they posted at once; tests of the worker's fold say "worker"
    }
    config.update(overrides)
    return config


@pytest.fixture(autouse=True)
def _no_telemetry_from_earlier_tests():
    """Tests build app after app on one database, emptied per test: an earlier app's buffered telemetry must
    not be flushed into this test's clean database."""
    from console import telemetry

    telemetry._flusher.instances.clear()


@pytest.fixture
def make_app(servers):
    """Build an app with extra config; the database is already clean."""
    from console import create_app

    def factory(**overrides):
        return create_app(base_config(servers, **overrides))

    return factory


def clean_state(servers: Servers) -> None:
    """Empty every collection (indexes kept), Redis and the mailbox."""
    import pymongo
    import redis

    client = pymongo.MongoClient(servers.mongo_uri, serverSelectionTimeoutMS=5000)
    database = client.get_default_database()
    for name in database.list_collection_names():
        if not name.startswith("system."):
            database[name].delete_many({})
    client.close()
    conn = redis.Redis.from_url(servers.redis_url)
    conn.flushdb()
    conn.close()
    servers.clear_mailbox()


@pytest.fixture
def app(make_app, servers):
    """A fresh app on a clean database with indexes and the built-in roles, inside its app context."""
    from console.cli import prepare_database

    clean_state(servers)
    application = make_app()
    with application.app_context():
        prepare_database()
        yield application


@pytest.fixture
def client(app):
    return app.test_client()


def csrf_token_from(html: bytes) -> str:
    match = re.search(rb'name="csrf_token"[^>]*value="([^"]+)"', html) or re.search(
        rb'"X-CSRFToken": "([^"]+)"', html)
    assert match, "no CSRF token on the page"
    return match.group(1).decode()


@pytest.fixture
def create_admin(app):
    """Create an admin with the given roles (password TEST_PASSWORD)."""
    from console.accounts import Admin
    from console.authz import bump_authz_version
    from console.security import hash_password

    hashed = hash_password(TEST_PASSWORD)

    def factory(*roles: str, email: str | None = None, name: str | None = None, active: bool = True):
        address = email or f"{'-'.join(roles) or 'nobody'}@test.example.com"
        admin = Admin.objects(email=address).first() or Admin(email=address)
        admin.name = name or address.split("@")[0]
        admin.roles = list(roles)
        admin.password_hash = hashed
        admin.active = active
        admin.save()
        bump_authz_version()
        return admin

    return factory


@pytest.fixture
def login(app, create_admin):
    """A test client signed in through the login form, sending the CSRF header like htmx does."""

    def sign_in(*roles: str, email: str | None = None):
        return signed_in_client(app, create_admin(*roles, email=email))

    return sign_in


def signed_in_client(application, admin):
    """A test client of `application` signed in as `admin` through the login form, with the CSRF header htmx
    sends; `.admin` is the account."""
    browser = application.test_client()
    token = csrf_token_from(browser.get("/login").data)
    response = browser.post("/login", data={"email": admin.email, "password": TEST_PASSWORD, "csrf_token": token})
    assert response.status_code == 302, response.data[-400:]
    browser.environ_base["HTTP_X_CSRFTOKEN"] = csrf_token_from(browser.get("/").data)
    browser.admin = admin
    return browser


@pytest.fixture
def api(app, create_admin):
    """A test client that authenticates with a bearer token for an admin with the given roles."""
    from console.security import issue_token

    def client_for(*roles: str, email: str | None = None):
        admin = create_admin(*roles, email=email)
        token, _ = issue_token(admin)
        api_client = app.test_client()
        api_client.environ_base["HTTP_AUTHORIZATION"] = f"Bearer {token}"
        api_client.admin = admin
        api_client.token = token
        return api_client

    return client_for


def work_queued_jobs(app, with_scheduler: bool = False) -> None:
    """Work every queued RQ job in this process, like `python worker.py --burst`."""
    from console.queues import make_worker

    with app.app_context():
        make_worker(app).work(burst=True, with_scheduler=with_scheduler, logging_level="WARNING")


@pytest.fixture
def run_jobs(app):
    """`run_jobs()` works every queued job of the test's app."""
    return lambda with_scheduler=False: work_queued_jobs(app, with_scheduler)


@pytest.fixture(scope="session")
def output_dir():
    path = Path(os.environ.get("TEST_OUTPUT", "test-output"))
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def scratch_dir():
    path = Path(tempfile.mkdtemp(prefix="console-test-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def pytest_terminal_summary(terminalreporter):
    """After a run that fuzzed the API: how many operations, cases and linked calls (tests/fuzz_helpers.py)."""
    fuzz = sys.modules.get("tests.fuzz_helpers")
    for line in fuzz.summary_lines() if fuzz else []:
        terminalreporter.write_line(line)

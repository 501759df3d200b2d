"""Mail: a 2,000-email batch from the moment it is queued to the last SMTP acceptance, through one real RQ worker
(claim, preferences, journaled hand-over, outcome and history writes in SecantusDB), against a plain smtplib loop
sending the same 2,000 pre-rendered messages over one connection to the same aiosmtpd sink.

Creating the batch (validating addresses, rendering, signing links, inserting, enqueueing) is what the plain loop
does not do at all, so it is timed on its own row rather than hidden in either figure; a third row gives the whole
path, creation included. CPU seconds per email of every process involved (this one, SecantusDB, Redis, the sink)
are printed beside the figures: the machine is shared, and the pipeline's extra CPU is what contention slows.

Starts its own SecantusDB, Redis and SMTP sink. The anchor runs before and after each of ours, and each of
ours is compared with the mean of its two neighbours, so a machine that slows down during the run does not
favour either side; of several such rounds the median is reported (the machine is shared and noisy).
"""

from __future__ import annotations

import os
import smtplib
import time
from itertools import pairwise
from pathlib import Path

from bench import Row, embedded_servers
from devtools.smtp_sink import ensure_maildir

EMAILS = 2000
ROUNDS = 3


def _sink_count(maildir: Path) -> int:
    return sum(1 for _ in (maildir / "new").iterdir())


def _last_acceptance(maildir: Path) -> float:
    """When the sink stored the newest message (the worker's own teardown is not part of the figure)."""
    return max(path.stat().st_mtime for path in (maildir / "new").iterdir())


def _cpu_seconds() -> dict[str, float]:
    """User+system CPU seconds of this process and of each server it started, by name (Linux /proc)."""
    tick, me, out = os.sysconf("SC_CLK_TCK"), os.getpid(), {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            if entry.name != str(me) and int(fields[1]) != me:
                continue
            cmdline = (entry / "cmdline").read_bytes()
        except (OSError, IndexError, ValueError):
            continue
        name = ("worker" if entry.name == str(me) else "secantusdb" if b"secantus" in cmdline
                else "sink" if b"smtp_sink" in cmdline else "redis" if b"redis" in cmdline else "other")
        out[name] = out.get(name, 0.0) + (int(fields[11]) + int(fields[12])) / tick
    return out


def _cpu_ms_per_email(before: dict, after: dict) -> str:
    used = {name: (after[name] - before.get(name, 0.0)) * 1000 / EMAILS for name in after}
    parts = [f"{name} {ms:.2f}" for name, ms in sorted(used.items()) if ms >= 0.01]
    return f"{sum(used.values()):.2f} ({', '.join(parts)})"


def _plain_loop(port: int, messages: list[tuple[str, bytes]]) -> float:
    started = time.perf_counter()
    conn = smtplib.SMTP("127.0.0.1", port)
    for to, data in messages:
        conn.sendmail("no-reply@example.com", [to], data)
    conn.quit()
    return len(messages) / (time.perf_counter() - started)


def _reset(app, maildir: Path) -> None:
    """Empty the queue, history and Redis between rounds, so each round starts from the same state."""
    from console.blueprints.communication.models import EmailBatch, EmailQueue, NotificationHistory

    for model in (EmailQueue, EmailBatch, NotificationHistory):
        model._get_collection().delete_many({})
    app.extensions["redis"].flushdb()
    ensure_maildir(maildir).clear()


def main() -> list[Row]:
    from rq import SimpleWorker

    from console import create_app
    from console.blueprints.communication.catalog import content, spec
    from console.blueprints.communication.delivery import build_message
    from console.blueprints.communication.email_templates import create_template
    from console.blueprints.communication.models import EmailQueue
    from console.blueprints.communication.sending import create_batch
    from console.cli import prepare_database
    from console.members import Member
    from console.queues import QUEUE_NAMES

    with embedded_servers("mail", smtp=True) as env:
        maildir = env.maildir
        app = create_app({"TESTING": True, "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
                          "MONGODB_URI": env.mongo_uri,
                          "REDIS_URL": env.redis_url, "INGEST_KEYS": "bench",
                          "MAIL_SERVER": "127.0.0.1", "MAIL_PORT": env.smtp_port, "PUBLIC_BASE_URL": "http://bench"})
        with app.app_context():
            prepare_database()
            Member._get_collection().insert_many(
                [{"user_id": f"b{i}", "email": f"member{i}@bench.example.com", "name": f"Member {i}"}
                 for i in range(EMAILS)])
            digest = {**content(spec("digest.weekly")), "name": "Bench digest", "text_body": None}
            template = create_template(digest, "bench")  # the built-in weekly digest, HTML only
            shared = template.sample_data

            # The anchor's messages: exactly what our pipeline renders, serialised once up front.
            create_batch(str(template.id), [{"user_id": f"b{i}"} for i in range(EMAILS)], variables=shared)
            prerendered = [(doc["to_email"], build_message(doc).as_bytes())
                           for doc in EmailQueue._get_collection().find()]
            EmailQueue._get_collection().delete_many({})
            app.extensions["redis"].flushdb()

            queues = [app.extensions["queues"][name] for name in QUEUE_NAMES]
            cpu = _cpu_seconds()
            anchors = [_plain_loop(env.smtp_port, prerendered)]
            print(f"   plain loop CPU ms/email: {_cpu_ms_per_email(cpu, _cpu_seconds())}")
            ensure_maildir(maildir).clear()
            ours, creation, whole = [], [], []
            for _round in range(ROUNDS):
                started = time.time()
                create_batch(str(template.id), [{"user_id": f"b{i}"} for i in range(EMAILS)], variables=shared)
                queued, cpu = time.time(), _cpu_seconds()  # every chunk's job is on the queue now
                SimpleWorker(queues, connection=app.extensions["redis"]).work(burst=True, logging_level="WARNING")
                last = _last_acceptance(maildir)
                print(f"   delivery CPU ms/email: {_cpu_ms_per_email(cpu, _cpu_seconds())}")
                ours.append(EMAILS / (last - queued))
                creation.append(EMAILS / (queued - started))
                whole.append(EMAILS / (last - started))
                delivered = _sink_count(maildir)
                sent = EmailQueue.objects(status="sent").count()
                assert delivered == sent == EMAILS, (delivered, sent)
                _reset(app, maildir)
                anchors.append(_plain_loop(env.smtp_port, prerendered))
                ensure_maildir(maildir).clear()
        neighbours = [(before + after) / 2 for before, after in pairwise(anchors)]
        rounds = sorted(zip(ours, creation, whole, neighbours, strict=True), key=lambda r: r[0] / r[3])
        value, created, end_to_end, anchor = rounds[len(rounds) // 2]  # the median round, all its rows
        print(f"   delivery {' / '.join(f'{v:,.0f}' for v in ours)} emails/s; creation "
              f"{' / '.join(f'{c:,.0f}' for c in creation)} emails/s; plain smtplib "
              f"{' / '.join(f'{a:,.0f}' for a in anchors)} emails/s; delivery ratio per round "
              f"{', '.join(f'{v / a:.2f}' for v, a in zip(ours, neighbours, strict=True))}")
    plain = "plain smtplib loop, one connection, pre-rendered (emails/s)"
    return [Row(f"batch of {EMAILS:,}: queued → last SMTP acceptance, one worker (emails/s)", value, plain, anchor,
                ">= 0.85"),
            Row(f"batch of {EMAILS:,}: create_batch alone (validate, render, sign links, insert, enqueue) (emails/s)",
                created, plain, anchor, "info"),
            Row(f"batch of {EMAILS:,}: create_batch → last SMTP acceptance, one worker (emails/s)", end_to_end, plain,
                anchor, "info")]

"""Mail: a 2,000-email batch from enqueue to the last SMTP acceptance by one worker, against a plain smtplib
loop sending the same 2,000 pre-rendered messages over one connection to the same aiosmtpd sink.

Starts its own SecantusDB, Redis and SMTP sink. The anchor runs before and after each of ours, and each of
ours is compared with the mean of its two neighbours, so a machine that slows down during the run does not
favour either side; of several such rounds the median is reported (the machine is shared and noisy).
"""

from __future__ import annotations

import smtplib
import time
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
            anchors = [_plain_loop(env.smtp_port, prerendered)]
            ensure_maildir(maildir).clear()
            ours = []
            for _round in range(ROUNDS):
                started = time.time()
                create_batch(str(template.id), [{"user_id": f"b{i}"} for i in range(EMAILS)], variables=shared)
                SimpleWorker(queues, connection=app.extensions["redis"]).work(burst=True, logging_level="WARNING")
                ours.append(EMAILS / (_last_acceptance(maildir) - started))
                delivered = _sink_count(maildir)
                sent = EmailQueue.objects(status="sent").count()
                assert delivered == sent == EMAILS, (delivered, sent)
                _reset(app, maildir)
                anchors.append(_plain_loop(env.smtp_port, prerendered))
                ensure_maildir(maildir).clear()
        rounds = [(value / ((before + after) / 2), value, (before + after) / 2)
                  for value, before, after in zip(ours, anchors, anchors[1:], strict=False)]
        ratio, value, anchor = sorted(rounds)[len(rounds) // 2]
        print(f"   pipeline {' / '.join(f'{v:,.0f}' for v in ours)} emails/s; plain smtplib "
              f"{' / '.join(f'{a:,.0f}' for a in anchors)} emails/s; ratio per round "
              f"{', '.join(f'{r:.2f}' for r, *_ in rounds)}, median {ratio:.2f}")
    return [Row(f"batch of {EMAILS:,}: enqueue → last SMTP acceptance, one worker (emails/s)", value,
                "plain smtplib loop, one connection, pre-rendered (emails/s)", anchor, ">= 0.85")]

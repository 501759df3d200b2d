"""`make run`: the whole stack in the foreground, with demo data, until Ctrl-C.

Starts each embedded service whose URL is not set in the environment (SecantusDB, Redis, the SMTP
sink, data under var/), prepares the database, seeds demo data on first start, then runs the web
server and one RQ worker. Ctrl-C stops every process it started, web first, databases last.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from devtools import services

ROOT = Path(__file__).resolve().parent.parent
VAR = ROOT / "var"


def _env_file_values() -> dict:
    from dotenv import dotenv_values

    path = ROOT / ".env"
    return {k: v for k, v in dotenv_values(path).items() if v is not None} if path.exists() else {}


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def main() -> int:
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the stack as cleanly as Ctrl-C
    VAR.mkdir(exist_ok=True)
    (VAR / "log").mkdir(exist_ok=True)
    env = {**_env_file_values(), **os.environ}
    started: list = []
    children: list[subprocess.Popen] = []

    def say(message: str) -> None:
        print(f"\033[1m[make run]\033[0m {message}", flush=True)

    try:
        if "MONGODB_URI" not in env:
            say("starting SecantusDB (MongoDB wire protocol) on 127.0.0.1:27017, data in var/mongo")
            started.append(services.mongo(27017, VAR / "mongo", VAR / "log" / "mongo.log").start(timeout=120))
            env["MONGODB_URI"] = "mongodb://127.0.0.1:27017/console"
        if "REDIS_URL" not in env:
            say("starting Redis on 127.0.0.1:6379, data in var/redis")
            started.append(services.redis(6379, VAR / "redis", VAR / "log" / "redis.log").start())
            env["REDIS_URL"] = "redis://127.0.0.1:6379/0"
        if "MAIL_SERVER" not in env:
            say("starting the SMTP sink on 127.0.0.1:1025, mail in var/mailbox (see the Mailbox page)")
            started.append(services.smtp(1025, VAR / "mailbox", VAR / "log" / "smtp.log").start())
            env.update(MAIL_SERVER="127.0.0.1", MAIL_PORT="1025", MAILBOX_DIR=str(VAR / "mailbox"))

        flask = [sys.executable, "-m", "flask", "--app", "wsgi"]
        subprocess.run([*flask, "init-db"], env=env, cwd=ROOT, check=True)
        marker = VAR / "demo-seeded"
        if env.get("SEED_DEMO", "1") != "0" and not marker.exists():
            say("first start: seeding demo data (members, 90 days of activity, templates, admins)")
            subprocess.run([*flask, "seed-demo"], env=env, cwd=ROOT, check=True)
            marker.write_text(time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()))

        if "PROMETHEUS_MULTIPROC_DIR" not in env:  # /metrics merges the web's and the worker's counters
            metrics_dir = VAR / "metrics"
            shutil.rmtree(metrics_dir, ignore_errors=True)
            metrics_dir.mkdir(parents=True)
            env["PROMETHEUS_MULTIPROC_DIR"] = str(metrics_dir)
        port = env.get("PORT", "5000")
        children.append(subprocess.Popen([sys.executable, "worker.py"], env=env, cwd=ROOT))
        children.append(subprocess.Popen([sys.executable, "-m", "devtools.serve", "--host", "127.0.0.1",
                                          "--port", port], env=env, cwd=ROOT))  # `flask run` without the banner
        services.wait_for_port(int(port), timeout=60, proc=children[-1])
        password_file = VAR / "demo-password"
        login = (f"super.admin@example.com / {password_file.read_text().strip()}" if password_file.exists()
                 else "create one: flask --app wsgi create-admin EMAIL --role super_admin")
        say(f"ready: http://127.0.0.1:{port}   sign in as {login}")
        say("Ctrl-C stops everything")
        while all(child.poll() is None for child in children):
            time.sleep(0.5)
        say("a process exited; stopping the rest")
        return 1
    except KeyboardInterrupt:
        say("stopping")
        return 0
    finally:
        for child in reversed(children):
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(15)
            except subprocess.TimeoutExpired:
                child.kill()
        for service in reversed(started):
            service.stop(timeout=30)


if __name__ == "__main__":
    sys.exit(main())

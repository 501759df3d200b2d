"""The console under 20 concurrent clients: the engagement overview page against `/healthz`.

Starts its own SecantusDB and Redis, seeds the demo data (500 members, 90 days of activity), and serves the
app with werkzeug's threaded server on loopback. Each of 20 clients signs in once and then loads a page
repeatedly; the overview (analytics over rollups, cached) is compared with `/healthz` (no I/O) measured the
same way in the same run.
"""

from __future__ import annotations

import http.client
import logging
import re
import statistics
import threading
import time

from bench import Row, embedded_servers

CLIENTS = 20
REQUESTS_PER_CLIENT = 15
PASSWORD = "bench-console-pass-1"


def _sign_in(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    conn.request("GET", "/login")
    response = conn.getresponse()
    html = response.read().decode()
    cookie = response.getheader("Set-Cookie").split(";")[0]
    token = re.search(r'name="csrf_token"[^>]*value="([^"]+)"', html).group(1)
    body = f"email=analyst%40bench.example.com&password={PASSWORD}&csrf_token={token}"
    conn.request("POST", "/login", body=body, headers={"Cookie": cookie,
                                                      "Content-Type": "application/x-www-form-urlencoded"})
    response = conn.getresponse()
    response.read()
    assert response.status == 302, response.status
    return response.getheader("Set-Cookie").split(";")[0]


def _load(port: int, path: str, cookies: list[str]) -> list[float]:
    samples: list[float] = []
    lock = threading.Lock()

    def client(cookie: str) -> None:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(REQUESTS_PER_CLIENT):
            started = time.perf_counter()
            conn.request("GET", path, headers={"Cookie": cookie})
            response = conn.getresponse()
            response.read()
            elapsed = (time.perf_counter() - started) * 1000
            assert response.status == 200, (path, response.status)
            with lock:
                samples.append(elapsed)

    threads = [threading.Thread(target=client, args=(cookie,)) for cookie in cookies]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return samples


def _p95(samples: list[float]) -> float:
    return statistics.quantiles(samples, n=20)[-1]


def main() -> list[Row]:
    from werkzeug.serving import make_server

    from console import create_app, telemetry
    from console.blueprints.roles.admins import upsert_admin
    from console.cli import prepare_database, seed_demo
    from devtools.services import free_port

    with embedded_servers("console") as env:
        app = create_app({"SECRET_KEY": "bench-" + "c" * 48, "MONGODB_URI": env.mongo_uri,
                          "REDIS_URL": env.redis_url, "INGEST_KEYS": "bench", "RATELIMIT_ENABLED": False,
                          "DEMO_PASSWORD": PASSWORD, "LOG_LEVEL": "WARNING"})
        with app.app_context():
            prepare_database()
            seed_demo()
            upsert_admin("analyst@bench.example.com", ["analyst"], PASSWORD)
        port = free_port()
        logging.getLogger("werkzeug").setLevel(logging.WARNING)  # not a line per request in the bench's output
        server = make_server("127.0.0.1", port, app, threaded=True)
        thread = threading.Thread(target=server.serve_forever, daemon=True)
        thread.start()
        try:
            cookies = [_sign_in(port) for _ in range(CLIENTS)]
            _load(port, "/engagement", cookies[:2])  # warm the analytics cache, as any visit after new data does
            results = {}
            for path in ("/healthz", "/engagement", "/healthz", "/engagement"):  # alternate: noise hits both
                results.setdefault(path, []).extend(_load(port, path, cookies))
        finally:
            server.shutdown()
            telemetry.flush(app)  # while its database is still up (the flusher thread outlives this bench)
    page, probe = results["/engagement"], results["/healthz"]
    return [
        Row(f"engagement overview page, {CLIENTS} concurrent clients, median (ms)", statistics.median(page),
            f"/healthz, {CLIENTS} concurrent clients, median (ms)", statistics.median(probe), "info",
            higher_is_better=False),
        Row(f"engagement overview page, {CLIENTS} concurrent clients, p95 (ms)", _p95(page),
            f"/healthz, {CLIENTS} concurrent clients, p95 (ms)", _p95(probe), "info", higher_is_better=False),
    ]

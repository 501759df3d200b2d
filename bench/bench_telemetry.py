"""Per-request cost of telemetry: the same endpoints with telemetry on and off, interleaved in one run.

Starts its own SecantusDB and Redis; drives the app in-process (Flask test client) so only the app's own
work is timed. "On" includes everything telemetry does: the timing hooks, the slow-command listener on every
MongoDB command and the background flusher's bulk writes (it flushes every 500 requests or 5 s).
"""

from __future__ import annotations

import statistics
import time

from bench import Row, embedded_servers

BLOCKS = 24  # alternating on/off blocks: the machine is shared, so drift must hit both sides alike
REQUESTS = 60
ENDPOINTS = [("/api/auth/me", "GET /api/auth/me (bearer auth, MongoDB reads)", "<= 1.05"),
             ("/healthz", "GET /healthz (no I/O: the worst case, relative)", "info")]


def _config(mongo_uri: str, redis_url: str, enabled: bool) -> dict:
    return {"TESTING": False, "SECRET_KEY": "bench-" + "k" * 48, "MONGODB_URI": mongo_uri, "REDIS_URL": redis_url,
            "INGEST_KEYS": "bench-ingest-key-0123456789abcdef", "TELEMETRY_ENABLED": enabled,
            "RATELIMIT_ENABLED": False, "LOG_LEVEL": "WARNING"}


def _time_block(client, path: str, headers: dict, n: int) -> tuple[float, float]:
    """(median wall ms, mean process CPU ms) per request over n requests, after a short warm-up."""
    for _ in range(5):
        client.get(path, headers=headers)
    samples = []
    cpu_started = time.process_time()
    for _ in range(n):
        started = time.perf_counter()
        response = client.get(path, headers=headers)
        samples.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.status_code
    return statistics.median(samples), (time.process_time() - cpu_started) * 1000 / n


def main() -> list[Row]:
    from console import create_app
    from console.accounts import Admin
    from console.cli import prepare_database
    from console.security import hash_password, issue_token

    with embedded_servers("telemetry") as env:
        mongo_uri, redis_url = env.mongo_uri, env.redis_url
        setup = create_app(_config(mongo_uri, redis_url, False))
        with setup.app_context():
            prepare_database()
            admin = Admin(email="bench@example.com", roles=["super_admin"],
                          password_hash=hash_password("bench-password-1")).save()
            token, _ = issue_token(admin)
        from console import db

        apps = {enabled: create_app(_config(mongo_uri, redis_url, enabled)) for enabled in (True, False)}
        clients = {enabled: app.test_client() for enabled, app in apps.items()}
        headers = {"Authorization": f"Bearer {token}"}
        wall: dict[tuple[str, bool], list[float]] = {}
        cpu: dict[tuple[str, bool], list[float]] = {}
        for block in range(BLOCKS):
            for enabled in ((True, False) if block % 2 == 0 else (False, True)):
                db.init_app(apps[enabled])  # one MongoDB client per process: reconnect with (or without) listener
                for path, _label, _target in ENDPOINTS:
                    median_ms, cpu_ms = _time_block(clients[enabled], path, headers, REQUESTS)
                    wall.setdefault((path, enabled), []).append(median_ms)
                    cpu.setdefault((path, enabled), []).append(cpu_ms)
        apps[True].extensions["telemetry"].flush()
        rows = []
        for path, label, target in ENDPOINTS:
            on, off = statistics.median(wall[(path, True)]), statistics.median(wall[(path, False)])
            cpu_on, cpu_off = statistics.median(cpu[(path, True)]), statistics.median(cpu[(path, False)])
            print(f"   {label}: wall on {on:.3f} / off {off:.3f} ms ({on / off:.3f}); "
                  f"CPU on {cpu_on:.3f} / off {cpu_off:.3f} ms ({cpu_on / cpu_off:.3f})")
            rows.append(Row(f"{label}, telemetry on (ms/request)", on, "same endpoint, telemetry off (ms/request)",
                            off, target, higher_is_better=False))
            rows.append(Row(f"{label}, telemetry on (CPU ms/request)", cpu_on, "telemetry off (CPU ms/request)",
                            cpu_off, "info", higher_is_better=False))
        return rows


if __name__ == "__main__":
    for row in main():
        print(row)

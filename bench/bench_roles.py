"""Roles: what the role cache saves on every request, and what the assignment lock costs.

Starts its own SecantusDB and Redis; runs the app in-process with the test client.
- guarded request with the role cache vs the same request with the cache dropped before each one;
- a role assignment through the service (lock, rules, audit, version bump) vs a bare role update.
"""

from __future__ import annotations

import time

from bench import Row, embedded_servers

REQUESTS = 300
ASSIGNMENTS = 60


def _rate(count: int, func) -> float:
    started = time.perf_counter()
    for index in range(count):
        func(index)
    return count / (time.perf_counter() - started)


def main() -> list[Row]:
    from console import create_app
    from console.accounts import Admin
    from console.blueprints.roles import manage
    from console.cli import prepare_database
    from console.security import hash_password, issue_token

    with embedded_servers("roles") as env:
        app = create_app({"TESTING": True, "SECRET_KEY": "bench-secret-key-0123456789abcdef0123456789",
                          "MONGODB_URI": env.mongo_uri,
                          "REDIS_URL": env.redis_url, "INGEST_KEYS": "bench"})
        with app.app_context():
            prepare_database()
            hashed = hash_password("bench-password-123")
            boss = Admin(email="boss@bench.example.com", roles=["super_admin"], password_hash=hashed).save()
            target = Admin(email="target@bench.example.com", roles=["analyst"], password_hash=hashed).save()
            headers = {"Authorization": f"Bearer {issue_token(boss)[0]}"}
            client = app.test_client()
            url = "/api/phase14/roles/analyst/permissions"
            assert client.get(url, headers=headers).status_code == 200

            def cached(_):
                client.get(url, headers=headers)

            def uncached(_):
                app.extensions["role_cache"] = {"version": None, "roles": {}}
                client.get(url, headers=headers)

            uncached_rate = _rate(REQUESTS, uncached)
            cached_rate = _rate(REQUESTS, cached)

            sets = [["analyst"], ["analyst", "moderator"]]

            def bare(index):
                Admin.objects(id=target.id).update_one(set__roles=sets[index % 2])

            def guarded(index):
                with app.test_request_context():
                    manage.assign_roles(boss.id, str(target.id), replace=sets[(index + 1) % 2])

            bare_rate = _rate(ASSIGNMENTS, bare)
            guarded_rate = _rate(ASSIGNMENTS, guarded)
    return [
        Row("guarded API request, role cache warm (req/s)", cached_rate,
            "same request, role cache dropped each time (req/s)", uncached_rate, ">= 1.0"),
        Row("role assignment: lock + rules + audit + bump (ops/s)", guarded_rate,
            "bare update of the admin's roles (ops/s)", bare_rate, ">= 0.1"),
    ]

"""Demo admins: one per built-in role, for `make run` and `flask seed-demo` (idempotent)."""

from __future__ import annotations

import random

from console.authz import BUILTIN_ROLES
from console.blueprints.roles.admins import upsert_admin
from console.cli import demo_password


def seed_admins(_rng: random.Random, _now) -> str:
    """One admin per built-in role, all with the demo password."""
    password = demo_password()
    lines = [f"password {password}"]
    for role in BUILTIN_ROLES:
        email = f"{role.replace('_', '.')}@example.com"
        upsert_admin(email, [role], password, name=role.replace("_", " ").title(), actor="seed-demo")
        lines.append(f"  {email:32} {role}")
    return "\n".join(lines)

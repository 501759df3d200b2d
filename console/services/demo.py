"""Demo data for `make run` and `flask seed-demo`: idempotent, deterministic."""

from __future__ import annotations

import random

from flask import current_app
from pymongo import UpdateOne

from console.models.member import Member
from console.permissions import BUILTIN_ROLES
from console.services.admins import upsert_admin
from console.timeutil import utcnow

FIRST = [
    "Ava", "Liam", "Noah", "Emma", "Olivia", "Lucas", "Mia", "Amelia", "Ethan", "Sofia", "Mateo", "Aria", "Leo",
    "Zoe", "Hana", "Ravi", "Priya", "Kenji", "Yuki", "Omar", "Layla", "Diego", "Lucia", "Chen", "Mei", "Ivan",
    "Anya", "Kwame", "Amara", "Tomas", "Elena", "Jonas", "Freya", "Malik", "Nia", "Arjun", "Sana", "Felix",
    "Clara", "Hugo", "Ines", "Oscar", "Maya", "Samuel", "Grace", "Daniel", "Chloe", "Adam", "Lea",
]
LAST = [
    "Smith", "Garcia", "Müller", "Rossi", "Novak", "Kim", "Tanaka", "Okafor", "Silva", "Cohen", "Haddad",
    "Nguyen", "Ivanova", "Jensen", "Dubois", "Kowalski", "Singh", "Patel", "Moreau", "Larsen", "Costa",
    "Fischer", "Bianchi", "Sato", "Mensah", "Ortiz", "Schmidt", "Lindqvist", "Yilmaz", "Rahman", "O'Brien",
    "Alvarez", "Petrov", "Hughes", "Becker",
]
DEMO_MEMBERS = 500


def demo_members(rng: random.Random, count: int = DEMO_MEMBERS) -> list[dict]:
    members = []
    for index in range(1, count + 1):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        local = f"{first}.{last}".lower().replace("'", "").replace("ü", "u")
        members.append({"user_id": f"m{index:04d}", "name": f"{first} {last}",
                        "email": f"{local}{index}@example.org"})
    return members


def seed_members(rng: random.Random) -> str:
    now = utcnow()
    ops = [UpdateOne({"user_id": m["user_id"]},
                     {"$set": {"name": m["name"], "email": m["email"]}, "$setOnInsert": {"created_at": now}},
                     upsert=True) for m in demo_members(rng)]
    result = Member._get_collection().bulk_write(ops, ordered=False)
    return f"members: {result.upserted_count} new, {len(ops) - result.upserted_count} already there"


def seed_admins(password: str) -> list[str]:
    lines = []
    for role in BUILTIN_ROLES:
        email = f"{role.replace('_', '.')}@example.com"
        upsert_admin(email, [role], password, name=role.replace("_", " ").title(), actor="seed-demo")
        lines.append(f"  {email:32} {role}")
    return lines


def seed_demo(password: str) -> list[str]:
    """Run every seeder (features add theirs) and return lines to print."""
    rng = random.Random(14)
    lines = [seed_members(rng)]
    for _order, name, func in sorted(current_app.extensions.get("demo_seeders", []), key=lambda s: s[:2]):
        lines.append(f"{name}: {func(random.Random(f'{name}-14'), utcnow())}")
    lines.append(f"admins (password: {password}):")
    lines.extend(seed_admins(password))
    return lines

"""Demo members for `make run` and `flask seed-demo`: idempotent, deterministic."""

from __future__ import annotations

import random

from pymongo import UpdateOne

from console.members import Member
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


def seed_members(_rng: random.Random, now=None) -> str:
    rng = random.Random(14)  # the seed earlier releases used, so existing demo members keep their names
    now = now or utcnow()
    ops = [UpdateOne({"user_id": m["user_id"]},
                     {"$set": {"name": m["name"], "email": m["email"]}, "$setOnInsert": {"created_at": now}},
                     upsert=True) for m in demo_members(rng)]
    result = Member._get_collection().bulk_write(ops, ordered=False)
    return f"{result.upserted_count} new, {len(ops) - result.upserted_count} already there"

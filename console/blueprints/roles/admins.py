"""Creating and updating console admins."""

from __future__ import annotations

from console.accounts import Admin, end_sessions
from console.audit import record
from console.authz import SUPER_ADMIN, Role, bump_authz_version
from console.blueprints.roles.manage import assignment_lock
from console.security import hash_password, password_problems
from console.timeutil import utcnow


class AdminError(ValueError):
    """An admin cannot be created or changed as asked; the message says why."""


def known_roles() -> set[str]:
    return set(Role.objects.distinct("name"))


def upsert_admin(email: str, roles: list[str], password: str, name: str | None = None,
                 actor: str = "cli") -> tuple[Admin, bool]:
    """Create the admin or update their roles and password. Returns (admin, created)."""
    email = email.strip().lower()
    if "@" not in email or len(email) > 254:
        raise AdminError(f"{email!r} is not an email address")
    unknown = sorted(set(roles) - known_roles())
    if unknown:
        raise AdminError(f"unknown role(s): {', '.join(unknown)}; known: {', '.join(sorted(known_roles()))}")
    problems = password_problems(password, email)
    if problems:
        raise AdminError("the password " + "; ".join(problems))
    admin = Admin.objects(email=email).first()
    created = admin is None
    before = None if created else {"roles": list(admin.roles)}
    if created:
        admin = Admin(email=email, name=name or email.split("@")[0].replace(".", " ").title())
    admin.roles = sorted(set(roles))
    admin.password_hash = hash_password(password)
    admin.password_changed_at = utcnow()
    if name:
        admin.name = name
    with assignment_lock():  # the same rule as the API: someone active must keep super_admin
        if before and SUPER_ADMIN in before["roles"] and SUPER_ADMIN not in admin.roles and admin.active and \
                not Admin.objects(roles=SUPER_ADMIN, active=True, id__ne=admin.id).count():
            raise AdminError(f"{email} is the last active super_admin; promote someone else first")
        admin.save()
    if not created:  # a new password ends every session and token made with the old one
        admin.session_version = end_sessions(admin.id)
    bump_authz_version()
    record("admin.created" if created else "admin.updated", email, before, {"roles": admin.roles}, actor=actor)
    return admin, created

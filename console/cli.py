"""Command-line tasks: `flask --app wsgi <command>`."""

from __future__ import annotations

import random
import secrets
from pathlib import Path

import click
from flask import current_app

from console import db
from console.authz import seed_roles
from console.timeutil import utcnow


def init_app(app) -> None:
    app.cli.add_command(init_db_command)
    app.cli.add_command(seed_demo_command)


def add_demo_seeder(app, name: str, func, order: int = 100) -> None:
    """Features contribute demo data: func(rng, now) -> a short summary (lines after the first are indented)."""
    app.extensions.setdefault("demo_seeders", []).append((order, name, func))


def add_migration(app, name: str, func) -> None:
    """Features contribute data migrations: func() -> a summary string when it changed something, else None.

    They run on every `init-db` (and app start-up through prepare_database), so each must be idempotent."""
    app.extensions.setdefault("migrations", []).append((name, func))


def prepare_database() -> None:
    for name, func in current_app.extensions.get("migrations", []):
        summary = func()
        if summary:
            current_app.logger.warning("migration %s: %s", name, summary)
    db.ensure_indexes()
    seed_roles()


@click.command("init-db")
def init_db_command():
    """Create every declared index and the built-in roles."""
    prepare_database()
    click.echo("Indexes and built-in roles are in place.")


def demo_password() -> str:
    """The demo admins' password: DEMO_PASSWORD, or one generated once and kept in var/ (git-ignored)."""
    configured = current_app.config.get("DEMO_PASSWORD")
    if configured:
        return configured
    path = Path(current_app.root_path).parent / "var" / "demo-password"
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(exist_ok=True)
    password = "demo-" + secrets.token_urlsafe(9)
    path.write_text(password)
    path.chmod(0o600)
    return password


@click.command("seed-demo")
def seed_demo_command():
    """Idempotent demo data: members, ~90 days of activity, templates, one admin per built-in role."""
    prepare_database()
    for line in seed_demo():
        click.echo(line)


def seed_demo() -> list[str]:
    """Run every feature's demo seeder in order; return the lines to print."""
    lines = []
    for _order, name, func in sorted(current_app.extensions.get("demo_seeders", []), key=lambda s: s[:2]):
        lines.append(f"{name}: {func(random.Random(f'{name}-14'), utcnow())}")
    return lines

"""Command-line tasks: `flask --app wsgi <command>`."""

from __future__ import annotations

import secrets
from pathlib import Path

import click
from flask import current_app

from console import db
from console.security import seed_roles


def init_app(app) -> None:
    app.cli.add_command(init_db_command)
    app.cli.add_command(create_admin_command)
    app.cli.add_command(seed_demo_command)


def add_demo_seeder(app, name: str, func, order: int = 100) -> None:
    """Features contribute demo data: func(rng, now) -> a short summary string."""
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


@click.command("create-admin")
@click.argument("email")
@click.option("--role", "roles", multiple=True, required=True, help="A role name; repeat for several.")
@click.option("--password", help="Prompted for when absent.")
@click.option("--name", help="Display name.")
def create_admin_command(email, roles, password, name):
    """Create or update an admin with the given role(s)."""
    from console.services.admins import AdminError, upsert_admin

    prepare_database()
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        admin, created = upsert_admin(email, list(roles), password, name)
    except AdminError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'Created' if created else 'Updated'} {admin.email} with role(s) {', '.join(admin.roles)}.")


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
    from console.services.demo import seed_demo

    prepare_database()
    for line in seed_demo(demo_password()):
        click.echo(line)

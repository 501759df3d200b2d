"""`flask --app wsgi create-admin`: the roles feature's command."""

from __future__ import annotations

import click

from console.blueprints.roles.admins import AdminError, upsert_admin
from console.cli import prepare_database


@click.command("create-admin")
@click.argument("email")
@click.option("--role", "roles", multiple=True, required=True, help="A role name; repeat for several.")
@click.option("--password", help="Prompted for when absent.")
@click.option("--name", help="Display name.")
def create_admin_command(email, roles, password, name):
    """Create or update an admin with the given role(s)."""
    prepare_database()
    if password is None:
        password = click.prompt("Password", hide_input=True, confirmation_prompt=True)
    try:
        admin, created = upsert_admin(email, list(roles), password, name)
    except AdminError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"{'Created' if created else 'Updated'} {admin.email} with role(s) {', '.join(admin.roles)}.")

"""`flask --app wsgi record-backup`: the operator records a finished backup (the checklist warns after a day)."""

from __future__ import annotations

from datetime import datetime

import click

from console.blueprints.hardening import backups


@click.command("record-backup")
@click.option("--at", "at", help="When the backup finished (ISO 8601); now when absent.")
@click.option("--note", default="", help="Where it went, e.g. the archive name (no secrets).")
def record_backup_command(at, note):
    """Record that a backup of MongoDB finished (run it after mongodump succeeds)."""
    moment = None
    if at:
        try:
            moment = datetime.fromisoformat(at.replace("Z", "+00:00"))
        except ValueError:
            raise click.ClickException(f"--at {at!r} is not an ISO 8601 time") from None
    try:
        recorded = backups.record_backup(moment, note)
    except ValueError as error:
        raise click.ClickException(str(error)) from None
    click.echo(f"Recorded a backup at {recorded['at']:%Y-%m-%d %H:%M} UTC.")

"""`modelfleet db upgrade`."""

from __future__ import annotations

import click

from workers.adapters.postgres.migrate import current_revision, upgrade_to_head
from workers.cli.root import CliContext, main, reported_failures
from workers.config import masked_url


@main.group()
def db() -> None:
    """The PostgreSQL schema."""


@db.command("upgrade")
@click.pass_obj
def db_upgrade(cli: CliContext) -> None:
    """Apply every migration not yet applied (a database already at head is left as is)."""
    with reported_failures("db upgrade"):
        upgrade_to_head(cli.engine)
        revision = current_revision(cli.engine)
    click.echo(f"database {masked_url(cli.settings.database_url)} at revision {revision}")

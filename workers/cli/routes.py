"""`modelfleet route list [--deployment]`."""

from __future__ import annotations

import click

from workers.cli.output import emit, json_option
from workers.cli.root import CliContext, deployment_filter, main, reported_failures


@main.group()
def route() -> None:
    """Replicas of deployments."""


@route.command("list")
@click.option("--deployment", "ref", help="Only this deployment's routes (name or id).")
@json_option
@click.pass_obj
def list_routes(cli: CliContext, ref: str | None, as_json: bool) -> None:
    """Routes with their session, oldest first."""
    with reported_failures("route list"):
        rows = cli.reports.routes(deployment_filter(cli, ref))
    columns = [
        "id",
        "deployment",
        "revision",
        "status",
        "session_status",
        "host",
        "port",
        "status_changed_at",
    ]
    emit("routes", rows, columns, as_json=as_json)

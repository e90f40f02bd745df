"""`modelfleet route list [--deployment]`."""

from __future__ import annotations

import click

from workers.cli.output import emit, json_option, wide_option
from workers.cli.root import CliContext, deployment_filter, main, reported_failures


@main.group()
def route() -> None:
    """Replicas of deployments."""


@route.command("list")
@click.option("--deployment", "ref", help="Only this deployment's routes (name or id).")
@wide_option
@json_option
@click.pass_obj
def list_routes(cli: CliContext, ref: str | None, wide: bool, as_json: bool) -> None:
    """Routes with their session, oldest first."""
    with reported_failures("route list"):
        rows = cli.reports.routes(deployment_filter(cli, ref))
    emit(
        "routes",
        rows,
        ["id", "deployment", "revision", "status", "host_name"],
        wide=["session_status", "host", "port", "status_changed_at"] if wide else None,
        as_json=as_json,
    )

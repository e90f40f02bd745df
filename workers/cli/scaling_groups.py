"""`modelfleet scaling-group create | list`: resource groups and their app proxy."""

from __future__ import annotations

import click
import sqlalchemy as sa

from workers.cli.output import done, emit, json_option, wide_option
from workers.cli.root import CliContext, bad_input, main, reported_failures
from workers.domain import RouteStatus
from workers.inputs import http_url_problem, name_problem, token_problem

CLEANUP_CHOICES = [
    RouteStatus.UNHEALTHY.value,
    RouteStatus.DEGRADED.value,
    RouteStatus.HEALTHY.value,
]


@main.group("scaling-group")
def scaling_group() -> None:
    """Resource groups: where sessions run, and the app proxy that fronts them."""


@scaling_group.command("create")
@click.argument("name")
@click.option(
    "--app-proxy-addr", help="Base URL of the group's app proxy, e.g. http://proxy:10200."
)
@click.option(
    "--app-proxy-token",
    envvar="MODELFLEET_APP_PROXY_TOKEN",
    help="Its API token; better from MODELFLEET_APP_PROXY_TOKEN (kept out of shell history).",
)
@click.option(
    "--cleanup-status",
    "cleanup_statuses",
    multiple=True,
    type=click.Choice(CLEANUP_CHOICES),
    default=[RouteStatus.UNHEALTHY.value],
    show_default=True,
    help="Route statuses this group evicts (repeat the option for several).",
)
@json_option
@click.pass_obj
def create(
    cli: CliContext,
    name: str,
    app_proxy_addr: str | None,
    app_proxy_token: str | None,
    cleanup_statuses: tuple[str, ...],
    as_json: bool,
) -> None:
    """Create a resource group."""
    if (problem := name_problem(name)) is not None:
        bad_input("NAME", problem)
    if app_proxy_addr is not None and (problem := http_url_problem(app_proxy_addr)):
        bad_input("--app-proxy-addr", problem)
    if app_proxy_token is not None and (problem := token_problem(app_proxy_token)):
        bad_input("--app-proxy-token", problem)
    with reported_failures("scaling-group create"):
        try:
            cli.catalog.create_scaling_group(
                name,
                app_proxy_addr=app_proxy_addr,
                app_proxy_api_token=app_proxy_token,
                cleanup_statuses=[RouteStatus(s) for s in cleanup_statuses],
            )
        except sa.exc.IntegrityError:
            bad_input("NAME", f"a scaling group named {name!r} exists already")
    done(f"scaling group {name} created", {"scaling_group": name}, as_json=as_json)


@scaling_group.command("list")
@wide_option
@json_option
@click.pass_obj
def list_groups(cli: CliContext, wide: bool, as_json: bool) -> None:
    """Every resource group (tokens are never shown)."""
    with reported_failures("scaling-group list"):
        rows = cli.reports.scaling_groups()
    emit(
        "scaling groups",
        rows,
        ["name", "app_proxy_addr"],
        wide=["route_cleanup_statuses", "created_at"] if wide else None,
        as_json=as_json,
    )

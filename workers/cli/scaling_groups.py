"""`modelfleet scaling-group create | update | list`: resource groups, their app proxy, and
how they place their replicas."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa

from workers.cli.output import done, emit, json_option, wide_option
from workers.cli.root import CliContext, bad_input, main, reported_failures
from workers.domain import PlacementMode, RouteStatus
from workers.inputs import http_url_problem, name_problem, token_problem

CLEANUP_CHOICES = [
    RouteStatus.UNHEALTHY.value,
    RouteStatus.DEGRADED.value,
    RouteStatus.HEALTHY.value,
]


PLACEMENT_HELP = ("spread: the host with the fewest of the deployment, then the least loaded; "
                  "pack: the most allocated host and device first.")  # fmt: skip
REBALANCE_HELP = ("Move one replica at a time to make room for one that fits nowhere, and to "
                  "restore spread when a host joins or comes back.")  # fmt: skip


def placement_options(*, default: bool) -> Callable[[Any], Any]:
    """--placement and --rebalance/--no-rebalance: spread and on by default on create,
    unchanged unless given on update."""

    def decorate(command: Any) -> Any:
        command = click.option("--rebalance/--no-rebalance", default=True if default else None,
                               show_default=default, help=REBALANCE_HELP)(command)  # fmt: skip
        return click.option("--placement", type=click.Choice([m.value for m in PlacementMode]),
                            default=PlacementMode.SPREAD.value if default else None,
                            show_default=default, help=PLACEMENT_HELP)(command)  # fmt: skip

    return decorate


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
@placement_options(default=True)
@json_option
@click.pass_obj
def create(cli: CliContext, /, name: str, **options: Any) -> None:
    """Create a resource group."""
    if (problem := name_problem(name)) is not None:
        bad_input("NAME", problem)
    addr, token = options["app_proxy_addr"], options["app_proxy_token"]
    if addr is not None and (problem := http_url_problem(addr)):
        bad_input("--app-proxy-addr", problem)
    if token is not None and (problem := token_problem(token)):
        bad_input("--app-proxy-token", problem)
    with reported_failures("scaling-group create"):
        try:
            cli.catalog.create_scaling_group(
                name,
                app_proxy_addr=addr,
                app_proxy_api_token=token,
                cleanup_statuses=[RouteStatus(s) for s in options["cleanup_statuses"]],
                placement=PlacementMode(options["placement"]),
                rebalance=options["rebalance"],
            )
        except sa.exc.IntegrityError:
            bad_input("NAME", f"a scaling group named {name!r} exists already")
    done(f"scaling group {name} created", {"scaling_group": name},
         as_json=options["as_json"])  # fmt: skip


@scaling_group.command("update")
@click.argument("name")
@placement_options(default=False)
@json_option
@click.pass_obj
def update(
    cli: CliContext, name: str, placement: str | None, rebalance: bool | None, as_json: bool
) -> None:
    """Change how a group places and rebalances its replicas (new placements follow it)."""
    mode = None if placement is None else PlacementMode(placement)
    with reported_failures("scaling-group update"):
        if not cli.catalog.set_placement(name, mode, rebalance):
            bad_input("NAME", f"no scaling group named {name!r}")
    document = {"scaling_group": name, "placement": placement, "rebalance": rebalance}
    done(f"scaling group {name} updated", document, as_json=as_json)


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
        ["name", "app_proxy_addr", "placement", "rebalance"],
        wide=["route_cleanup_statuses", "created_at"] if wide else None,
        as_json=as_json,
    )

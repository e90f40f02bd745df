"""`modelfleet status`: one screen of how the fleet and the controller are doing."""

from __future__ import annotations

import click

from workers.cli.output import emit_json, emit_table, json_option
from workers.cli.phases import RUN_COLUMNS, run_row
from workers.cli.root import CliContext, main, reported_failures


@main.command()
@json_option
@click.pass_obj
def status(cli: CliContext, as_json: bool) -> None:
    """Deployments by lifecycle, routes by status, and the last run of each phase."""
    with reported_failures("status"):
        deployments = cli.reports.deployment_counts()
        routes = cli.reports.route_counts()
        runs = [run_row(run) for run in cli.phase_store.latest_run_per_phase()]
    errors = [{"phase": run["phase"], **sample} for run in runs for sample in run["error_samples"]]
    if as_json:
        emit_json(
            {"deployments": deployments, "routes": routes, "last_runs": runs, "errors": errors}
        )
        return
    emit_table("deployments", [deployments], list(deployments) or ["(none)"])
    emit_table("routes", [routes], list(routes) or ["(none)"])
    emit_table("last run of each phase", runs, RUN_COLUMNS)
    if errors:
        emit_table(
            "errors in those runs", errors, ["phase", "id", "reason", "detail", "error_code"]
        )

"""`modelfleet status`: one screen of how the fleet and the controller are doing."""

from __future__ import annotations

from typing import Any

import click

from workers.cli.output import emit_json, emit_table, json_option, wide_option
from workers.cli.phases import RUN_COLUMNS, RUN_WIDE_COLUMNS, run_row
from workers.cli.root import CliContext, main, reported_failures
from workers.cli.watching import show_or_watch, watch_option


@main.command()
@watch_option
@wide_option
@json_option
@click.pass_obj
def status(cli: CliContext, watch: float | None, wide: bool, as_json: bool) -> None:
    """Deployments by lifecycle, routes by status, and the last run of each phase."""
    show_or_watch(lambda: _status(cli, wide=wide, as_json=as_json), watch, as_json=as_json)


def _status(cli: CliContext, *, wide: bool, as_json: bool) -> None:
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
    emit_table("deployments", _counted("lifecycle", deployments), ["lifecycle", "count"])
    emit_table("routes", _counted("status", routes), ["status", "count"])
    emit_table("last run of each phase", runs, [*RUN_COLUMNS, *(RUN_WIDE_COLUMNS if wide else ())])
    if errors:
        emit_table("errors in those runs", errors, ["phase", "id", "reason", "error_code"])


def _counted(key: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{key: name, "count": n} for name, n in counts.items()]

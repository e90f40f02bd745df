"""`modelfleet status`: one screen of how the fleet and the controller are doing.

It also lists the health probers by their heartbeats: a prober gone silent changes no
route's status (no data is not bad health), so this is where it shows.
"""

from __future__ import annotations

from typing import Any

import click

from workers.adapters.redis.hosts import RedisHostSignals
from workers.cli.output import emit_json, emit_table, json_option, wide_option
from workers.cli.phases import RUN_COLUMNS, RUN_WIDE_COLUMNS, run_row
from workers.cli.root import CliContext, main, reported_failures
from workers.cli.watching import show_or_watch, watch_option
from workers.errors import InfrastructureUnavailable

PROBER_SILENT_AFTER_S = 10.0  # twenty of its passes at the default interval


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
    probers = _probers(cli)
    errors = [{"phase": run["phase"], **sample} for run in runs for sample in run["error_samples"]]
    if as_json:
        emit_json({"deployments": deployments, "routes": routes, "last_runs": runs,
                   "errors": errors, "probers": probers})  # fmt: skip
        return
    emit_table("deployments", _counted("lifecycle", deployments), ["lifecycle", "count"])
    emit_table("routes", _counted("status", routes), ["status", "count"])
    emit_table("last run of each phase", runs, [*RUN_COLUMNS, *(RUN_WIDE_COLUMNS if wide else ())])
    if errors:
        emit_table("errors in those runs", errors, ["phase", "id", "reason", "error_code"])
    if probers is None:
        click.echo("probers: unknown (Redis cannot be read)")
    else:
        emit_table("health probers", probers, ["name", "heartbeat_age_s", "state"])


def _probers(cli: CliContext) -> list[dict[str, Any]] | None:
    """Each prober's heartbeat age and whether it fell silent; None when Redis is down."""
    try:
        with cli.redis() as (client, keys):
            ages = RedisHostSignals(client=client, keys=keys).prober_ages_s()
    except InfrastructureUnavailable:
        return None
    return [
        {"name": name, "heartbeat_age_s": round(age_s, 1),
         "state": "silent" if age_s > PROBER_SILENT_AFTER_S else "probing"}
        for name, age_s in sorted(ages.items())
    ]  # fmt: skip


def _counted(key: str, counts: dict[str, int]) -> list[dict[str, Any]]:
    return [{key: name, "count": n} for name, n in counts.items()]

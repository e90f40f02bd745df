"""`modelfleet phase run NAME [--wait]` and `modelfleet phase history`."""

from __future__ import annotations

import time
from dataclasses import asdict
from typing import Any
from uuid import UUID

import click

from beat_schedule import SCHEDULED_INTERVALS_S
from workers.adapters.redis_client import create_redis_client
from workers.adapters.redis_keys import RedisKeys
from workers.adapters.redis_phase_runs import RedisOutcomeStore
from workers.celery import ModelfleetCelery
from workers.cli.output import emit, emit_json, emit_table, json_option
from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, main, reported_failures
from workers.phase_runs import PhaseRun, PhaseRunState

POLL_INTERVAL_S = 0.2
WORKER_PING_S = 2.0  # how long `phase run --wait` waits for some worker to answer a ping
RUN_COLUMNS = [
    "id",
    "phase",
    "state",
    "started_at",
    "duration_s",
    "item_count",
    "success",
    "error",
    "stale",
    "skipped",
    "missing",
    "transition_count",
    "error_text",
]


@main.group()
def phase() -> None:
    """Run a phase now, or read what past runs did."""


@phase.command("run")
@click.argument("name", type=click.Choice(sorted(SCHEDULED_INTERVALS_S)))
@click.option("--wait", is_flag=True, help="Wait for the run to close and print its outcomes.")
@click.option("--timeout-s", type=FiniteFloat(min=1), default=180.0, show_default=True)
@json_option
@click.pass_obj
def run(cli: CliContext, name: str, wait: bool, timeout_s: float, as_json: bool) -> None:
    """Start a run of NAME on the workers (as beat would), now."""
    sender = ModelfleetCelery(settings=cli.settings)
    with reported_failures(f"phase run {name}"):
        if wait and not sender.control.ping(timeout=WORKER_PING_S):
            raise click.ClickException(
                "no Celery worker answered; start one with `celery -A workers worker`"
            )
        sent = sender.send_task(name)
        if not wait:
            if as_json:
                emit_json({"phase": name, "task_id": sent.id, "queued": True})
            else:
                click.echo(f"{name}: queued as task {sent.id}")
            return
        run_id = sent.get(timeout=timeout_s)
        if run_id is None:
            raise click.ClickException(f"{name}: a run is in progress; nothing was started")
        closed = _wait_closed(cli, UUID(run_id), time.monotonic() + timeout_s)
        outcomes = _outcomes(cli, closed.id)
    if as_json:
        emit_json({**run_row(closed), "outcomes": outcomes})
    else:
        emit_table(f"{name} run", [run_row(closed)], RUN_COLUMNS)
        for bucket in ("success", "error", "stale", "skipped"):
            rows = [o for o in outcomes if o["bucket"] == bucket]
            if rows:
                emit_table(bucket, rows, ["id", "reason", "detail", "error_code"])
    if closed.state is not PhaseRunState.SUCCEEDED:
        raise click.ClickException(f"{name}: run {closed.id} ended {closed.state.value}")


@phase.command("history")
@click.option("--phase", "name", type=click.Choice(sorted(SCHEDULED_INTERVALS_S)))
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@json_option
@click.pass_obj
def history(cli: CliContext, name: str | None, limit: int, as_json: bool) -> None:
    """Recent runs, newest first."""
    with reported_failures("phase history"):
        runs = cli.phase_store.recent_runs(phase=name, limit=limit)
    emit("phase runs", [run_row(r) for r in runs], RUN_COLUMNS, as_json=as_json)


def run_row(run: PhaseRun) -> dict[str, Any]:
    counts = asdict(run.summary.counts)
    return {
        "id": run.id,
        "phase": run.phase,
        "state": run.state.value,
        "started_at": run.started_at,
        "finished_at": run.finished_at,
        "duration_s": None if run.duration_s is None else round(run.duration_s, 3),
        "item_count": run.item_count,
        "task_count": run.task_count,
        **counts,
        "transition_count": run.summary.transition_count,
        "error_text": run.summary.error,
        "error_samples": list(run.summary.error_samples),
    }


def _wait_closed(cli: CliContext, run_id: UUID, deadline: float) -> PhaseRun:
    while True:
        found = cli.phase_store.get_run(run_id)
        if found is not None and found.state is not PhaseRunState.RUNNING:
            return found
        if time.monotonic() > deadline:
            raise click.ClickException(f"run {run_id} still open; see `modelfleet phase history`")
        time.sleep(POLL_INTERVAL_S)


def _outcomes(cli: CliContext, run_id: UUID) -> list[dict[str, Any]]:
    client = create_redis_client(cli.settings.redis_url)
    try:
        store = RedisOutcomeStore(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
        return sorted((o.to_json() for o in store.load(run_id)), key=lambda o: o["id"])
    finally:
        client.close()

"""`modelfleet phase run NAME [--wait]` and `modelfleet phase history`."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any
from uuid import UUID

import click
import kombu.exceptions
from celery.result import AsyncResult
from celery.states import READY_STATES, SUCCESS

from beat_schedule import SCHEDULED_INTERVALS_S
from workers.adapters.redis.phase_runs import RedisOutcomeStore
from workers.celery import ModelfleetCelery
from workers.cli.output import emit, emit_json, emit_records, emit_table, json_option, wide_option
from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, main, one_line, reported_failures
from workers.cli.waiting import Deadline, wait_until
from workers.phase_runs import PhaseRun, PhaseRunState

log = logging.getLogger(__name__)

# A broker that is down fails the command in about a second, not after kombu's default retries.
PUBLISH_RETRY = {"max_retries": 2, "interval_start": 0, "interval_step": 0.5, "interval_max": 0.5}
WORKER_PING_S = 2.0  # how long `phase run --wait` waits for some worker to answer a ping
RUN_COLUMNS = ["phase", "state", "started_at", "duration_s", "error"]
RUN_WIDE_COLUMNS = [
    "id",
    "item_count",
    "success",
    "stale",
    "skipped",
    "waiting",
    "missing",
    "transition_count",
    "error_text",
]


@main.group()
def phase() -> None:
    """Run a phase now, or read what past runs did."""


RUN_HELP = "\n".join(
    [
        "Start a run of NAME on the workers (as beat would), now.",
        "",
        "Exit 0 when the run succeeded, 3 when it succeeded but some items ended in error,",
        "1 when it failed or did not close within --timeout-s.",
        "",
        "\b",
        "NAME is one of:",
        *(f"  {name}" for name in sorted(SCHEDULED_INTERVALS_S)),
    ]
)


@phase.command("run", help=RUN_HELP)
@click.argument("name", metavar="NAME", type=click.Choice(sorted(map(str, SCHEDULED_INTERVALS_S))))
@click.option(
    "--wait",
    is_flag=True,
    help="Wait for the run to close and print its outcomes (a run in progress is waited out).",
)
@click.option("--timeout-s", type=FiniteFloat(min=1), default=180.0, show_default=True)
@json_option
@click.pass_obj
def run(cli: CliContext, name: str, wait: bool, timeout_s: float, as_json: bool) -> None:
    sender = ModelfleetCelery(settings=cli.settings)
    with reported_failures(f"phase run {name}"), broker_failures(name):
        if not wait:
            sent = _send(sender, name)
            if as_json:
                emit_json({"phase": name, "task_id": sent.id, "queued": True})
            else:
                click.echo(f"{name}: queued as task {sent.id}")
            return
        if not sender.control.ping(timeout=WORKER_PING_S):
            raise click.ClickException(
                "no Celery worker answered; start one with `celery -A workers worker`"
            )
        deadline = Deadline(timeout_s)
        closed = _wait_closed(cli, _start_own_run(cli, sender, name, deadline), deadline)
        outcomes = _outcomes(cli, closed.id)
    if as_json:
        emit_json({**run_row(closed), "outcomes": outcomes})
    else:
        emit_records(f"{name} run", [run_row(closed)], [*RUN_COLUMNS, *RUN_WIDE_COLUMNS])
        for bucket in ("success", "error", "stale", "skipped", "waiting"):
            rows = [o for o in outcomes if o["bucket"] == bucket]
            if rows:
                emit_table(bucket, rows, ["id", "reason", "detail", "error_code"])
    if closed.state is not PhaseRunState.SUCCEEDED:
        raise click.ClickException(f"{name}: run {closed.id} ended {closed.state.value}")
    if closed.summary.counts.error:
        raise ItemErrors(
            f"{name}: run {closed.id} succeeded; {closed.summary.counts.error} "
            "item(s) ended in error"
        )


class ItemErrors(click.ClickException):
    """A run that closed `succeeded` with items in the error bucket: exit 3, for scripts."""

    exit_code = 3


@contextmanager
def broker_failures(name: str) -> Iterator[None]:
    """A broker that cannot be reached: one line, exit 1."""
    try:
        yield
    except kombu.exceptions.OperationalError as error:
        log.debug("phase run %s: broker unreachable", name, exc_info=True)
        raise click.ClickException(
            one_line(
                f"phase run {name} failed: the broker cannot be reached ({error}); "
                "check MODELFLEET_BROKER_URL"
            )
        ) from None


def _send(sender: ModelfleetCelery, name: str) -> AsyncResult:
    return sender.send_task(name, retry=True, retry_policy=PUBLISH_RETRY)


def _start_own_run(
    cli: CliContext, sender: ModelfleetCelery, name: str, deadline: Deadline
) -> UUID:
    """Start a run of `name` and return its id, first waiting out a run in progress."""
    told = False
    while (run_id := _started_run_id(sender, name, deadline)) is None:
        if not told:
            click.echo(f"{name}: a run is in progress; waiting for it to close", err=True)
            told = True
        in_progress = cli.phase_store.open_run_of(name)
        if in_progress is not None:
            _wait_closed(cli, in_progress.id, deadline)
        else:  # the lock is held a moment before the run row exists
            deadline.pause(f"{name}: a run still holds the phase lock")
    return run_id


def _started_run_id(sender: ModelfleetCelery, name: str, deadline: Deadline) -> UUID | None:
    """Send the phase's task; the id of the run it started, or None if the phase was busy.

    The result is polled, not awaited with AsyncResult.get: that one registers the task's
    children (the run's header tasks) as pending results, and their __del__ then runs at
    interpreter exit, when unsubscribing from Redis fails with a traceback.
    """
    sent = _send(sender, name)
    while (meta := sent.backend.get_task_meta(sent.id))["status"] not in READY_STATES:
        deadline.pause(f"phase run {name}: no worker started the run", "see `modelfleet status`")
    sent.forget()
    if meta["status"] != SUCCESS:
        raise click.ClickException(one_line(f"phase run {name}: the task ended {meta['status']}"))
    return None if meta["result"] is None else UUID(meta["result"])


@phase.command("history")
@click.option("--phase", "name", type=click.Choice(sorted(map(str, SCHEDULED_INTERVALS_S))))
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True)
@wide_option
@json_option
@click.pass_obj
def history(cli: CliContext, name: str | None, limit: int, wide: bool, as_json: bool) -> None:
    """Recent runs, newest first."""
    with reported_failures("phase history"):
        runs = cli.phase_store.recent_runs(phase=name, limit=limit)
    rows = [run_row(r) for r in runs]
    emit("phase runs", rows, RUN_COLUMNS, wide=RUN_WIDE_COLUMNS if wide else None, as_json=as_json)


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


def _wait_closed(cli: CliContext, run_id: UUID, deadline: Deadline) -> PhaseRun:
    def read() -> PhaseRun | None:
        return cli.phase_store.get_run(run_id)

    closed = wait_until(
        read,
        lambda run: run is not None and run.state is not PhaseRunState.RUNNING,
        deadline,
        lambda run: (f"run {run_id} still open", "see `modelfleet phase history`"),
    )
    assert closed is not None  # reached: a closed run was read
    return closed


def _outcomes(cli: CliContext, run_id: UUID) -> list[dict[str, Any]]:
    with cli.redis() as (client, keys):
        store = RedisOutcomeStore(client=client, keys=keys)
        return sorted((o.to_json() for o in store.load(run_id)), key=lambda o: o["id"])

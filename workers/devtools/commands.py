"""`modelfleet dev`: the whole system on this machine, and its live view."""

from __future__ import annotations

import os
import signal
import threading

import click
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.reports import Reports
from workers.cli.deployments import with_rollout
from workers.cli.output import as_text
from workers.cli.params import FiniteFloat
from workers.cli.root import main, reported_failures
from workers.devtools import dev as dev_system
from workers.devtools import smoke as smoke_check

VIEW_REFRESH_S = 1.0


@main.command()
@click.option("--smoke", is_flag=True, help="Headless: serve, heal one replica, exit.")
@click.option(
    "--timeout-s",
    type=FiniteFloat(min=10),
    default=180.0,
    show_default=True,
    help="With --smoke: how long each step may take before it fails.",
)
@click.option(
    "--replicas",
    type=click.IntRange(min=0, max=10),
    default=dev_system.DEMO_REPLICAS,
    show_default=True,
    help="Replicas of the demo deployment.",
)
def dev(smoke: bool, timeout_s: float, replicas: int) -> None:
    """The whole system on this machine, with a demo deployment of the sample model.

    Uses the PostgreSQL and Redis that MODELFLEET_DATABASE_URL and MODELFLEET_REDIS_URL
    name, if set (and says so); throwaway servers for those that are not.
    """
    # SIGTERM unwinds like Ctrl-C, so every child and server is stopped either way; SIGINT
    # explicitly, since a shell script starting dev in the background ignores it for us.
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)
    with reported_failures("modelfleet dev"), dev_system.running_system(say=click.echo) as system:
        if smoke:
            try:
                timings = smoke_check.smoke(system, timeout_s, click.echo)
            except AssertionError as error:
                raise click.ClickException(f"smoke failed: {error}") from None
            click.echo(
                f"smoke passed: first answer {timings['first_answer_s']:.1f}s, "
                f"recovered {timings['recovered_s']:.1f}s"
            )
            return
        demo = system.demo(replicas)
        for line in system.addresses(os.environ):
            click.echo(line)
        click.echo("try it once the demo is ready (Ctrl-C stops everything):")
        click.echo(
            f'  curl -d \'{{"prompt": "hi"}}\' {system.proxy_url}/e/{demo.id}/v1/completions'
        )
        _live_view(system)
        click.echo("stopping every process modelfleet dev started ...")


def _live_view(system: dev_system.DevSystem) -> None:
    """The view until SIGINT or SIGTERM, which it looks for between two reads: raised in
    the middle of a query, the interrupt left a connection that failed its own cleanup, and
    that error replaced the stop (`test_a_stop_during_a_read_lets_the_read_finish`)."""
    stopped = threading.Event()
    for signum in (signal.SIGINT, signal.SIGTERM):
        # set from a thread: a handler may run while this thread holds the event's lock
        signal.signal(signum, lambda _signum, _frame: threading.Thread(target=stopped.set).start())
    engine = create_database_engine(system.env["MODELFLEET_DATABASE_URL"], pool_size=1)
    reports, runs = Reports(engine=engine), PostgresPhaseStore(engine=engine)
    live = Live(refresh_per_second=2)
    try:
        with live:
            while not stopped.is_set():
                live.update(_view(system, reports, runs))
                stopped.wait(VIEW_REFRESH_S)
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, signal.SIG_IGN)  # a second stop would leave orphans
        engine.dispose()
        if not live.console.is_terminal:
            live.console.line()  # piped, the last frame ends without a line break


def _interrupt(_signum: int, _frame: object) -> None:
    raise KeyboardInterrupt


def _view(system: dev_system.DevSystem, reports: Reports, runs: PostgresPhaseStore) -> Group:
    """Deployments, routes and the last run of each phase, in 80 columns (ids whole)."""
    restarts = Table.grid()
    for process in system.processes:
        if process.restarts:
            restarts.add_row(as_text(
                f"{process.name} exited (last code {process.last_exit_code}) and was "
                f"restarted {process.restarts} times; see {process.log_path}"
            ))  # fmt: skip
    deployments = Table("deployment", "lifecycle", "ready", "reason", title="deployments",
                        box=box.SIMPLE_HEAD, title_justify="left")  # fmt: skip
    for d in reports.deployments():
        row = with_rollout(d)
        deployments.add_row(
            as_text(d["name"]), d["lifecycle"], row["ready"], as_text(row["reason"])
        )
    routes = Table("route", "status", "session", "port", title="routes", box=box.SIMPLE_HEAD,
                   title_justify="left")  # fmt: skip
    for r in reports.routes():
        if r["status"] != "terminated":
            routes.add_row(str(r["id"]), r["status"], r["session_status"] or "",
                           str(r["port"] or ""))  # fmt: skip
    phases = Table("phase", "state", "items", "errors", "secs", title="last runs",
                   box=box.SIMPLE_HEAD, title_justify="left")  # fmt: skip
    for run in runs.latest_run_per_phase():
        phases.add_row(run.phase, run.state.value, str(run.item_count),
                       str(run.summary.counts.error), f"{run.duration_s or 0:.2f}")  # fmt: skip
    return Group(restarts, deployments, routes, phases)

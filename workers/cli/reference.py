"""`modelfleet runner | prober | proxy | dev`: the reference pieces and the one-command demo."""

from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path
from typing import TextIO

import click
from rich import box
from rich.console import Group
from rich.live import Live
from rich.table import Table

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.reports import Reports
from workers.adapters.redis_client import create_redis_client
from workers.adapters.redis_discovery import RedisServiceDiscovery
from workers.adapters.redis_health import RedisHealthStore
from workers.adapters.redis_keys import RedisKeys
from workers.adapters.redis_metrics import RedisMetricsStore
from workers.cli.deployments import with_rollout
from workers.cli.output import as_text
from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, bad_input, log_level_option, main, reported_failures
from workers.inputs import token_problem
from workers.reference import dev as dev_system
from workers.reference.collector import MetricsCollector
from workers.reference.prober import HealthProber
from workers.reference.proxy import DevProxy, serve
from workers.reference.runner import SessionRunner

VIEW_REFRESH_S = 1.0


@main.command()
@click.option("--interval-s", type=FiniteFloat(min=0.05), default=0.5, show_default=True)
@log_level_option
@click.option(
    "--grace-s",
    type=FiniteFloat(min=0),
    default=5.0,
    show_default=True,
    help="Seconds between SIGTERM and SIGKILL when a session is stopped.",
)
@click.option(
    "--log-dir", type=click.Path(file_okay=False), help="Keep each session's output here."
)
@click.option(
    "--name",
    default=socket.gethostname(),
    show_default="this host's name",
    help="This runner's name; it looks after the sessions it claimed under it.",
)
@click.option(
    "--advertise-host",
    default="127.0.0.1",
    show_default=True,
    help="The host recorded for sessions, which others reach them by.",
)
@click.pass_obj
def runner(
    cli: CliContext,
    interval_s: float,
    grace_s: float,
    log_dir: str | None,
    name: str,
    advertise_host: str,
) -> None:
    """Run sessions as local processes (the `sessions` table contract)."""
    SessionRunner(
        engine=cli.engine,
        name=name,
        host=advertise_host,
        grace_s=grace_s,
        log_dir=Path(log_dir) if log_dir else None,
    ).run_forever(interval_s)


@main.command()
@click.option("--interval-s", type=FiniteFloat(min=0.05), default=0.5, show_default=True)
@log_level_option
@click.pass_obj
def prober(cli: CliContext, interval_s: float) -> None:
    """Probe every running route's health path and write readiness into Redis."""
    client = create_redis_client(cli.settings.redis_url)
    store = RedisHealthStore(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
    HealthProber(engine=cli.engine, health_store=store).run_forever(interval_s)


@main.command()
@click.option("--interval-s", type=FiniteFloat(min=0.1), default=2.0, show_default=True)
@log_level_option
@click.pass_obj
def collector(cli: CliContext, interval_s: float) -> None:
    """Scrape healthy routes' /metrics into the autoscaling metric keys in Redis."""
    client = create_redis_client(cli.settings.redis_url)
    store = RedisMetricsStore(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
    MetricsCollector(engine=cli.engine, metrics=store).run_forever(interval_s)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=10200, show_default=True)
@click.option(
    "--token-file",
    type=click.File("r"),
    help="File holding the API token the controller must send (else MODELFLEET_PROXY_TOKEN).",
)
# Kept for old scripts; a token on the command line is readable in /proc by any user.
@click.option("--token", envvar="MODELFLEET_PROXY_TOKEN", hidden=True)
@click.option("--public-url", help="Base of the URLs handed out [http://HOST:PORT].")
@log_level_option
@click.pass_obj
def proxy(
    cli: CliContext,
    host: str,
    port: int,
    token_file: TextIO | None,
    token: str | None,
    public_url: str | None,
) -> None:
    """A dev app proxy: registers endpoints and forwards to their healthy routes.

    Its API token comes from MODELFLEET_PROXY_TOKEN or --token-file, never argv.
    """
    if token_file is not None:
        token = token_file.read().strip()
    if token is None:
        bad_input("MODELFLEET_PROXY_TOKEN", "set it, or give --token-file")
    if (problem := token_problem(token)) is not None:
        bad_input("MODELFLEET_PROXY_TOKEN", problem)
    client = create_redis_client(cli.settings.redis_url)
    discovery = RedisServiceDiscovery(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
    proxied = DevProxy(
        discovery=discovery, token=token, public_url=public_url or f"http://{host}:{port}"
    )
    with reported_failures("proxy"):  # e.g. the port is taken
        serve(proxied, host=host, port=port)


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
                timings = dev_system.smoke(system, timeout_s, click.echo)
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
        try:
            _live_view(system)
        except KeyboardInterrupt:
            signal.signal(signal.SIGINT, signal.SIG_IGN)  # a second Ctrl-C would leave orphans
            click.echo("stopping every process modelfleet dev started ...")


def _live_view(system: dev_system.DevSystem) -> None:
    engine = create_database_engine(system.env["MODELFLEET_DATABASE_URL"], pool_size=1)
    reports, runs = Reports(engine=engine), PostgresPhaseStore(engine=engine)
    live = Live(refresh_per_second=2)
    try:
        with live:
            while True:
                live.update(_view(system, reports, runs))
                time.sleep(VIEW_REFRESH_S)
    finally:
        engine.dispose()
        if not live.console.is_terminal:
            live.console.line()  # piped, the last frame ends without a line break


def _interrupt(signum: int, frame: object) -> None:
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

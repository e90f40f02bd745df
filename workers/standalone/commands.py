"""`modelfleet runner | prober | collector | proxy`: the standalone components.

What a user without Backend.AI runs in production beside the controller: the host
agent on each machine, the health prober, the metrics collector and the proxy in
the request path. Each speaks the contract Backend.AI's own component does.
"""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Any

import click

from workers.adapters.postgres.engine import create_agent_engine
from workers.adapters.redis.activity import RedisRequestActivity
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.hosts import RedisProbeSignals
from workers.adapters.redis.keys import RedisKeys
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, bad_input, log_level_option, main, reported_failures
from workers.inputs import host_name_problem, token_problem
from workers.standalone.collector import MetricsCollector
from workers.standalone.gpus import Declared
from workers.standalone.heartbeat import Heartbeat
from workers.standalone.prober import HealthProber
from workers.standalone.proxy.server import ProxyFactory, serve
from workers.standalone.runner import SessionRunner


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
    default=socket.gethostname().lower(),
    show_default="this host's name",
    help="This host's name: its agent registers it, and runs the sessions placed on it.",
)
@click.option(
    "--advertise-host",
    default="127.0.0.1",
    show_default=True,
    help="The host recorded for sessions, which others reach them by.",
)
@click.option(
    "--slots",
    type=click.IntRange(min=0),
    default=0,
    show_default=True,
    help="The most sessions this host may run; 0: no limit.",
)
@click.option(
    "--gpus",
    type=click.IntRange(min=1, max=64),
    envvar="MODELFLEET_RUNNER_GPUS",
    help="Declare this many identical GPUs (else they are read from nvidia-smi, if any).",
)
@click.option(
    "--gpu-memory-gib",
    type=FiniteFloat(min=0.1),
    envvar="MODELFLEET_RUNNER_GPU_MEMORY_GIB",
    help="The memory of each declared GPU, in GiB (with --gpus).",
)
@click.option(
    "--gpu-model",
    envvar="MODELFLEET_RUNNER_GPU_MODEL",
    help="The model name of the declared GPUs (with --gpus).",
)
@click.pass_obj
def runner(cli: CliContext, /, **options: Any) -> None:
    """The host agent: register this host, keep it alive, run the sessions placed on it.

    Heartbeats every MODELFLEET_HOST_HEARTBEAT_S; the controller declares the host
    lost after MODELFLEET_HOST_LOST_AFTER_S without one.
    """
    name = options["name"]
    if (problem := host_name_problem(name)) is not None:
        bad_input("--name", problem)
    declared = _declared_gpus(options)
    engine = create_agent_engine(cli.settings.database_url)
    heartbeat = Heartbeat(
        engine=engine,
        name=name,
        every_s=cli.settings.hosts.heartbeat_s,
        redis_client=create_redis_client(cli.settings.redis_url),
        keys=RedisKeys(cli.settings.redis_key_prefix),
    )
    SessionRunner(
        engine=engine,
        name=name,
        host=options["advertise_host"],
        grace_s=options["grace_s"],
        log_dir=Path(options["log_dir"]) if options["log_dir"] else None,
        slots=options["slots"],
        declared=declared,
        heartbeat=heartbeat,
    ).run_forever(options["interval_s"])


def _declared_gpus(options: dict[str, Any]) -> Declared | None:
    """--gpus N --gpu-memory-gib X [--gpu-model NAME], all or none of the first two."""
    count, memory_gib, model = options["gpus"], options["gpu_memory_gib"], options["gpu_model"]
    if count is None:
        if memory_gib is not None or model is not None:
            bad_input("--gpus", "needed with --gpu-memory-gib and --gpu-model")
        return None
    if memory_gib is None:
        bad_input("--gpu-memory-gib", "needed with --gpus: each GPU's memory in GiB")
    return Declared(count, memory_gib, model or "declared GPU")


@main.command()
@click.option("--interval-s", type=FiniteFloat(min=0.05), default=0.5, show_default=True)
@click.option(
    "--name",
    default=socket.gethostname().lower(),
    show_default="this host's name",
    help="This prober's name, for its heartbeat (give two probers on one machine two).",
)
@log_level_option
@click.pass_obj
def prober(cli: CliContext, interval_s: float, name: str) -> None:
    """Probe every running route's health path and write readiness into Redis."""
    if (problem := host_name_problem(name)) is not None:
        bad_input("--name", problem)
    client = create_redis_client(cli.settings.redis_url)
    keys = RedisKeys(cli.settings.redis_key_prefix)
    HealthProber(
        engine=cli.engine,
        health_store=RedisHealthStore(
            client=client, keys=keys, ttl_s=cli.settings.health_record_ttl_s
        ),
        signals=RedisProbeSignals(client=client, keys=keys),
        name=name,
    ).run_forever(interval_s)


@main.command()
@click.option("--interval-s", type=FiniteFloat(min=0.1), default=2.0, show_default=True)
@log_level_option
@click.pass_obj
def collector(cli: CliContext, interval_s: float) -> None:
    """Scrape healthy routes' /metrics into the autoscaling metric keys in Redis."""
    client = create_redis_client(cli.settings.redis_url)
    store = RedisMetricsStore(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
    activity = RedisRequestActivity(client=client, keys=RedisKeys(cli.settings.redis_key_prefix))
    MetricsCollector(engine=cli.engine, metrics=store, activity=activity).run_forever(interval_s)


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
@click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=1,
    show_default=True,
    help="Processes sharing the port (SO_REUSEPORT), each with its own event loop.",
)
@log_level_option
@click.pass_obj
def proxy(cli: CliContext, /, **options: Any) -> None:
    """The modelfleet proxy: the app-proxy v2 registration API, and the request path.

    Forwards /e/{endpoint}/... to the endpoint's replicas by their weights, from a
    routing table kept in memory; counts every request (/metrics, and Redis for the
    controller). Its API token comes from MODELFLEET_PROXY_TOKEN or --token-file,
    never argv.
    """
    token = options["token"]
    if options["token_file"] is not None:
        token = options["token_file"].read().strip()
    if token is None:
        bad_input("MODELFLEET_PROXY_TOKEN", "set it, or give --token-file")
    if (problem := token_problem(token)) is not None:
        bad_input("MODELFLEET_PROXY_TOKEN", problem)
    host, port = options["host"], options["port"]
    factory = ProxyFactory.of(cli.settings, token, options["public_url"] or f"http://{host}:{port}")
    with reported_failures("proxy"):  # e.g. the port is taken
        serve(factory, host=host, port=port, workers=options["workers"])

"""`modelfleet dev`: the whole system on this machine, and `--smoke`, its headless check.

Without MODELFLEET_DATABASE_URL / MODELFLEET_REDIS_URL in the environment,
throwaway PostgreSQL and Redis start from the PyPI wheels. Every piece then
runs as its own child process: worker, beat, Flower, runner, prober, metrics
collector, proxy and the service-discovery endpoint. A demo deployment of the sample model is
created. Leaving stops every child, every session process and both servers.
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
import shutil
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from beat_schedule import SCHEDULED_INTERVALS_S
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine, transaction
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.rows import deployment_from_row
from workers.adapters.postgres.schema import deployments, sessions
from workers.config import interval_variable
from workers.devtools.processes import Process, celery, modelfleet, stop_all
from workers.devtools.stores import check_reachable, stores
from workers.devtools.throwaway_servers import (
    create_database,
    free_port,
)
from workers.domain import DeploymentInfo, HealthCheckConfig, ModelRevision, ResourceRequest
from workers.standalone.process_identity import ProcessIdentity, is_running

log = logging.getLogger(__name__)

DEMO_GROUP = "demo"
SAMPLE_MODEL_COMMAND = "python -m workers.devtools.model_server"
DEMO_DEPLOYMENT = "demo-echo"
FAST_INTERVAL_S = "1"
SUPERVISE_EVERY_S = 1.0  # how often a dead child is noticed and started again
STOP_GRACE_S = 3.0  # all children together, after SIGTERM, before SIGKILL (Ctrl-C in < 5 s)
DEMO_REPLICAS = 2
# What the CLI needs to reach this run's stores; those `dev` chose are printed as an export.
STORE_VARIABLES = (
    "MODELFLEET_DATABASE_URL",
    "MODELFLEET_REDIS_URL",
    "MODELFLEET_BROKER_URL",
    "MODELFLEET_RESULT_BACKEND",
)
DEMO_HEALTH = HealthCheckConfig(
    path="/health", interval_s=1.0, max_retries=2, initial_delay_s=5.0, timeout_s=2.0
)


@dataclass(frozen=True)
class SampleModel:
    """How the sample model behaves: each completion's time, its loading time, and what
    each replica needs where it runs."""

    latency_s: float = 0.05
    startup_s: float = 0.0
    resources: ResourceRequest = field(default_factory=ResourceRequest)

    def environ(self, name: str) -> dict[str, str]:
        return {"MODEL_NAME": name, "MODEL_LATENCY_S": f"{self.latency_s:g}",
                "MODEL_STARTUP_S": f"{self.startup_s:g}"}  # fmt: skip


@dataclass
class DevSystem:
    folder: Path
    env: dict[str, str]
    engine: sa.Engine
    proxy_url: str
    flower_url: str
    sd_url: str = ""  # Prometheus HTTP service discovery
    # The dev proxy's API token, new for every run; children get it from the environment.
    proxy_token: str = field(default_factory=lambda: secrets.token_urlsafe(24), repr=False)
    # Its runner's name: at exit, only the sessions that runner started are stopped.
    runner_name: str = field(default_factory=lambda: f"dev-{secrets.token_hex(4)}")
    owns_database: bool = True  # False: MODELFLEET_DATABASE_URL named someone else's
    created: list[uuid.UUID] = field(default_factory=list)  # deployments this run made
    processes: list[Process] = field(default_factory=list)

    def addresses(self, environ: Mapping[str, str]) -> list[str]:
        """What a person needs to reach this run: every address, Flower's login as it
        really is, and the `export` that points the CLI at these stores."""
        auth = environ.get("FLOWER_BASIC_AUTH")
        login = (
            f"user {auth.split(':', 1)[0]}; password from FLOWER_BASIC_AUTH"
            if auth
            else "admin:admin"
        )
        lines = [
            f"app proxy   {self.proxy_url}",
            f"discovery   {self.sd_url}",
            f"flower      {self.flower_url} ({login})",
            f"logs        {self.folder}",
        ]
        chosen = [f"{name}={self.env[name]}" for name in STORE_VARIABLES if name not in environ]
        if chosen:
            lines.append("point the CLI here (another terminal):")
            lines.append("  export " + " ".join(chosen))
        return lines

    def start(self, name: str, argv: list[str], **extra: str) -> None:
        self.processes.append(Process(name, argv, {**self.env, **extra}, self.folder))

    def restart_dead(self) -> list[Process]:
        """Every child that exited is started again (a worker killed by a Redis restart)."""
        restarted = [process for process in self.processes if process.restart_if_dead()]
        for process in restarted:
            log.warning(
                "%s exited with %s; restarted (%d times so far); its last words: %s",
                process.name,
                process.last_exit_code,
                process.restarts,
                " | ".join(process.tail(4).splitlines()[:-1]),
            )
        return restarted

    def demo(self, replicas: int = DEMO_REPLICAS) -> DeploymentInfo:
        """The demo deployment: made by this run, or the live one an earlier run left."""
        try:
            return self.sample_deployment(DEMO_DEPLOYMENT, replicas, model=SampleModel(latency_s=0))
        except sa.exc.IntegrityError:  # a live demo exists: use that one
            return _live_demo(self.engine)

    def sample_deployment(
        self,
        name: str,
        replicas: int,
        *,
        model: SampleModel | None = None,
        drain_s: float = 10.0,
        health: HealthCheckConfig = DEMO_HEALTH,
        scale_to_zero_after_s: float | None = None,
    ) -> DeploymentInfo:
        """A deployment of the sample model in the demo group, pointed at this run's proxy."""
        catalog = Catalog(engine=self.engine)
        try:
            catalog.create_scaling_group(
                DEMO_GROUP, app_proxy_addr=self.proxy_url, app_proxy_api_token=self.proxy_token
            )
        except sa.exc.IntegrityError:  # kept from an earlier run: point it at this run's proxy
            catalog.point_at_app_proxy(DEMO_GROUP, addr=self.proxy_url, api_token=self.proxy_token)
        revision = ModelRevision(
            image="sample-model",
            startup_command=SAMPLE_MODEL_COMMAND,
            environ=(model or SampleModel()).environ(name),
            health_check=health,
            resources=(model or SampleModel()).resources.to_resources(),
        )
        deployment = DeploymentInfo(uuid.uuid4(), name, DEMO_GROUP, replicas, revision,
                                    drain_s=drain_s,
                                    scale_to_zero_after_s=scale_to_zero_after_s)  # fmt: skip
        created = catalog.create_deployment(deployment)
        self.created.append(created.id)
        return created


def isolated_environ(servers_prefix: str = "MODELFLEET_BENCH_") -> dict[str, str]:
    """This process's environment for a `running_system` of its own: a new database on the
    server {servers_prefix}DATABASE_URL names, the Redis {servers_prefix}REDIS_URL names with a
    key prefix of its own (else throwaway servers for either)."""
    environ = {
        k: v
        for k, v in os.environ.items()
        if k not in {"MODELFLEET_DATABASE_URL", "MODELFLEET_REDIS_URL"}
    }
    if server := os.environ.get(f"{servers_prefix}DATABASE_URL"):
        name = f"modelfleet_run_{uuid.uuid4().hex[:8]}"
        environ["MODELFLEET_DATABASE_URL"] = create_database(server, name)
    if redis_url := os.environ.get(f"{servers_prefix}REDIS_URL"):
        environ["MODELFLEET_REDIS_URL"] = redis_url
    environ["MODELFLEET_REDIS_KEY_PREFIX"] = f"run-{uuid.uuid4().hex[:8]}:"
    return environ


@contextlib.contextmanager
def running_system(
    environ: Mapping[str, str] = os.environ,
    *,
    fast: bool = True,
    say: Callable[[str], None] = lambda _: None,
) -> Iterator[DevSystem]:
    """Servers (configured or throwaway), migration, and every process; all stopped on exit.

    The folder with every process's log is removed afterwards, unless leaving
    raised an error (a failed smoke run): then it is kept and named for the operator.
    """
    check_reachable(environ.get("MODELFLEET_DATABASE_URL"), environ.get("MODELFLEET_REDIS_URL"))
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-dev-"))
    failed = False
    try:
        with _system_in(folder, environ, fast, say) as system:
            yield system
    except Exception:
        failed = True
        log.error("logs of every process are kept in %s", folder)
        raise
    finally:
        if not failed:  # a normal end, Ctrl-C or SIGTERM: nothing is left behind
            shutil.rmtree(folder, ignore_errors=True)
            say(f"logs removed ({folder})")


@contextlib.contextmanager
def _system_in(
    folder: Path, environ: Mapping[str, str], fast: bool, say: Callable[[str], None]
) -> Iterator[DevSystem]:
    with stores(environ, say) as (database_url, redis_url):
        engine = create_database_engine(database_url)
        upgrade_to_head(engine)
        proxy_port, sd_port, flower_port = free_port(), free_port(), free_port()
        system = DevSystem(
            folder,
            system_environ(environ, database_url, redis_url, fast=fast),
            engine,
            proxy_url=f"http://127.0.0.1:{proxy_port}",
            flower_url=f"http://127.0.0.1:{flower_port}",
            sd_url=f"http://127.0.0.1:{sd_port}/metrics/service_discovery",
            owns_database="MODELFLEET_DATABASE_URL" not in environ,
        )
        stop_supervising = threading.Event()
        supervisor = threading.Thread(
            target=_supervise, args=(system, stop_supervising), name="supervisor", daemon=True
        )
        try:
            _start_all(system, proxy_port, sd_port, flower_port)
            supervisor.start()
            yield system
        finally:
            stop_supervising.set()
            if supervisor.is_alive():
                supervisor.join(timeout=10)
            stop_all(list(reversed(system.processes)), STOP_GRACE_S, say)
            say(f"sessions: {stop_sessions(engine, system.runner_name)} stopped")
            if not system.owns_database:
                _retire(engine, system.created)
                say(f"deployments this run made: {len(system.created)} destroyed")
            engine.dispose()


def system_environ(
    environ: Mapping[str, str], database_url: str, redis_url: str, *, fast: bool
) -> dict[str, str]:
    """Every child's environment: these stores (Redis the broker too, unless one is
    configured), and with `fast` every phase each second."""
    return {
        **environ,
        "MODELFLEET_DATABASE_URL": database_url,
        "MODELFLEET_REDIS_URL": redis_url,
        "MODELFLEET_BROKER_URL": environ.get("MODELFLEET_BROKER_URL", redis_url),
        "MODELFLEET_RESULT_BACKEND": environ.get("MODELFLEET_RESULT_BACKEND", redis_url),
        **({interval_variable(p): FAST_INTERVAL_S for p in SCHEDULED_INTERVALS_S} if fast else {}),
    }


def _supervise(system: DevSystem, stop: threading.Event) -> None:
    while not stop.wait(SUPERVISE_EVERY_S):
        system.restart_dead()


def _start_all(system: DevSystem, proxy_port: int, sd_port: int, flower_port: int) -> None:
    system.start(
        "flower",
        celery("flower", f"--port={flower_port}", "--address=127.0.0.1"),
        FLOWER_BASIC_AUTH=system.env.get("FLOWER_BASIC_AUTH", "admin:admin"),
    )
    start_controller(system, proxy_port=proxy_port, sd_port=sd_port)
    system.start(
        "runner",
        modelfleet(
            "runner", f"--name={system.runner_name}", f"--log-dir={system.folder / 'sessions'}"
        ),
    )


def start_controller(
    system: DevSystem, *, proxy_port: int, sd_port: int, proxy_host: str = "127.0.0.1"
) -> None:
    """Everything but the hosts' agents: a worker, beat, the prober, the metrics collector,
    the proxy (on `proxy_host`) and the service-discovery endpoint."""
    system.start("worker", celery("worker", "--loglevel=INFO", "--concurrency=2"))
    system.start("beat", celery("beat", "--loglevel=INFO", f"--schedule={system.folder / 'beat'}"))
    system.start("prober", modelfleet("prober"))
    system.start("collector", modelfleet("collector", "--interval-s=1"))
    system.start(
        "proxy",
        modelfleet("proxy", f"--host={proxy_host}", f"--port={proxy_port}"),
        MODELFLEET_PROXY_TOKEN=system.proxy_token,
    )
    system.start("service-discovery", modelfleet("service-discovery", "serve", f"--port={sd_port}"))


def stop_sessions(engine: sa.Engine, runner_name: str) -> int:
    """The session processes this run's runner started are stopped (they outlive the
    runner), each only if its recorded identity still names it; sessions of any other
    runner on the same database are not touched."""
    ours = sessions.c.runner == runner_name
    try:
        with transaction(engine) as conn:
            rows = conn.execute(
                sa.select(sessions.c.pid, sessions.c.process_started_ticks, sessions.c.boot_id)
                .where(ours, sessions.c.pid.is_not(None),
                       sessions.c.status.in_(["RUNNING", "TERMINATING"]))
            ).all()  # fmt: skip
            stopped = [row.pid for row in rows if _still_its(row)]
            for pid in stopped:
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, 9)
            conn.execute(
                sessions.update()
                .where(ours, sessions.c.status.in_(["RUNNING", "TERMINATING", "PREPARING"]))
                .values(status="TERMINATED", terminated_at=sa.func.now())
            )
        return len(stopped)
    except Exception:  # stopping goes on: the other steps must still run
        log.exception("could not stop the sessions of runner %s", runner_name)
        return 0


def _still_its(row: Any) -> bool:
    if row.process_started_ticks is None:
        return False
    return is_running(ProcessIdentity(row.pid, row.process_started_ticks, row.boot_id or ""))


def _retire(engine: sa.Engine, deployment_ids: list[uuid.UUID]) -> None:
    """Deployments this run made in a database it did not create go with it."""
    catalog = Catalog(engine=engine)
    for deployment_id in deployment_ids:
        try:
            catalog.retire_deployment(deployment_id, "modelfleet dev stopped")
        except Exception:  # stopping goes on: the other steps must still run
            log.exception("could not retire deployment %s", deployment_id)


def _live_demo(engine: sa.Engine) -> DeploymentInfo:
    with transaction(engine) as conn:
        row = (
            conn.execute(
                sa.select(deployments).where(
                    deployments.c.name == DEMO_DEPLOYMENT, deployments.c.lifecycle != "destroyed"
                )
            )
            .mappings()
            .one()
        )
    return deployment_from_row(row)

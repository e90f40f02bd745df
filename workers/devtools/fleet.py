"""A fleet of hosts on this one machine, for the host-loss tests and `bench/host_loss.py`.

Each host is an agent (`modelfleet runner`) with an address of its own, and the sessions
it starts; the first may run a Celery worker too (losing that host loses a worker). The
controller (beat, a worker, the prober, the proxy, service discovery) and the stores run
outside every host. Two kinds of hosts:

- `namespaces=True` (root): each host is a network namespace on a bridge of its own
  (`namespaces.bridged_hosts`); PostgreSQL and Redis are throwaway servers listening on
  the bridge. Killing a host is SIGKILL to every process in its namespace; cutting it
  off sets its link down, its processes alive.
- `namespaces=False` (anyone): each host is an address of 127.0.0.0/8 on the configured
  or throwaway stores. Killing is SIGKILL to its processes and its sessions; cutting it
  off is SIGSTOP to them all (a frozen machine: the closest a process can come).

With `own_stores`, PostgreSQL and Redis are throwaway servers the fleet owns
(`Fleet.postgres`, `Fleet.redis`), so a test can stop, start and restart them: the
faults of the control plane (`workers.devtools.control_plane`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import sqlalchemy as sa

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import sessions
from workers.devtools import dev
from workers.devtools.namespaces import NetworkHost, bridged_hosts
from workers.devtools.processes import Process, celery, modelfleet, stop_all
from workers.devtools.stores import stores
from workers.devtools.throwaway_servers import (
    ThrowawayPostgres,
    ThrowawayRedis,
    free_port,
    start_postgres,
    start_redis,
)

LIVE = ("PREPARING", "RUNNING", "TERMINATING")


@dataclass
class FleetHost:
    name: str
    address: str
    system: dev.DevSystem
    network: NetworkHost | None = None  # None: an address of 127.0.0.0/8
    with_worker: bool = False
    processes: list[Process] = field(default_factory=list)
    _frozen: list[int] = field(default_factory=list)  # process groups a cut stopped

    def start(self) -> None:
        """The agent (and the worker), as a machine's boot would start them."""
        self._run("runner", self._agent_argv())
        if self.with_worker:
            self._run("worker", celery("worker", "--loglevel=INFO", "--concurrency=2",
                                       f"--hostname={self.name}@%h"))  # fmt: skip

    def kill(self) -> None:
        """Every process of the host, SIGKILL: nothing of it says goodbye."""
        if self.network is not None:
            self.network.kill_all()
        else:
            for group in self._groups():
                _signal_group(group, signal.SIGKILL)
        for process in self.processes:
            process.popen.wait(timeout=10)

    def cut(self) -> None:
        """Cut off from the others, alive."""
        if self.network is not None:
            self.network.cut()
            return
        self._frozen = self._groups()
        for group in self._frozen:
            _signal_group(group, signal.SIGSTOP)

    def cut_from(self, address: str, ports: list[int]) -> None:
        """Cut off from those ports of `address` only (a store), the rest flowing."""
        assert self.network is not None, "a partial cut needs namespaces"
        self.network.cut_from(address, ports)

    def mend_ports(self) -> None:
        assert self.network is not None, "a partial cut needs namespaces"
        self.network.mend_ports()

    def mend(self) -> None:
        if self.network is not None:
            self.network.mend()
            return
        for group in self._frozen:
            _signal_group(group, signal.SIGCONT)
        self._frozen = []

    def stop(self) -> None:
        self.mend()
        self.kill()
        for process in self.processes:
            process.stop()
        dev.stop_sessions(self.system.engine, self.name)

    def restart_runner(self) -> None:
        """The agent stops (SIGTERM) and starts again; its sessions run on meanwhile."""
        [runner] = [p for p in self.processes if p.name == f"{self.name}-runner"]
        runner.stop()
        self.processes.remove(runner)
        self._run("runner", self._agent_argv())

    def _agent_argv(self) -> list[str]:
        return modelfleet("runner", f"--name={self.name}", f"--advertise-host={self.address}",
                          f"--log-dir={self.system.folder / self.name}")  # fmt: skip

    def _run(self, name: str, argv: list[str]) -> None:
        if self.network is not None:
            argv = self.network.argv(argv)
        process = Process(f"{self.name}-{name}", argv, self.system.env, self.system.folder)
        self.processes.append(process)

    def _groups(self) -> list[int]:
        """The host's process groups: its processes' and its sessions' (each in its own)."""
        with self.system.engine.connect() as conn:
            pids = conn.execute(
                sa.select(sessions.c.pid).where(
                    sessions.c.runner == self.name,
                    sessions.c.pid.is_not(None),
                    sessions.c.status.in_(LIVE),
                )
            ).scalars()
            session_groups = [pid for pid in pids if pid is not None]
        return [p.popen.pid for p in self.processes if p.popen.poll() is None] + session_groups


@dataclass
class Fleet:
    system: dev.DevSystem
    hosts: list[FleetHost]
    postgres: ThrowawayPostgres | None = None  # with `own_stores` (or namespaces)
    redis: ThrowawayRedis | None = None

    def host(self, name: str) -> FleetHost:
        [found] = [host for host in self.hosts if host.name == name]
        return found

    def processes(self, *names: str) -> list[Process]:
        """The controller's processes by name ("worker", "beat", "prober", ...) and the
        hosts' ("host-1-worker", "host-2-runner", ...)."""
        every = [*self.system.processes, *(p for h in self.hosts for p in h.processes)]
        return [p for p in every if p.name in names]

    @contextlib.contextmanager
    def frozen(self, *names: str) -> Iterator[None]:
        """The named processes stopped (SIGSTOP) meanwhile, and let go (SIGCONT) after."""
        groups = [p.popen.pid for p in self.processes(*names)]
        for group in groups:
            _signal_group(group, signal.SIGSTOP)
        try:
            yield
        finally:
            for group in groups:
                _signal_group(group, signal.SIGCONT)


@contextlib.contextmanager
def running_fleet(
    count: int = 3,
    *,
    namespaces: bool,
    environ: Mapping[str, str] = os.environ,
    fast: bool = True,
    say: Callable[[str], None] = lambda _: None,
    own_stores: bool = False,
) -> Iterator[Fleet]:
    """`count` hosts named host-1..host-N (a worker on host-1), and the controller."""
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-fleet-"))
    servers: tuple[ThrowawayPostgres, ThrowawayRedis] | tuple[None, None] = (None, None)
    try:
        with contextlib.ExitStack() as stack:
            if namespaces or own_stores:  # stores of its own (on the bridge: hosts reach it)
                environ = {k: v for k, v in environ.items() if k not in dev.STORE_VARIABLES}
            if namespaces:
                network = stack.enter_context(bridged_hosts(count))
                listen = network.address
                addresses = [host.address for host in network.hosts]
            else:
                listen = "127.0.0.1"
                addresses = [f"127.0.0.{11 + i}" for i in range(count)]
            if namespaces or own_stores:
                servers = _throwaway_stores(stack, listen)
                urls = (servers[0].url, servers[1].url)
            else:
                urls = stack.enter_context(stores(environ, say))
            system = _system(folder, environ, *urls, listen=listen, fast=fast)
            stack.callback(system.engine.dispose)
            stack.callback(stop_all, system.processes, dev.STOP_GRACE_S, say)
            hosts = [
                FleetHost(f"host-{i + 1}", address, system,
                          network.hosts[i] if namespaces else None, with_worker=i == 0)
                for i, address in enumerate(addresses)
            ]  # fmt: skip
            for host in hosts:
                stack.callback(host.stop)
                host.start()
            yield Fleet(system, hosts, *servers)
    except BaseException:
        say(f"logs of every process are kept in {folder}")
        raise
    shutil.rmtree(folder, ignore_errors=True)


def _throwaway_stores(
    stack: contextlib.ExitStack, listen: str
) -> tuple[ThrowawayPostgres, ThrowawayRedis]:
    postgres = start_postgres(host=listen)
    stack.callback(postgres.stop)
    redis_server = start_redis(host=listen)
    stack.callback(redis_server.stop)
    return postgres, redis_server


def _system(
    folder: Path, environ: Mapping[str, str], database_url: str, redis_url: str, *,
    listen: str, fast: bool,
) -> dev.DevSystem:  # fmt: skip
    engine = create_database_engine(database_url)
    upgrade_to_head(engine)
    proxy_port, sd_port = free_port(listen), free_port()
    system = dev.DevSystem(
        folder,
        dev.system_environ(environ, database_url, redis_url, fast=fast),
        engine,
        proxy_url=f"http://{listen}:{proxy_port}",
        flower_url="",
        sd_url=f"http://127.0.0.1:{sd_port}/metrics/service_discovery",
    )
    dev.start_controller(system, proxy_port=proxy_port, sd_port=sd_port, proxy_host=listen)
    return system


def _signal_group(group: int, sig: signal.Signals) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(group, sig)

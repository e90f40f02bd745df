"""Settings: every environment variable modelfleet reads, read once into a frozen tree.

`Settings.from_environ()` is called by the composition root and the CLI, never at
import. Each field has a default and a line in the README's configuration table;
`repr` masks passwords in URLs so a logged settings object leaks nothing.
"""

from __future__ import annotations

import math
import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from urllib.parse import urlsplit, urlunsplit

from beat_schedule import SCHEDULED_INTERVALS_S

INTERVAL_VARIABLE_PREFIX = "MODELFLEET_INTERVAL_"
LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR")


class SettingsError(ValueError):
    """An environment variable holds a value modelfleet cannot use."""


@dataclass(frozen=True)
class AppProxySettings:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    retries: int = 3  # on connection errors and 502/503/504 only
    backoff_s: float = 0.2


@dataclass(frozen=True)
class ServiceDiscoveryHttpSettings:
    host: str = "127.0.0.1"
    port: int = 9091


@dataclass(frozen=True)
class HostSettings:
    """The machines that run sessions: how often their agents say they live, and how long
    a silent one has before it is declared lost."""

    heartbeat_s: float = 2.0
    lost_after_s: float = 10.0
    # More than this share of the hosts (and at least 2) silent at once: none is given up.
    disruption_threshold: float = 0.55
    give_up_interval_s: float = 10.0  # at most one host given up this often


@dataclass(frozen=True)
class ProxySettings:
    """`modelfleet proxy`: the request path in front of the replicas."""

    connect_timeout_s: float = 1.0  # a frozen host's replica must not hold a request long
    # No byte back and none of the request acknowledged by the replica's machine for this
    # long: the path is dead, nothing was processed, the request goes elsewhere.
    dead_connection_s: float = 3.0
    forward_timeout_s: float = 300.0  # a whole answer (an LLM may generate for minutes)
    max_body_bytes: int = 10 * 1024 * 1024
    resync_s: float = 5.0  # a full read of service discovery, beside the change feed
    # Scale to zero: a request for a deployment at zero waits this long for a replica,
    hold_s: float = 300.0
    hold_max: int = 1000  # at most this many wait per deployment (per proxy process),
    hold_max_bytes: int = 256 * 1024 * 1024  # holding at most this many body bytes in all,
    wake_concurrency: int = 4  # and a fresh replica gets at most this many of them at once
    # Prefix-cache routing: prompts cut into blocks of this many characters, at most this
    # many blocks remembered per process, and a replica that holds a prefix gets its
    # request unless it has this many more in flight than the least loaded.
    prefix_block_chars: int = 256
    prefix_index_blocks: int = 100_000
    prefix_load_margin: int = 3


@dataclass(frozen=True)
class PhaseSettings:
    """How phases fan out and how long their pieces may take."""

    fanout_max_tasks: int = 256  # header tasks per chord; more items are grouped evenly
    deadline_s: float = 120.0  # lock TTL; the sweeper finishes a run still open after this
    task_soft_time_limit_s: float = 60.0  # 0 turns the soft limit off
    task_time_limit_s: float = 90.0  # the child running a task is killed after this
    visibility_timeout_s: float = 300.0  # an unacked message comes back after this
    item_retries: int = 3  # retries of a header task whose database or Redis is down
    run_retention_h: float = 48.0  # closed phase_runs rows older than this are deleted
    # A run with no progress for this long, whose unfinished tasks all sat on workers that
    # are gone, is finished from what arrived (the next run redoes the rest).
    stall_s: float = 10.0
    intervals_s: Mapping[str, float] = field(
        default_factory=lambda: MappingProxyType(dict(SCHEDULED_INTERVALS_S))
    )


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/modelfleet", repr=False
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_key_prefix: str = ""
    broker_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    result_backend: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    phases: PhaseSettings = field(default_factory=PhaseSettings)
    revision_history_limit: int = 10  # revisions kept per deployment, beyond current and deploying
    # A route's readiness record expires this long after its prober last wrote it (a
    # record gone is "unknown", never "unhealthy").
    health_record_ttl_s: float = 120.0
    # A session no agent started this long after it was asked for is given up and replaced
    # (a deployment may set its own: `--start-deadline-s`).
    session_start_deadline_s: float = 600.0
    max_replicas: int = 100  # the most replicas an operator may ask of one deployment
    # How much the long-running `modelfleet` processes (runner, prober, proxy, ...) log.
    log_level: str = "INFO"
    app_proxy: AppProxySettings = field(default_factory=AppProxySettings)
    service_discovery_http: ServiceDiscoveryHttpSettings = field(
        default_factory=ServiceDiscoveryHttpSettings
    )
    hosts: HostSettings = field(default_factory=HostSettings)
    proxy: ProxySettings = field(default_factory=ProxySettings)

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read `MODELFLEET_*` variables; unset ones keep their defaults."""
        reader = _Reader(environ)
        proxy, sd = AppProxySettings(), ServiceDiscoveryHttpSettings()
        return cls(
            database_url=reader.url("MODELFLEET_DATABASE_URL", cls.database_url, _POSTGRES),
            redis_url=reader.url("MODELFLEET_REDIS_URL", cls.redis_url, _REDIS),
            redis_key_prefix=reader.text("MODELFLEET_REDIS_KEY_PREFIX", cls.redis_key_prefix),
            broker_url=reader.url("MODELFLEET_BROKER_URL", cls.broker_url, _BROKERS),
            result_backend=reader.url("MODELFLEET_RESULT_BACKEND", cls.result_backend, _REDIS),
            phases=_phase_settings(reader, environ),
            max_replicas=int(reader.number("MODELFLEET_MAX_REPLICAS", cls.max_replicas)),
            health_record_ttl_s=max(
                1.0, reader.number("MODELFLEET_HEALTH_RECORD_TTL_S", cls.health_record_ttl_s)
            ),
            session_start_deadline_s=max(
                1.0,
                reader.number("MODELFLEET_SESSION_START_DEADLINE_S", cls.session_start_deadline_s),
            ),
            log_level=reader.choice("MODELFLEET_LOG_LEVEL", cls.log_level, LOG_LEVELS),
            revision_history_limit=max(
                1,
                int(reader.number("MODELFLEET_REVISION_HISTORY_LIMIT", cls.revision_history_limit)),
            ),
            app_proxy=AppProxySettings(
                connect_timeout_s=reader.number(
                    "MODELFLEET_APP_PROXY_CONNECT_TIMEOUT_S", proxy.connect_timeout_s
                ),
                read_timeout_s=reader.number(
                    "MODELFLEET_APP_PROXY_READ_TIMEOUT_S", proxy.read_timeout_s
                ),
                retries=int(reader.number("MODELFLEET_APP_PROXY_RETRIES", proxy.retries)),
                backoff_s=reader.number("MODELFLEET_APP_PROXY_BACKOFF_S", proxy.backoff_s),
            ),
            service_discovery_http=ServiceDiscoveryHttpSettings(
                host=reader.text("MODELFLEET_SD_HTTP_HOST", sd.host),
                port=_port(reader.number("MODELFLEET_SD_HTTP_PORT", sd.port)),
            ),
            hosts=_host_settings(reader),
            proxy=_proxy_settings(reader),
        )

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["database_url"] = masked_url(self.database_url)
        shown["redis_url"] = masked_url(self.redis_url)
        shown["broker_url"] = masked_url(self.broker_url)
        shown["result_backend"] = masked_url(self.result_backend)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def _host_settings(reader: _Reader) -> HostSettings:
    defaults = HostSettings()
    settings = HostSettings(
        heartbeat_s=reader.number("MODELFLEET_HOST_HEARTBEAT_S", defaults.heartbeat_s),
        lost_after_s=reader.number("MODELFLEET_HOST_LOST_AFTER_S", defaults.lost_after_s),
        disruption_threshold=reader.number(
            "MODELFLEET_HOST_DISRUPTION_THRESHOLD", defaults.disruption_threshold
        ),
        give_up_interval_s=reader.number(
            "MODELFLEET_HOST_GIVE_UP_INTERVAL_S", defaults.give_up_interval_s
        ),
    )
    if settings.heartbeat_s <= 0:
        raise SettingsError("MODELFLEET_HOST_HEARTBEAT_S: must be > 0")
    if not 0 < settings.disruption_threshold <= 1:
        raise SettingsError(
            "MODELFLEET_HOST_DISRUPTION_THRESHOLD: must be a share of the hosts, > 0 and <= 1 "
            f"(1: always give silent hosts up one by one), got {settings.disruption_threshold:g}"
        )
    if settings.lost_after_s < 2 * settings.heartbeat_s:
        raise SettingsError(
            "MODELFLEET_HOST_LOST_AFTER_S: must be at least twice MODELFLEET_HOST_HEARTBEAT_S "
            f"({settings.heartbeat_s:g}), or a host would be lost between two heartbeats"
        )
    return settings


def _proxy_settings(reader: _Reader) -> ProxySettings:
    defaults = ProxySettings()
    settings = ProxySettings(
        connect_timeout_s=reader.number(
            "MODELFLEET_PROXY_CONNECT_TIMEOUT_S", defaults.connect_timeout_s
        ),
        forward_timeout_s=reader.number(
            "MODELFLEET_PROXY_FORWARD_TIMEOUT_S", defaults.forward_timeout_s
        ),
        dead_connection_s=reader.number(
            "MODELFLEET_PROXY_DEAD_CONNECTION_S", defaults.dead_connection_s
        ),
        max_body_bytes=int(
            reader.number("MODELFLEET_PROXY_MAX_BODY_BYTES", defaults.max_body_bytes)
        ),
        resync_s=reader.number("MODELFLEET_PROXY_RESYNC_S", defaults.resync_s),
        hold_s=reader.number("MODELFLEET_PROXY_HOLD_S", defaults.hold_s),
        hold_max=int(reader.number("MODELFLEET_PROXY_HOLD_MAX", defaults.hold_max)),
        hold_max_bytes=int(
            reader.number("MODELFLEET_PROXY_HOLD_MAX_BYTES", defaults.hold_max_bytes)
        ),
        wake_concurrency=int(
            reader.number("MODELFLEET_PROXY_WAKE_CONCURRENCY", defaults.wake_concurrency)
        ),
        prefix_block_chars=int(
            reader.number("MODELFLEET_PROXY_PREFIX_BLOCK_CHARS", defaults.prefix_block_chars)
        ),
        prefix_index_blocks=int(
            reader.number("MODELFLEET_PROXY_PREFIX_INDEX_BLOCKS", defaults.prefix_index_blocks)
        ),
        prefix_load_margin=int(
            reader.number("MODELFLEET_PROXY_PREFIX_LOAD_MARGIN", defaults.prefix_load_margin)
        ),
    )
    positive = {
        "CONNECT_TIMEOUT_S": settings.connect_timeout_s,
        "FORWARD_TIMEOUT_S": settings.forward_timeout_s,
        "DEAD_CONNECTION_S": settings.dead_connection_s,
        "RESYNC_S": settings.resync_s,
        "MAX_BODY_BYTES": settings.max_body_bytes,
        "HOLD_S": settings.hold_s,
        "HOLD_MAX": settings.hold_max,
        "HOLD_MAX_BYTES": settings.hold_max_bytes,
        "WAKE_CONCURRENCY": settings.wake_concurrency,
        "PREFIX_BLOCK_CHARS": settings.prefix_block_chars,
        "PREFIX_INDEX_BLOCKS": settings.prefix_index_blocks,
        "PREFIX_LOAD_MARGIN": settings.prefix_load_margin + 1,  # 0 allowed
    }
    for name, value in positive.items():
        if value <= 0:
            raise SettingsError(f"MODELFLEET_PROXY_{name}: must be > 0")
    return settings


def interval_variable(phase: str) -> str:
    """The variable overriding an interval: routes.health_check -> ..._ROUTES_HEALTH_CHECK_S."""
    return f"{INTERVAL_VARIABLE_PREFIX}{phase.replace('.', '_').upper()}_S"


def _phase_settings(reader: _Reader, environ: Mapping[str, str]) -> PhaseSettings:
    defaults = PhaseSettings()
    settings = PhaseSettings(
        fanout_max_tasks=int(
            reader.number("MODELFLEET_FANOUT_MAX_TASKS", defaults.fanout_max_tasks)
        ),
        deadline_s=reader.number("MODELFLEET_PHASE_DEADLINE_S", defaults.deadline_s),
        task_soft_time_limit_s=reader.number(
            "MODELFLEET_TASK_SOFT_TIME_LIMIT_S", defaults.task_soft_time_limit_s
        ),
        task_time_limit_s=reader.number("MODELFLEET_TASK_TIME_LIMIT_S", defaults.task_time_limit_s),
        visibility_timeout_s=reader.number(
            "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S", defaults.visibility_timeout_s
        ),
        item_retries=int(reader.number("MODELFLEET_ITEM_RETRIES", defaults.item_retries)),
        run_retention_h=reader.number("MODELFLEET_PHASE_RUN_RETENTION_H", defaults.run_retention_h),
        stall_s=reader.number("MODELFLEET_PHASE_STALL_S", defaults.stall_s),
        intervals_s=MappingProxyType(_intervals_s(reader, environ)),
    )
    if settings.fanout_max_tasks < 1:
        raise SettingsError("MODELFLEET_FANOUT_MAX_TASKS: must be >= 1")
    if settings.visibility_timeout_s <= settings.task_time_limit_s:
        raise SettingsError(
            "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S: must exceed MODELFLEET_TASK_TIME_LIMIT_S "
            f"({settings.task_time_limit_s:g}), or running tasks are delivered twice"
        )
    return settings


def _intervals_s(reader: _Reader, environ: Mapping[str, str]) -> dict[str, float]:
    by_variable = {interval_variable(phase): phase for phase in SCHEDULED_INTERVALS_S}
    unknown = sorted(
        name
        for name in environ
        if name.startswith(INTERVAL_VARIABLE_PREFIX) and name not in by_variable
    )
    if unknown:
        raise SettingsError(
            f"{unknown[0]}: no such phase; allowed: {', '.join(sorted(by_variable))}"
        )
    intervals = {}
    for variable, phase in by_variable.items():
        interval_s = reader.number(variable, SCHEDULED_INTERVALS_S[phase])
        if interval_s <= 0:
            raise SettingsError(f"{variable}: must be > 0, got {interval_s:g}")
        intervals[phase] = interval_s
    return intervals


def _port(number: float) -> int:
    if not 0 < number <= 65535 or number != int(number):
        raise SettingsError(f"MODELFLEET_SD_HTTP_PORT: must be a port, 1..65535, got {number:g}")
    return int(number)


def masked_url(url: str) -> str:
    """`url` with its password replaced by ***, fit for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user_info, _, host = parts.netloc.rpartition("@")
        user = user_info.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:  # not a URL at all: show nothing of it
        return "<unparsable url>"


_POSTGRES = ("postgresql+psycopg", "postgresql")
_REDIS = ("redis", "rediss", "unix", "redis+socket")
_BROKERS = (*_REDIS, "amqp", "amqps", "pyamqp")


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(name, "").strip()
        return value or default

    def choice(self, name: str, default: str, allowed: tuple[str, ...]) -> str:
        value = self.text(name, default).upper()
        if value not in allowed:
            raise SettingsError(f"{name}: {value!r} is not one of {', '.join(allowed)}")
        return value

    def url(self, name: str, default: str, schemes: tuple[str, ...]) -> str:
        """A URL whose scheme is one of `schemes`; the message never shows the URL itself
        (it may hold a password)."""
        value = self.text(name, default)
        scheme, separator, rest = value.partition("://")
        if not separator or not rest:
            raise SettingsError(f"{name}: not a URL; expected {schemes[0]}://...")
        if scheme not in schemes:
            raise SettingsError(f"{name}: scheme {scheme!r} is not one of {', '.join(schemes)}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}: {raw!r} is not a number") from None
        if not math.isfinite(value):
            raise SettingsError(f"{name}: must be a finite number, got {raw!r}")
        if value < 0:
            raise SettingsError(f"{name}: must be >= 0, got {raw!r}")
        return value

"""The Celery app: `celery -A workers worker | beat | flower`.

Configuration comes only from the environment (`Settings`), read when Celery
first needs it, not at import. Adapters (engine, Redis pool, HTTP sessions)
are built once per worker process, after the fork, and closed when it exits.
The task modules live in the `tasks` package, which the worker imports at
start (`include`), before forking.
"""

from __future__ import annotations

import gc
import logging
import os
import sys
import time
from typing import Any

from celery import Celery
from celery.signals import (
    after_setup_logger,
    after_setup_task_logger,
    before_task_publish,
    worker_init,
    worker_process_init,
    worker_process_shutdown,
)

from beat_schedule import beat_schedule
from workers.adapters.kombu_redis import TRANSPORT_PATH
from workers.composition import Adapters, build_adapters
from workers.config import Settings, SettingsError
from workers.log_context import LOG_FORMAT, PhaseContextFilter

RESULT_EXPIRES_S = 600  # chord parts are read within seconds; keep Redis small
# Stamped on every message by its sender (unix s, its clock): the queue-lag metric's start.
SENT_AT_HEADER = "modelfleet_sent_at"
UNACKED_RESTORE_INTERVAL_S = 10

log = logging.getLogger(__name__)


class ModelfleetCelery(Celery):  # type: ignore[misc]  # Celery ships without type hints
    """A Celery app that owns the settings and this process's adapters."""

    def __init__(self, settings: Settings | None = None) -> None:
        super().__init__("modelfleet")
        self._settings = settings
        self._adapters: Adapters | None = None
        self._adapters_pid: int | None = None
        # Processes of this worker's pool (set at worker start; children inherit it):
        # how many header tasks keep it busy.
        self.worker_processes = os.cpu_count() or 2
        self.add_defaults(lambda: celery_config(self.settings))

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            try:
                self._settings = Settings.from_environ()
            except SettingsError as error:
                if _run_by_the_celery_command():  # worker, beat, flower, call: one line, exit 2
                    sys.stderr.write(f"Error: {error}\n")
                    sys.stderr.flush()
                    os._exit(2)  # Celery would turn SystemExit into its own traceback
                raise
        return self._settings

    @property
    def adapters(self) -> Adapters:
        """This process's adapters, built on first use after a fork, then reused."""
        if self._adapters is None or self._adapters_pid != os.getpid():
            self._adapters = build_adapters(self.settings)
            self._adapters_pid = os.getpid()
        return self._adapters

    def close_adapters(self) -> None:
        if self._adapters is not None and self._adapters_pid == os.getpid():
            self._adapters.close()
        self._adapters = None


def _run_by_the_celery_command() -> bool:
    """Whether this process is `celery ...` (the script, or `python -m celery`)."""
    main = sys.modules.get("__main__")
    spec = getattr(main, "__spec__", None)
    started_as = os.path.basename(sys.argv[0]) if sys.argv else ""
    return started_as == "celery" or (spec is not None and spec.name.startswith("celery"))


def celery_config(settings: Settings) -> dict[str, Any]:
    """Celery's settings for at-least-once work; see the README's configuration table."""
    phases = settings.phases
    prefix = {"global_keyprefix": settings.redis_key_prefix} if settings.redis_key_prefix else {}
    return {
        "broker_url": settings.broker_url,
        **_redis_transport(settings.broker_url),
        "result_backend": settings.result_backend,
        "broker_transport_options": {
            "visibility_timeout": phases.visibility_timeout_s,
            # Look for a dead worker's unacked messages every 10 s, not every 100 s.
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            **prefix,
        },
        "result_backend_transport_options": prefix,
        "broker_connection_retry_on_startup": True,
        "task_serializer": "json",
        "result_serializer": "json",
        "accept_content": ["json"],
        "result_accept_content": ["json"],
        "task_acks_late": True,
        "task_reject_on_worker_lost": True,
        # A late-acked task still running when the broker connection drops cannot be acked
        # on the new connection: cancel it (it is delivered again) instead of acking on the
        # closed channel, which once killed the worker after a Redis restart (kombu#582).
        "worker_cancel_long_running_tasks_on_connection_loss": True,
        "worker_prefetch_multiplier": 1,
        "task_time_limit": phases.task_time_limit_s,
        "task_soft_time_limit": phases.task_soft_time_limit_s or None,
        "result_expires": RESULT_EXPIRES_S,
        "timezone": "UTC",
        "include": ["tasks"],
        "beat_schedule": beat_schedule(phases.intervals_s),
        "worker_log_format": LOG_FORMAT,
        "worker_task_log_format": LOG_FORMAT,
    }


def _redis_transport(broker_url: str) -> dict[str, str]:
    """On a Redis broker, kombu's transport with the closed-connection ack worked around."""
    if broker_url.split("://", 1)[0] == "redis":
        return {"broker_transport": TRANSPORT_PATH}
    return {}


app = ModelfleetCelery()


@worker_init.connect
def _remember_pool_size(sender: Any, **_: Any) -> None:
    if isinstance(sender.concurrency, int) and sender.concurrency > 0:
        app.worker_processes = sender.concurrency


@before_task_publish.connect
def _stamp_sent_at(headers: dict[str, Any] | None = None, **_: Any) -> None:
    if headers is not None:
        headers.setdefault(SENT_AT_HEADER, time.time())


@worker_process_init.connect
def _build_adapters(**_: Any) -> None:
    app.adapters  # noqa: B018  # build now, so the first task does not pay for it
    # What is loaded by now (modules, the app, the adapters) lives as long as the process:
    # out of the garbage collector's way. A run of 10,000 items allocates enough for full
    # collections, which otherwise scan all of it every time (bench/phase_throughput.py:
    # the callback's status read of 10,000 routes took 30-144 ms, 32-44 ms frozen).
    gc.freeze()


@worker_process_shutdown.connect
def _close_adapters(**_: Any) -> None:
    app.close_adapters()


@after_setup_logger.connect
@after_setup_task_logger.connect
def _stamp_phase_context(logger: logging.Logger, **_: Any) -> None:
    for handler in logger.handlers:
        handler.addFilter(PhaseContextFilter())

"""Which phase run a log line belongs to, stamped on every record while the run's code runs.

The phase tasks enter `phase_context(...)`; a `PhaseContextFilter` on the
worker's handlers copies it into each record as `%(phase_context)s`, so lines
from the executors and adapters carry the phase and run id without passing
them around.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from uuid import UUID

LOG_FORMAT = "%(asctime)s %(levelname)s [%(processName)s] %(phase_context)s%(name)s: %(message)s"

_current: ContextVar[str] = ContextVar("modelfleet_phase_context", default="")


@contextmanager
def phase_context(phase: str, run_id: UUID | str | None = None) -> Iterator[None]:
    label = f"phase={phase} run={run_id} " if run_id is not None else f"phase={phase} "
    token = _current.set(label)
    try:
        yield
    finally:
        _current.reset(token)


class PhaseContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.phase_context = _current.get()
        return True

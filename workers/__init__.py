"""modelfleet's worker code: domain, ports, executors, adapters, and the Celery app.

`celery -A workers ...` finds the app as `workers.app`; it is imported only then,
so the CLI and the tests of the inner layers never load Celery.
"""

from __future__ import annotations

from typing import Any


def __getattr__(name: str) -> Any:
    if name in {"app", "celery"}:
        from workers.app import app  # noqa: PLC0415  # deferred: see the module docstring

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")

"""modelfleet's worker code: domain, ports, executors, adapters, and the Celery app.

The app lives in `workers.celery` and the package re-exports it as `app` and
`celery_app` (Celery's convention). `celery -A workers ...` and `from workers import app`
both find it; it is imported only then, so the CLI and the tests of the inner layers
never load Celery. No submodule is named `app` or `celery_app`, so importing one never
shadows the attribute.
"""

from __future__ import annotations

from typing import Any

__all__ = ["app", "celery_app"]


def __getattr__(name: str) -> Any:
    if name in {"app", "celery_app"}:
        from workers.celery import app  # noqa: PLC0415  # deferred: see the module docstring

        return app
    raise AttributeError(f"module 'workers' has no attribute {name!r}")

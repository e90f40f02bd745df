"""Options that make a revision, shared by `deployment create` and `deployment update`:
the health check and the model server's environment."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import click

from workers.cli.params import FiniteFloat
from workers.cli.root import bad_input
from workers.domain import HealthCheckConfig

HEALTH_OPTIONS = (
    ("health_initial_delay_s", "initial_delay_s", "--health-initial-delay-s",
     "Seconds after the start before failed probes count."),
    ("health_interval_s", "interval_s", "--health-interval-s",
     "Seconds between probes once healthy (a starting replica is probed every second)."),
    ("health_timeout_s", "timeout_s", "--health-timeout-s", "Seconds a probe may take."),
    ("health_max_retries", "max_retries", "--health-max-retries",
     "Failed probes in a row before unhealthy."),
)  # fmt: skip


def health_options(*, with_defaults: bool) -> Callable[[Any], Any]:
    """--health-initial-delay-s, --health-interval-s, --health-timeout-s and
    --health-max-retries: Backend.AI's defaults on create, none (unchanged) on update."""
    defaults = HealthCheckConfig()

    def decorate(command: Any) -> Any:
        for option, field, flag, help_text in reversed(HEALTH_OPTIONS):
            kind = click.IntRange(min=1) if field == "max_retries" else FiniteFloat(min=0)
            if field in {"interval_s", "timeout_s"}:
                kind = FiniteFloat(min=0.1, max=3600)
            default = getattr(defaults, field) if with_defaults else None
            command = click.option(flag, option, type=kind, default=default,
                                   show_default=with_defaults, help=help_text)(command)  # fmt: skip
        return command

    return decorate


def health_check(path: str, options: dict[str, Any]) -> HealthCheckConfig:
    """The health check the options ask for (each given option, else the default)."""
    given = {field: options[opt] for opt, field, _, _ in HEALTH_OPTIONS if options[opt] is not None}
    return HealthCheckConfig(path=path, **given)


def environ_pairs(pairs: tuple[str, ...]) -> dict[str, str]:
    """NAME=VALUE options as a mapping; bad input names --env."""
    environ = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or not name:
            bad_input("--env", f"{pair!r} is not NAME=VALUE")
        environ[name] = value
    return environ

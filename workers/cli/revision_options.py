"""Options that make a revision, shared by `deployment create` and `deployment update`:
the health check, the model server's environment and the resources each replica needs."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import click

from workers.cli.params import FiniteFloat
from workers.cli.root import bad_input
from workers.domain import HealthCheckConfig, ResourceRequest

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


RESOURCE_OPTIONS = (
    ("gpus", "--gpus", click.IntRange(min=0, max=64), "Whole GPUs each replica needs."),
    ("gpu_memory_gib", "--gpu-memory-gib", FiniteFloat(min=0.1),
     "Instead of whole GPUs: GiB of one GPU each replica needs (a share; never two GPUs)."),
    ("gpu_model", "--gpu-model", str, "Only GPUs whose model name contains this (A100)."),
    ("cpus", "--cpus", FiniteFloat(min=0), "CPU cores each replica needs."),
    ("memory_gib", "--memory-gib", FiniteFloat(min=0), "Memory each replica needs, in GiB."),
)  # fmt: skip


def resource_options(command: Any) -> Any:
    """--gpus, --gpu-memory-gib, --gpu-model, --cpus and --memory-gib (none given: unchanged
    on update, nothing asked on create)."""
    for option, flag, kind, help_text in reversed(RESOURCE_OPTIONS):
        command = click.option(flag, option, type=kind, help=help_text)(command)
    return command


def resource_request(options: dict[str, Any], current: ResourceRequest | None = None) -> (
    ResourceRequest | None
):  # fmt: skip
    """The request the options make of `current` (None when they change nothing): whole
    GPUs replace a share and a share replaces whole GPUs; both at once is bad input."""
    given = {option: options[option] for option, *_ in RESOURCE_OPTIONS
             if options[option] is not None}  # fmt: skip
    if not given:
        return None
    if options["gpus"] and options["gpu_memory_gib"] is not None:
        bad_input("--gpu-memory-gib", "a share of one GPU, or --gpus whole ones: not both")
    if options["gpu_model"] is not None and not options["gpu_model"].strip():
        bad_input("--gpu-model", "a model name, like A100")
    request = current or ResourceRequest()
    if options["gpus"] is not None:
        given["gpu_memory_gib"] = None
    if options["gpu_memory_gib"] is not None:
        given["gpus"] = 0
    return replace(request, **given)

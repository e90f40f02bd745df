"""The traffic autoscaler's options, shared by `deployment create`, `update` and `set`:
`--autoscale concurrency|rps|queue|off --target X [--min-replicas N] [--max-replicas M]
[--stable-window-s S] [--panic-window-s P]`, checked whole before anything is written."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import click

from workers.cli.params import FiniteFloat
from workers.cli.root import CliContext, bad_input
from workers.domain import AutoscaleMode, TargetTracking

MODES = [mode.value for mode in AutoscaleMode]
DEFAULTS = TargetTracking(AutoscaleMode.OFF, target=1.0)
_OPTIONS = (
    ("autoscale", "--autoscale", click.Choice(MODES),
     "Track this per replica: requests in flight (concurrency), requests per second (rps), "
     "or what the engines hold, running and waiting (queue); off: the operator's count."),
    ("target", "--target", FiniteFloat(min=0.001), "The value per replica to keep."),
    ("min_replicas", "--min-replicas", click.IntRange(min=0),
     "Fewest replicas (0: scales to zero without traffic, wakes on request). Default 1."),
    ("max_replicas", "--max-replicas", click.IntRange(min=1), "Most replicas. Default 10."),
    ("stable_window_s", "--stable-window-s", FiniteFloat(min=1, max=900),
     "Seconds the count settles over (and down only this long after an increase). "
     "Default 60."),
    ("panic_window_s", "--panic-window-s", FiniteFloat(min=1, max=900),
     "Seconds a burst is seen over: twice the capacity there scales up at once. Default 6."),
)  # fmt: skip


def autoscale_options(command: Any) -> Any:
    for name, flag, kind, help_text in reversed(_OPTIONS):
        command = click.option(flag, name, type=kind, help=help_text)(command)
    return command


def asked(options: Mapping[str, Any]) -> bool:
    return any(options[name] is not None for name, *_ in _OPTIONS)


def tracking(
    cli: CliContext, options: Mapping[str, Any], current: TargetTracking | None = None,
    rules: int = 0,
) -> TargetTracking | None:  # fmt: skip
    """The autoscaler the options make of `current` (None: off); bad input names its
    option. `rules`: the deployment's metric rules (one or the other, not both)."""
    base = current or DEFAULTS
    given = {name: options[name] for name, *_ in _OPTIONS if options[name] is not None}
    mode = AutoscaleMode(given.pop("autoscale", base.mode.value))
    if mode is AutoscaleMode.OFF:
        return None
    if rules:
        said = f"the deployment has {rules} autoscaling rule(s); remove them first"
        bad_input("--autoscale", f"{said} (autoscaling-rule remove): one or the other")
    if current is None and "target" not in given:
        bad_input("--target", f"needed with --autoscale {mode.value}: the value per replica")
    made = TargetTracking(mode, **{"target": base.target, "min_replicas": base.min_replicas,
                                   "max_replicas": base.max_replicas,
                                   "stable_window_s": base.stable_window_s,
                                   "panic_window_s": base.panic_window_s, **given})  # fmt: skip
    _check(cli, made)
    return made


def _check(cli: CliContext, made: TargetTracking) -> None:
    if made.min_replicas > made.max_replicas:
        bad_input("--min-replicas", f"{made.min_replicas} is over --max-replicas "
                  f"({made.max_replicas})")  # fmt: skip
    if made.max_replicas > cli.settings.max_replicas:
        bad_input("--max-replicas", f"{made.max_replicas} is over MODELFLEET_MAX_REPLICAS "
                  f"({cli.settings.max_replicas})")  # fmt: skip
    if made.panic_window_s > made.stable_window_s:
        bad_input("--panic-window-s", f"{made.panic_window_s:g} is over --stable-window-s "
                  f"({made.stable_window_s:g})")  # fmt: skip

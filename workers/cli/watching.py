"""`--watch`: redraw a view in place every few seconds until Ctrl-C, like `watch` or
`kubectl get -w`. Without a terminal (piped), each refresh is printed below the last."""

from __future__ import annotations

import sys
import time
from collections.abc import Callable

import click

from workers.cli.params import FiniteFloat

watch_option = click.option(
    "--watch",
    "-w",
    type=FiniteFloat(min=0.5, max=3600),
    is_flag=False,
    flag_value=2.0,
    default=None,
    help="Refresh every N seconds (2 when given alone) until Ctrl-C.",
)


def show_or_watch(draw: Callable[[], None], every_s: float | None, *, as_json: bool) -> None:
    """Draw once, or with --watch every `every_s` seconds, clearing a terminal before each
    redraw. Ctrl-C ends a watch quietly, exit 0."""
    if every_s is None:
        draw()
        return
    if as_json:
        raise click.UsageError("--watch: not with --json (run the command again to poll)")
    try:
        while True:
            if sys.stdout.isatty():
                click.clear()
            draw()
            time.sleep(every_s)
    except KeyboardInterrupt:
        return

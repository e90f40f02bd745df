"""`--wait` and `--timeout-s`: the one way a command waits (`wait_until`), and the one line
when it gives up."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

import click
from rich.console import Console

from workers.cli.output import as_text

POLL_INTERVAL_S = 0.2
T = TypeVar("T")


class Deadline:
    """--timeout-s from now: the time left, and a pause that ends the command once it is spent."""

    def __init__(self, timeout_s: float) -> None:
        self.timeout_s = timeout_s
        self._ends_at = time.monotonic() + timeout_s

    def pause(self, still: str, hint: str = "", pause_s: float = POLL_INTERVAL_S) -> None:
        """Sleep `pause_s`, or exit 1 saying what is `still` true when the time is up."""
        if time.monotonic() + pause_s > self._ends_at:
            then = f"; {hint}" if hint else ""
            raise click.ClickException(f"{still} after {self.timeout_s:g} s (--timeout-s){then}")
        time.sleep(pause_s)


@contextmanager
def progress_line() -> Iterator[Callable[[str], None]]:
    """Show what a --wait is waiting for: a rich status line on a terminal, nothing when
    stderr is piped (a script reads only the result)."""
    console = Console(stderr=True)
    if not console.is_terminal:
        yield lambda text: None
        return
    with console.status("") as status:
        yield lambda text: status.update(as_text(text))


def wait_until(
    read: Callable[[], T],
    reached: Callable[[T], bool],
    deadline: Deadline,
    describe: Callable[[T], tuple[str, str]],
    pause_s: float = POLL_INTERVAL_S,
) -> T:
    """Read until `reached`, showing where it stands on a terminal; when the deadline
    passes, exit 1 with `describe(last)`: what is still true, and where it is."""
    with progress_line() as show:
        while True:
            value = read()
            if reached(value):
                return value
            still, where = describe(value)
            show(f"{still}: {where}" if where else still)
            deadline.pause(still, where, pause_s)

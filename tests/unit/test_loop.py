"""The reference daemons' loop: an outage is two lines and a back-off, not a traceback a pass."""

from __future__ import annotations

import logging

import pytest

from workers.errors import InfrastructureUnavailable
from workers.standalone.loop import MAX_BACKOFF_S, repeat


class _Stop(Exception):
    pass


def test_an_outage_logs_once_when_it_starts_and_once_when_it_ends_and_backs_off(
    caplog: pytest.LogCaptureFixture,
) -> None:
    outcomes = [None, *["down"] * 6, None, "bug", None]
    sleeps: list[float] = []

    def one_pass() -> None:
        outcome = outcomes.pop(0)
        if outcome == "down":
            raise InfrastructureUnavailable("redis unavailable: Connection refused")
        if outcome == "bug":
            raise ValueError("a bug")

    def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        if not outcomes:
            raise _Stop

    with caplog.at_level(logging.INFO), pytest.raises(_Stop):
        repeat("prober", one_pass, 0.5, sleep=sleep, clock=iter(range(100)).__next__)
    assert sleeps == [0.5, 1.0, 2.0, 4.0, 8.0, MAX_BACKOFF_S, MAX_BACKOFF_S, 0.5, 0.5, 0.5]
    lines = [r.getMessage() for r in caplog.records]
    assert lines[:3] == [
        "prober: started",
        "prober: redis unavailable: Connection refused; retrying with back-off until it is back",
        "prober: back after 1.0s (6 passes failed)",
    ]
    assert sum(1 for r in caplog.records if r.exc_info) == 1  # only the bug has a traceback

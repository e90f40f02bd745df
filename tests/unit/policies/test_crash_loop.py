"""Crash-loop back-off: the first exit is replaced at once, later ones wait longer."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from workers.policies.crash_loop import backoff_s, start_allowed_at


@pytest.mark.parametrize(
    ("exits", "wait_s"), [(0, 0), (1, 0), (2, 10), (3, 20), (4, 40), (6, 160), (7, 300), (50, 300)]
)
def test_each_exit_doubles_the_wait_up_to_five_minutes(exits: int, wait_s: float) -> None:
    assert backoff_s(exits) == wait_s


def test_the_wait_counts_from_the_latest_exit() -> None:
    last = datetime(2026, 11, 30, 12, 0, tzinfo=UTC)
    assert start_allowed_at(1, last) is None
    assert start_allowed_at(3, last) == last + timedelta(seconds=20)
    assert start_allowed_at(3, None) is None

"""Crash-loop back-off: how long a deployment whose sessions keep exiting waits to start another.

Like Kubernetes' CrashLoopBackOff: the first exit is replaced at once, then each
further exit within the window doubles the wait, from 10 s up to 5 minutes. A
deployment whose sessions stop exiting for the whole window starts over. The
route exists meanwhile (the replica count stays right); its session waits.
"""

from __future__ import annotations

from datetime import datetime, timedelta

FIRST_BACKOFF_S = 10.0
MAX_BACKOFF_S = 300.0
WINDOW_S = 600.0  # exits older than this are forgotten


def backoff_s(recent_exits: int) -> float:
    """The wait after the latest of `recent_exits` exits within the window."""
    if recent_exits <= 1:
        return 0.0
    return min(FIRST_BACKOFF_S * 2.0 ** (recent_exits - 2), MAX_BACKOFF_S)


def start_allowed_at(recent_exits: int, last_exit_at: datetime | None) -> datetime | None:
    """When the next session may start; None when it may start now (nothing to wait for)."""
    wait_s = backoff_s(recent_exits)
    if last_exit_at is None or wait_s == 0:
        return None
    return last_exit_at + timedelta(seconds=wait_s)

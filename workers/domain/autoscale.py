"""Target tracking as values: what a deployment asks of the autoscaler, what it observed,
and what it decided (the decision itself is `workers.policies.traffic_autoscaler`)."""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class AutoscaleMode(StrEnum):
    """What is tracked, per replica, against the target."""

    OFF = "off"
    CONCURRENCY = "concurrency"  # requests in flight at the proxies (held ones included)
    RPS = "rps"  # requests per second arriving at the proxies
    QUEUE = "queue"  # requests the engines hold: running plus waiting in their queues


UNITS = {
    AutoscaleMode.CONCURRENCY: "requests in flight",
    AutoscaleMode.RPS: "requests/s",
    AutoscaleMode.QUEUE: "requests held by the engines",
}


@dataclass(frozen=True)
class TargetTracking:
    """A deployment's autoscaler: keep `mode`'s value per replica at `target`."""

    mode: AutoscaleMode
    target: float
    min_replicas: int = 1
    max_replicas: int = 10
    stable_window_s: float = 60.0
    panic_window_s: float = 6.0
    panic_threshold: float = 2.0  # panic when the panic window asks this many times the ready


@dataclass(frozen=True)
class Observed:
    """A deployment's load as the autoscaler reads it: the mode's value for the whole
    deployment, averaged over the stable and the panic window, and over its last whole
    second (what a burst asks for before the panic window has filled)."""

    stable: float
    panic: float
    latest: float


@dataclass(frozen=True)
class Seen:
    """What one decision goes by: the load, the count asked for until now (`current`), the
    replicas serving (`ready`), the time (the store's clock, unix s) and for how long the
    windows have counted (since the setting, or the last wake)."""

    observed: Observed
    current: int
    ready: int
    now_s: float
    watched_for_s: float = float("inf")


@dataclass(frozen=True)
class TrafficLoad:
    """What the proxies saw of a deployment over its windows."""

    concurrency: Observed  # requests in flight, on average
    rps: Observed  # requests arrived per second


@dataclass(frozen=True)
class AutoscaleState:
    """What the autoscaler remembers between decisions (Redis clock, unix s)."""

    panic_since_s: float | None = None  # the last time the panic window asked for a panic
    scaled_up_s: float | None = None  # the last increase: no decrease a stable window after

    def to_json(self) -> dict[str, Any]:
        return {"panic_since_s": self.panic_since_s, "scaled_up_s": self.scaled_up_s}

    @classmethod
    def from_json(cls, data: dict[str, Any] | None) -> AutoscaleState:
        data = data or {}
        return cls(data.get("panic_since_s"), data.get("scaled_up_s"))


@dataclass(frozen=True)
class AutoscaleDecision:
    desired: int
    state: AutoscaleState
    panicking: bool
    said: str  # the inputs and the change: 'concurrency 17.6 over 6 s panic window, ...'
    value: float = 0.0  # what the decision went by (the panic or the stable window's)

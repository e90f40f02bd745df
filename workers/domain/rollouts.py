"""Rollouts as values (the step itself is planned in `workers.policies.rollouts`)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from enum import StrEnum
from typing import Any
from uuid import UUID

from workers.domain.entities import RouteData


class RolloutStrategy(StrEnum):
    ROLLING = "rolling"
    BLUE_GREEN = "blue-green"
    CANARY = "canary"


class RolloutOutcome(StrEnum):
    IN_PROGRESS = "in_progress"
    FINISHED = "finished"
    FAILED = "failed"


@dataclass(frozen=True)
class RolloutSpec:
    """How a rollout proceeds; counts or percentages of the desired replicas."""

    strategy: RolloutStrategy = RolloutStrategy.ROLLING
    max_surge: str = "25%"
    max_unavailable: str = "0"
    promote_delay_s: float = 0.0
    auto_promote: bool = True
    failure_threshold: int = 3
    progress_deadline_s: float = 600.0
    # Canary: the new revision's share of traffic at each step (percent, ascending, 1-99),
    # each held this long while its requests are judged.
    canary_steps: tuple[int, ...] = (10, 50)
    canary_interval_s: float = 60.0
    # Analysis by the requests (every strategy): the new revision fails when since its
    # step (a canary's) or its rollout began its 5xx-or-no-answer rate is over
    # `max_error_rate` once it has seen `min_requests`, or (when set) its p95 latency is
    # over this many times the old one's. Without `min_requests` it is not judged, and
    # holds (a deployment with no request at all in a minute rolls on health alone).
    max_error_rate: float = 0.05
    min_requests: int = 20
    max_p95_latency_ratio: float | None = None


@dataclass(frozen=True)
class RevisionFailures:
    """What went wrong with a revision's routes since its rollout began (for the reason
    of a rollback)."""

    count: int = 0  # routes of the revision that failed (each once)
    exit_codes: Mapping[int | None, int] = field(default_factory=dict)  # code -> sessions
    last_output: str = ""  # the last line an exited session wrote
    never_healthy: int = 0  # routes that never passed their health check in time
    budget_s: float | None = None  # the revision's health budget
    health_path: str | None = None
    probe_saw: str | None = None  # what the health check's last probe saw


@dataclass(frozen=True)
class TrafficCounts:
    """What the proxies counted of one revision's requests over some windows."""

    requests: int = 0
    failed: int = 0  # 5xx answers, and requests no replica answered
    within: Mapping[float, int] = field(default_factory=dict)  # bound (s) -> answered within

    @property
    def error_rate(self) -> float:
        return self.failed / self.requests if self.requests else 0.0

    @property
    def p95_s(self) -> float | None:
        """The smallest bucket bound within which 95 % were answered (None: no requests)."""
        if not self.requests:
            return None
        wanted = 0.95 * self.requests
        return next((b for b, n in sorted(self.within.items()) if n >= wanted), math.inf)


@dataclass(frozen=True)
class RolloutState:
    """What is true of one rollout now."""

    desired: int  # replicas asked for when the rollout began
    old_revision: int
    new_revision: int
    spec: RolloutSpec
    routes: Sequence[RouteData]  # the deployment's routes taking part (not draining or gone)
    failures: int = 0  # failures of the new revision since the rollout began
    elapsed_s: float = 0.0
    promoted: bool = False  # blue-green: traffic switched to the new routes
    promote_requested: bool = False  # blue-green: `deployment promote` was run
    all_new_healthy_for_s: float | None = None  # blue-green: since when all new are healthy
    evidence: str = ""  # what failed, for the reason of a rollback (exit codes, output)
    canary_step: int | None = None  # the canary step reached (None: not started)
    step_for_s: float = 0.0  # how long the canary has held its step
    # Since when the new revision's requests are judged (unix s): the canary step's start,
    # else the rollout's.
    judging_since_s: float | None = None
    # What the proxies counted of each revision's requests since then (by number).
    traffic: Mapping[int, TrafficCounts] = field(default_factory=dict)
    # The deployment got no request at all in the last minute: judged on health alone.
    quiet: bool = False
    steps_applied: int = 0  # when it was read: a step applies only if it is still that


@dataclass(frozen=True)
class CanaryPosition:
    """Where a canary is: its step (from 1) of `steps`, its share of the traffic, and how
    long it has held that step of the `hold_s` it must."""

    step: int
    steps: int
    share: int
    held_s: float
    hold_s: float


@dataclass(frozen=True)
class RolloutProgress:
    """Where a rollout stands, as a step saw it (stored in `deployments.rollout_progress`,
    read by `deployment list`, `--wait` and the dev view)."""

    revision: int
    desired: int
    new_healthy: int = 0
    new_total: int = 0
    old_total: int = 0
    # the live analysis: the new revision's requests since its step (or rollout) began
    requests: int = 0
    min_requests: int = 0
    error_rate: float = 0.0
    max_error_rate: float = 0.0
    quiet: bool = False  # no request at all in the last minute: judged on health alone
    canary: CanaryPosition | None = None

    def to_json(self) -> dict[str, Any]:
        """The stored form: flat, the canary's fields beside the rest, `quiet` only if so."""
        data: dict[str, Any] = {
            name: getattr(self, name) for name in _PROGRESS_FIELDS if name != "quiet"
        }
        if self.quiet:
            data["quiet"] = True
        if self.canary is not None:
            data.update({name: getattr(self.canary, name) for name in _CANARY_FIELDS})
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> RolloutProgress:
        """Read back what `to_json` wrote (a field it did not write takes its default)."""
        known = {name: data[name] for name in _PROGRESS_FIELDS if name in data}
        canary = None
        if all(name in data for name in _CANARY_FIELDS):
            canary = CanaryPosition(**{name: data[name] for name in _CANARY_FIELDS})
        return cls(**known, canary=canary)


_PROGRESS_FIELDS = tuple(f.name for f in fields(RolloutProgress) if f.name != "canary")
_CANARY_FIELDS = tuple(f.name for f in fields(CanaryPosition))


@dataclass(frozen=True)
class RolloutStep:
    outcome: RolloutOutcome = RolloutOutcome.IN_PROGRESS
    create: int = 0  # new routes of the new revision to start
    create_in_traffic: bool = True
    create_weight: float = 1.0  # their traffic ratio (a canary's start at 0)
    drain: tuple[UUID, ...] = ()  # routes to take out of traffic
    promote: bool = False  # switch traffic to the new routes now
    summary: str = ""  # for history: where the rollout stands, or why it failed
    progress: RolloutProgress | None = None  # where it stands, stored for the CLI
    weights: Mapping[UUID, float] = field(default_factory=dict)  # route -> its traffic ratio
    canary_step: int | None = None  # the canary step entered now (its clock restarts)
    again_in_s: float | None = None  # a wait that ends then (a canary's hold, a promote delay)

    @property
    def acts(self) -> bool:
        """Whether the step changes anything (worth a history row)."""
        moving = bool(self.create or self.drain or self.promote or self.canary_step is not None)
        return moving or self.outcome is not RolloutOutcome.IN_PROGRESS

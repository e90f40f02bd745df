"""Rollouts as values (the step itself is planned in `workers.rollouts`)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from uuid import UUID

from workers.domain.entities import RouteData


class RolloutStrategy(StrEnum):
    ROLLING = "rolling"
    BLUE_GREEN = "blue-green"


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


@dataclass(frozen=True)
class RolloutStep:
    outcome: RolloutOutcome = RolloutOutcome.IN_PROGRESS
    create: int = 0  # new routes of the new revision to start
    create_in_traffic: bool = True
    drain: tuple[UUID, ...] = ()  # routes to take out of traffic
    promote: bool = False  # switch traffic to the new routes now
    summary: str = ""  # for history: where the rollout stands, or why it failed
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def acts(self) -> bool:
        """Whether the step changes anything (worth a history row)."""
        moving = bool(self.create or self.drain or self.promote)
        return moving or self.outcome is not RolloutOutcome.IN_PROGRESS

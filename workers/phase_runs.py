"""Phase runs as values: outcome records and their counts.

A header task turns an executor's result into compact `Outcome` records, once
(JSON on the wire and in Redis); the chord callback, or the sweeper, derives the
transitions from them. Plain values only, like `workers.domain`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any
from uuid import UUID

from workers.domain import (
    DeploymentExecutionError,
    DeploymentExecutionResult,
    HostExecutionError,
    HostExecutionResult,
    OutcomeBucket,
    RouteExecutionError,
    RouteExecutionResult,
)

ERROR_SAMPLE_SIZE = 20  # error outcomes kept on a closed run for people to read


class PhaseRunState(StrEnum):
    RUNNING = "running"
    SUCCEEDED = "succeeded"  # the chord callback applied every outcome
    FAILED = "failed"  # a header task raised; nothing was applied
    RECOVERED = "recovered"  # the sweeper finished it from the outcomes stored in Redis


@dataclass(frozen=True)
class Outcome:
    """What happened to one route or deployment in one run."""

    id: UUID
    bucket: OutcomeBucket
    reason: str = ""
    detail: str = ""
    error_code: str | None = None
    again_in_s: float | None = None  # waiting: look again this soon (the phase knows)

    @property
    def says_why(self) -> bool:
        """An error, or a wait that says what it waits for: worth a history row."""
        return self.bucket is OutcomeBucket.ERROR or bool(self.reason)

    @property
    def bare(self) -> bool:
        """Its bucket says all there is (no reason, no time to look again)."""
        return not self.says_why and self.again_in_s is None

    @property
    def message(self) -> str:
        """What a history row says of it."""
        return f"{self.reason}: {self.detail}" if self.says_why else ""

    def to_json(self) -> dict[str, Any]:
        record: dict[str, Any] = {"id": str(self.id), "bucket": self.bucket.value}
        if self.says_why:
            record.update(reason=self.reason, detail=self.detail, error_code=self.error_code)
        if self.again_in_s is not None:
            record["again_in_s"] = self.again_in_s
        return record

    @classmethod
    def from_json(cls, record: Mapping[str, Any]) -> Outcome:
        return cls(
            id=UUID(record["id"]),
            bucket=OutcomeBucket(record["bucket"]),
            reason=record.get("reason", ""),
            detail=record.get("detail", ""),
            error_code=record.get("error_code"),
            again_in_s=record.get("again_in_s"),
        )


@dataclass(frozen=True)
class OutcomeCounts:
    success: int = 0
    error: int = 0
    stale: int = 0
    skipped: int = 0
    waiting: int = 0  # not done yet: the phase comes back to them
    missing: int = 0  # items no outcome was stored for (a recovered run)

    @classmethod
    def of(cls, outcomes: Iterable[Outcome], item_count: int) -> OutcomeCounts:
        by_bucket = Counter(outcome.bucket for outcome in outcomes)
        counted = sum(by_bucket.values())
        return cls(
            success=by_bucket[OutcomeBucket.SUCCESS],
            error=by_bucket[OutcomeBucket.ERROR],
            stale=by_bucket[OutcomeBucket.STALE],
            skipped=by_bucket[OutcomeBucket.SKIPPED],
            waiting=by_bucket[OutcomeBucket.WAITING],
            missing=max(item_count - counted, 0),
        )


@dataclass(frozen=True)
class RunSummary:
    """How a run ended: what is written to its row when it closes."""

    counts: OutcomeCounts = field(default_factory=OutcomeCounts)
    transition_count: int = 0
    error: str | None = None  # why a run failed
    error_samples: Sequence[Mapping[str, Any]] = ()


@dataclass(frozen=True)
class PhaseRun:
    """One run of one phase, as `phase_runs` records it."""

    id: UUID
    phase: str
    state: PhaseRunState
    started_at: datetime
    deadline_at: datetime
    item_count: int
    task_count: int
    lock_token: str = field(repr=False)
    finished_at: datetime | None = None
    duration_s: float | None = None
    summary: RunSummary = field(default_factory=RunSummary)


def error_samples(outcomes: Iterable[Outcome]) -> list[dict[str, Any]]:
    errors = (o.to_json() for o in outcomes if o.bucket is OutcomeBucket.ERROR)
    return [record for record, _ in zip(errors, range(ERROR_SAMPLE_SIZE), strict=False)]


def route_outcomes(result: RouteExecutionResult) -> list[Outcome]:
    """A route executor's result as outcome records, one per route."""
    return [
        *(Outcome(route.id, OutcomeBucket.SUCCESS) for route in result.successes),
        *(_said(e.route_info.id, OutcomeBucket.ERROR, e) for e in result.errors),
        *(Outcome(route.id, OutcomeBucket.STALE) for route in result.stale),
        *(_said(r.id, OutcomeBucket.WAITING, result.reasons.get(r.id)) for r in result.waiting),
    ]


def deployment_outcomes(result: DeploymentExecutionResult) -> list[Outcome]:
    """A deployment executor's result as outcome records, one per deployment."""
    return [
        *(_said(d.id, OutcomeBucket.SUCCESS, result.reasons.get(d.id)) for d in result.successes),
        *(_said(e.deployment_info.id, OutcomeBucket.ERROR, e) for e in result.errors),
        *(Outcome(d.id, OutcomeBucket.SKIPPED) for d in result.skipped),
        *(replace(_said(d.id, OutcomeBucket.WAITING, result.reasons.get(d.id)),
                  again_in_s=result.again_in_s.get(d.id)) for d in result.waiting),
    ]  # fmt: skip


def look_again_in_s(outcomes: Iterable[Outcome]) -> float | None:
    """The soonest any waiting item asked to be looked at again (None: none asked)."""
    return min((o.again_in_s for o in outcomes if o.again_in_s is not None), default=None)


def host_outcomes(result: HostExecutionResult) -> list[Outcome]:
    """A host executor's result as outcome records, one per host."""
    return [
        *(Outcome(h.id, OutcomeBucket.SUCCESS) for h in result.successes),
        *(_said(e.host_info.id, OutcomeBucket.ERROR, e) for e in result.errors),
        *(_said(h.id, OutcomeBucket.WAITING, result.reasons.get(h.id)) for h in result.waiting),
    ]


def _said(
    entity_id: UUID,
    bucket: OutcomeBucket,
    said: RouteExecutionError | DeploymentExecutionError | HostExecutionError | None,
) -> Outcome:
    if said is None:
        return Outcome(entity_id, bucket)
    return Outcome(entity_id, bucket, said.reason, said.error_detail, said.error_code)


@dataclass(frozen=True)
class RunProgress:
    """What Redis knows of an open run's header tasks (see `RedisRunProgress`)."""

    now_s: float
    last_progress_s: float | None  # a header task last started or ended then (None: none yet)
    claims: Mapping[str, str]  # header task id -> worker process, for tasks not yet ended
    live_workers: frozenset[str]
    store_started_s: float = 0.0  # when the Redis server started (a restart loses chords)

    def stalled(self, started_s: float, stall_s: float) -> bool:
        """Whether waiting can no longer bring outcomes.

        No task started or ended for `stall_s`, and none of the unfinished ones
        sits on a live worker process; or the run began before the Redis server
        that holds its chord started (Redis restarted: nothing of it is left).
        Tasks still queued can make a run look stalled under a long backlog;
        finishing it early costs only a redo, since every item task is
        idempotent and a closed run's late tasks do nothing.
        """
        if started_s < self.store_started_s - 1:
            return True  # its chord and queued tasks went with the Redis that restarted
        last_s = self.last_progress_s if self.last_progress_s is not None else started_s
        if self.now_s - last_s < stall_s:
            return False
        return not any(worker in self.live_workers for worker in self.claims.values())


# A cheap item (database and Redis work) costs ~0.1 ms; a Celery task ~8 ms. A task gets at
# least this many, so its own cost stays near a tenth of its work ...
MIN_ITEMS_PER_TASK = 1_000
# ... and at most this many, so no one task holds a run's whole memory (100,000 routes).
MAX_ITEMS_PER_TASK = 20_000


def task_count(items: int, *, whole_set: bool, remote: bool, processes: int, max_tasks: int) -> int:
    """How many header tasks a run of `items` gets.

    Cheap items: enough tasks to keep every worker process busy, none smaller than
    MIN_ITEMS_PER_TASK or larger than MAX_ITEMS_PER_TASK. Remote items (a call to the
    app proxy each, seconds when it is slow): one task per item, so a slow call never
    holds up the others. Never more than `max_tasks`; one for a whole-set phase.
    """
    if whole_set:
        return 1  # even with no items: a sync of nothing unpublishes everything
    if items == 0:
        return 0
    if remote:
        return min(items, max_tasks)
    enough = max(processes, math.ceil(items / MAX_ITEMS_PER_TASK))
    return max(1, min(math.ceil(items / MIN_ITEMS_PER_TASK), enough, max_tasks))

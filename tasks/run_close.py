"""Closing a run, the same for every phase: its outcomes' transitions applied with
their history and the run's counts in one transaction, then the lock released and
the follow-ups started. Called by the run done in the phase's own task, the chord's
callback and error callback (`tasks.runs`) and the sweeper (`tasks.phase_runs.sweep`).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from typing import Any
from uuid import UUID

from tasks.phase import AnyPhase
from workers.celery import app
from workers.composition import Adapters
from workers.domain import OutcomeBucket
from workers.executors.outcomes import unique_by_id
from workers.phase_runs import (
    Outcome,
    OutcomeCounts,
    PhaseRun,
    PhaseRunState,
    RunSummary,
    error_samples,
    look_again_in_s,
)

log = logging.getLogger(__name__)


def close_failed(phase: AnyPhase, adapters: Adapters, run_id: UUID, error: BaseException) -> None:
    """Close a run as failed: counts of what was stored, the error, no transitions."""
    stored = adapters.outcomes.load(run_id)
    with adapters.phase_store.transaction() as conn:
        run = adapters.phase_store.claim_running(conn, run_id)
        if run is None:
            return
        summary = RunSummary(
            counts=OutcomeCounts.of(stored, run.item_count),
            error=f"{type(error).__name__}: {error}",
            error_samples=error_samples(stored),
        )
        closed = adapters.phase_store.close_run(conn, run.id, PhaseRunState.FAILED, summary)
    _after_close(phase, adapters, closed, set())


def close_run(
    phase: AnyPhase,
    adapters: Adapters,
    run_id: UUID,
    outcomes: Sequence[Outcome],
    state: PhaseRunState,
    *,
    found: Mapping[UUID, Any] | None = None,
) -> PhaseRun | None:
    """Apply the outcomes' transitions and close the run, in one transaction.

    `found`: the items as this process loaded them to run them (a run done in the
    phase's own task); their statuses stand for the current ones instead of a
    second read of every item, as the guard re-reads, under lock, each row it
    changes. A callback has no rows: it reads the statuses now.

    Returns None when the run was closed already (a redelivered callback, or the
    sweeper first), or when outcomes are missing and the deadline has not passed:
    a late header task may still deliver them, and the sweeper closes the run then.
    """
    store = adapters.phase_store
    with store.transaction() as conn:
        run = store.claim_running(conn, run_id)
        if run is None:
            return None
        merged = _with_stored(adapters, run, outcomes)
        if len(merged) < run.item_count and state is PhaseRunState.SUCCEEDED:
            log.warning(
                "%d of %d outcomes arrived; the sweeper finishes this run",
                len(merged),
                run.item_count,
            )
            return None
        if found is None:
            found = phase.load_current(adapters, [o.id for o in merged], conn)
        changes = phase.transitions(merged, found)
        applied = set(phase.apply(adapters, changes, conn))
        summary = RunSummary(
            counts=OutcomeCounts.of(merged, run.item_count),
            transition_count=len(applied),
            error_samples=error_samples(merged),
        )
        closed = store.close_run(conn, run_id, state, summary)
    applied_buckets = {c.result for c in changes if c.entity_id in applied}
    _after_close(phase, adapters, closed, phase.follow_ups_after(applied_buckets, _buckets(merged)))
    _look_again(phase, adapters, look_again_in_s(merged))
    return closed


def _buckets(outcomes: Sequence[Outcome]) -> set[OutcomeBucket]:
    return {outcome.bucket for outcome in outcomes}


def _after_close(phase: AnyPhase, adapters: Adapters, run: PhaseRun, follow_ups: set[str]) -> None:
    adapters.phase_lock.release(phase.name, run.lock_token)
    adapters.outcomes.expire_soon(run.id)
    adapters.controller_metrics.run_closed(run)
    counts = run.summary.counts
    log.info(
        "run %s %s: %d items, success=%d error=%d stale=%d skipped=%d missing=%d "
        "transitions=%d in %.3fs",
        run.id,
        run.state.value,
        run.item_count,
        counts.success,
        counts.error,
        counts.stale,
        counts.skipped,
        counts.missing,
        run.summary.transition_count,
        run.duration_s or 0.0,
    )
    if adapters.phase_lock.take_rerun(phase.name):
        follow_ups.add(phase.name)
    for name in sorted(follow_ups):
        app.send_task(name, kwargs={"rerun_if_busy": True})


def _look_again(phase: AnyPhase, adapters: Adapters, again_in_s: float | None) -> None:
    """Run the phase again when a waiting item asked to be looked at, if that is sooner
    than its next tick (controller-runtime's RequeueAfter)."""
    interval_s = adapters.settings.phases.intervals_s.get(phase.name, 1.0)
    if again_in_s is None or again_in_s >= interval_s:
        return
    log.info("an item asked to be looked at again in %.2fs", again_in_s)
    app.send_task(phase.name, kwargs={"rerun_if_busy": True}, countdown=max(again_in_s, 0.0))


def _with_stored(adapters: Adapters, run: PhaseRun, outcomes: Sequence[Outcome]) -> list[Outcome]:
    """The outcomes given, completed from Redis when some items' outcomes are not among them."""
    merged = unique_by_id(outcomes)
    if len(merged) < run.item_count:
        merged = unique_by_id([*merged, *adapters.outcomes.load(run.id)])
    return merged

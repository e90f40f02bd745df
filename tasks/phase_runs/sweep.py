"""phase_runs.sweep: finish the runs that cannot finish by themselves, and forget old ones.

A run is finished here when it is past its deadline, or stalled: no progress
for MODELFLEET_PHASE_STALL_S and every unfinished header task on a worker
process that is gone (its chord never fires: a worker died, Redis lost the
chord's counter). The outcomes the header tasks stored in Redis are applied like the callback would,
items without one are counted as missing (they stay where they are, and the
next run picks them up), the run ends `recovered` and its lock is released.
Closed runs older than MODELFLEET_PHASE_RUN_RETENTION_H are deleted (beat
ticks every phase every few seconds, so the table would grow without end).
"""

from __future__ import annotations

import logging

from tasks.phase import AnyPhase
from tasks.run_close import close_run
from tasks.runs import PHASES, recover_if_stalled
from workers.celery import app
from workers.composition import Adapters
from workers.log_context import phase_context
from workers.phase_names import SWEEP
from workers.phase_runs import PhaseRun, PhaseRunState, RunSummary

log = logging.getLogger(__name__)


@app.task(name=SWEEP)
def sweep() -> int:
    """Close every overdue run and forget old closed ones; returns how many were closed."""
    adapters = app.adapters
    forgotten = adapters.phase_store.forget_runs_finished_before(
        adapters.settings.phases.run_retention_h * 3600
    )
    if forgotten:
        log.info("forgot %d closed runs older than the retention", forgotten)
    overdue = set(adapters.phase_store.overdue_run_ids())
    closed = 0
    for run_id in adapters.phase_store.running_run_ids():
        run = adapters.phase_store.get_run(run_id)
        if run is None:
            continue
        phase = PHASES.get(run.phase)
        if phase is None:  # a phase this version no longer has: nothing can be applied
            _close_unknown(adapters, run)
        elif run_id in overdue:
            closed += _close_overdue(phase, adapters, run)
        else:
            closed += recover_if_stalled(phase, adapters, run)
    return closed


def _close_overdue(phase: AnyPhase, adapters: Adapters, run: PhaseRun) -> bool:
    with phase_context(run.phase, run.id):
        log.warning("past its deadline; finishing it from the stored outcomes")
        outcomes = adapters.outcomes.load(run.id)
        return close_run(phase, adapters, run.id, outcomes, PhaseRunState.RECOVERED) is not None


def _close_unknown(adapters: Adapters, run: PhaseRun) -> None:
    log.error("run %s of unknown phase %s closed as failed", run.id, run.phase)
    summary = RunSummary(error=f"unknown phase {run.phase!r}: nothing applied")
    with adapters.phase_store.transaction() as conn:
        if adapters.phase_store.claim_running(conn, run.id) is not None:
            adapters.phase_store.close_run(conn, run.id, PhaseRunState.FAILED, summary)

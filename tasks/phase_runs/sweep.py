"""phase_runs.sweep: finish the runs still open past their deadline.

Their chord never fired (a worker died, Redis lost the chord's counter): the
outcomes the header tasks stored in Redis are applied like the callback would,
items without one are counted as missing (they stay where they are, and the
next run picks them up), the run ends `recovered` and its lock is released.
"""

from __future__ import annotations

import logging

from tasks.runs import PHASES, close_run
from workers.app import app
from workers.composition import Adapters
from workers.log_context import phase_context
from workers.phase_runs import PhaseRun, PhaseRunState, RunSummary

log = logging.getLogger(__name__)


@app.task(name="phase_runs.sweep")
def sweep() -> int:
    """Close every overdue run; returns how many were closed."""
    adapters = app.adapters
    closed = 0
    for run_id in adapters.phase_store.overdue_run_ids():
        run = adapters.phase_store.get_run(run_id)
        if run is None:
            continue
        phase = PHASES.get(run.phase)
        if phase is None:  # a phase this version no longer has: nothing can be applied
            _close_unknown(adapters, run)
            continue
        with phase_context(run.phase, run.id):
            log.warning("past its deadline; finishing it from the stored outcomes")
            outcomes = adapters.outcomes.load(run.id)
            if close_run(phase, adapters, run.id, outcomes, PhaseRunState.RECOVERED):
                closed += 1
    return closed


def _close_unknown(adapters: Adapters, run: PhaseRun) -> None:
    log.error("run %s of unknown phase %s closed as failed", run.id, run.phase)
    summary = RunSummary(error=f"unknown phase {run.phase!r}: nothing applied")
    with adapters.phase_store.transaction() as conn:
        if adapters.phase_store.claim_running(conn, run.id) is not None:
            adapters.phase_store.close_run(conn, run.id, PhaseRunState.FAILED, summary)

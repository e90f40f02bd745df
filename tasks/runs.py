"""One run of a phase, the same for every phase: lock, record, fan out, collect, persist.

    phase task ── lock + targets counted + phase_runs row ──> one of
      one cheap group: done in the phase task (rows loaded once, executor, then the
                       close: transitions + history + counts in one transaction,
                       lock released, follow-ups started)
      chord(
        header: run_items, at most MODELFLEET_FANOUT_MAX_TASKS   (executor on fresh rows;
                                                   outcomes kept in Redis, a field per task)
        body:   finish_run     (statuses read now, then the close as above)
        error:  fail_run       (run closed as failed, lock released)
      )

A run whose chord never fires is finished by `phase_runs.sweep` from the
outcomes kept in Redis (`close_run` with state `recovered`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any
from uuid import UUID, uuid4

from celery import Task, chord

from tasks.phase import AnyPhase
from tasks.run_close import close_failed, close_run
from workers.celery import SENT_AT_HEADER, app
from workers.composition import Adapters
from workers.domain import OutcomeBucket
from workers.errors import InfrastructureUnavailable
from workers.log_context import phase_context
from workers.phase_runs import (
    Outcome,
    PhaseRun,
    PhaseRunState,
    task_count,
)

log = logging.getLogger(__name__)

PHASES: dict[str, AnyPhase] = {}
UNEXPECTED_ERROR = "unexpected_error"
RETRY_BACKOFF_MAX_S = 8


def phase_task(phase: AnyPhase) -> Task:
    """Register `phase` and the Celery task beat and `celery call` start it by."""
    PHASES[phase.name] = phase

    def start(task: Task, rerun_if_busy: bool = False, tick: bool = False) -> str | None:
        _note_start_delay(phase, getattr(task.request, SENT_AT_HEADER, None))
        if tick and not _tick_taken(phase):
            log.info("phase=%s: a tick ran less than half an interval ago; this one is a "
                     "backlog's and does nothing", phase.name)  # fmt: skip
            return None
        return start_run(phase, rerun_if_busy=rerun_if_busy, claim_id=task.request.id)

    start.__doc__ = (
        f"Start a run of {phase.name}; returns its run id (None if one is running; "
        "with rerun_if_busy, that run starts another when it closes)."
    )
    return app.task(name=phase.name, ignore_result=False, bind=True)(start)


def _tick_taken(phase: AnyPhase) -> bool:
    interval_s = app.adapters.settings.phases.intervals_s.get(phase.name, 1.0)
    return app.adapters.phase_lock.take_tick(phase.name, interval_s / 2)


def _note_start_delay(phase: AnyPhase, sent_at_s: float | None) -> None:
    """How long this tick or follow-up waited in the queue, from the time its sender
    stamped on it (the sender's clock: a worker whose clock differs skews the metric,
    nothing else)."""
    if sent_at_s is None:
        return
    delay_s = max(time.time() - float(sent_at_s), 0.0)
    app.adapters.controller_metrics.start_delay(phase.name, delay_s)


def start_run(
    phase: AnyPhase, *, rerun_if_busy: bool = False, claim_id: str | None = None
) -> str | None:
    adapters = app.adapters
    settings = adapters.settings.phases
    run_id = uuid4()  # named by the lock before it is opened: a lock left over can be told
    token = _acquire(phase, adapters, run_id)
    if token is None:
        adapters.controller_metrics.lock_busy(phase.name)
        if rerun_if_busy:  # the running run may have loaded its targets before this news
            adapters.phase_lock.request_rerun(phase.name, settings.deadline_s)
            log.info("phase=%s: a run holds the lock; it starts another when it closes", phase.name)
        else:
            log.info("phase=%s: a run holds the lock; this tick has nothing to do", phase.name)
        return None
    try:
        groups, rows = _targets(phase, adapters)
        run = _open_run(phase, adapters, token, run_id, (sum(map(len, groups)), len(groups)))
    except BaseException:
        adapters.phase_lock.release(phase.name, token)
        raise
    if run is None:
        adapters.phase_lock.release(phase.name, token)
        adapters.controller_metrics.lock_busy(phase.name)
        if rerun_if_busy:
            adapters.phase_lock.request_rerun(phase.name, settings.deadline_s)
        log.info("phase=%s: a run is still open in phase_runs; this tick does nothing", phase.name)
        return None
    with phase_context(phase.name, run.id):
        if not groups:
            close_run(phase, adapters, run.id, [], PhaseRunState.SUCCEEDED)
            return str(run.id)
        if rows is not None:
            _run_here(phase, adapters, run, groups[0], rows, claim_id or f"inline-{run.id}")
            return str(run.id)
        try:
            _publish(phase, run, groups)
        except Exception as error:  # the broker refused part of the chord: nothing will close it
            log.exception("could not publish the run's tasks")
            close_failed(phase, adapters, run.id, error)
            raise
    return str(run.id)


def _acquire(phase: AnyPhase, adapters: Adapters, run_id: UUID) -> str | None:
    """The phase's lock, in this worker process's name, for run `run_id`. A lock nobody
    uses any more is taken over at once instead of blocking the phase until its TTL, the
    run deadline: its owner is gone (it died between taking the lock and opening its run,
    or between closing it and letting go; a host-loss e2e test saw a phase blocked that
    long), or its run is closed (a release that failed on a Redis error)."""
    deadline_s = adapters.settings.phases.deadline_s
    lock, progress = adapters.phase_lock, adapters.run_progress
    progress.keep_alive()  # alive before it holds anything
    token = lock.acquire(phase.name, deadline_s, owner=progress.worker_id, run_id=run_id)
    if token is not None:
        return token
    holder = lock.holder(phase.name)
    why = None if holder is None else _abandoned(phase, adapters, holder)
    if holder is None or why is None:
        return None
    log.warning("phase=%s: the lock is nobody's (%s); taking it over", phase.name, why)
    lock.release(phase.name, holder)
    return lock.acquire(phase.name, deadline_s, owner=progress.worker_id, run_id=run_id)


def _abandoned(phase: AnyPhase, adapters: Adapters, holder: str) -> str | None:
    """Why the lock `holder` took is in nobody's use, or None while it may be."""
    lock, settings = adapters.phase_lock, adapters.settings.phases
    owner = lock.owner_of(holder)
    if owner and not adapters.run_progress.alive(owner):
        return f"its owner {owner} is gone"
    run_id = lock.run_of(holder)
    if run_id is None:
        return None
    run = adapters.phase_store.get_run(run_id)
    if run is not None and run.state is not PhaseRunState.RUNNING:
        return f"its run {run_id} is closed"
    if run is None and lock.held_for_s(phase.name, settings.deadline_s) > settings.stall_s:
        return f"its run {run_id} was never opened"
    return None


def _targets(phase: AnyPhase, adapters: Adapters) -> tuple[list[list[UUID]], list[Any] | None]:
    """The run's item ids, a group per header task, and the items themselves when one
    cheap group is done in this task. Counted first, so such a run loads its rows once
    (not the ids, then the rows by id), and a larger one only the ids. Remote items are
    never done here: not counted, their ids are all they need."""
    max_tasks, processes = adapters.settings.phases.fanout_max_tasks, app.worker_processes
    count = None if phase.remote_items else phase.target_count(adapters)
    tasks = None if count is None else _task_count(phase, count, max_tasks, processes)
    if tasks == 0:
        return [], None
    if tasks == 1:
        rows = list(phase.targets_now(adapters))
        return [[row.id for row in rows]], rows
    ids = phase.target_ids(adapters)
    groups = _groups(phase, ids, max_tasks, processes)
    if len(groups) == 1 and not phase.remote_items:  # targets of its own, or fewer than counted
        return groups, phase.load_items(adapters, groups[0])
    return groups, None


def _run_here(
    phase: AnyPhase,
    adapters: Adapters,
    run: PhaseRun,
    ids: list[UUID],
    items: list[Any],
    claim_id: str,
) -> None:
    """A run of one cheap group, done in this task: a chord would only add two hops
    (header task, callback) to the same work. The claim lets the sweeper tell this
    run in progress from one lost with its worker, as for a header task. The outcomes
    go straight to `close_run`, and to Redis for `phase run --wait` to print."""
    try:
        with _claimed(adapters, run.id, claim_id) as ttl_s:
            outcomes = execute_loaded(phase, adapters, ids, items)
            adapters.outcomes.save(run.id, outcomes, ttl_s=ttl_s, part=claim_id)
    except Exception as error:
        log.exception("the run's items could not be run")
        close_failed(phase, adapters, run.id, error)
        raise
    found = {item.id: item for item in items}
    close_run(phase, adapters, run.id, outcomes, PhaseRunState.SUCCEEDED, found=found)


def _open_run(
    phase: AnyPhase, adapters: Adapters, token: str, run_id: UUID, counts: tuple[int, int]
) -> PhaseRun | None:
    """A new run, or None while another run of the phase is open and may still progress.

    The Redis lock can vanish (a Redis restart); the open row in `phase_runs`
    cannot. A run whose owner is gone (stalled) is recovered first.
    """

    def attempt() -> PhaseRun | None:
        return adapters.phase_store.open_run(
            phase.name,
            item_count=counts[0],
            task_count=counts[1],
            lock_token=token,
            deadline_s=adapters.settings.phases.deadline_s,
            run_id=run_id,
        )

    run = attempt()
    if run is None and recover_if_stalled(
        phase, adapters, adapters.phase_store.open_run_of(phase.name)
    ):
        run = attempt()
    return run


def recover_if_stalled(phase: AnyPhase, adapters: Adapters, run: PhaseRun | None) -> bool:
    """Finish `run` from what arrived if waiting cannot bring more; True when it was closed."""
    if run is None:
        return False
    progress = adapters.run_progress.snapshot(run.id)
    if not progress.stalled(run.started_at.timestamp(), adapters.settings.phases.stall_s):
        return False
    with phase_context(phase.name, run.id):
        log.warning(
            "no progress for %.0fs and no live worker holds its tasks; finishing it now",
            progress.now_s - (progress.last_progress_s or run.started_at.timestamp()),
        )
        closed = close_run(
            phase, adapters, run.id, adapters.outcomes.load(run.id), PhaseRunState.RECOVERED
        )
    return closed is not None


@app.task(bind=True, name="modelfleet.run_items")
def run_items(
    self: Task, phase_name: str, run_id: str, item_ids: list[str]
) -> list[dict[str, Any]]:
    """Header task: the executor on a group of items; every item ends as an outcome record."""
    phase, adapters = PHASES[phase_name], app.adapters
    with phase_context(phase_name, run_id):
        try:
            if not adapters.phase_store.is_running(UUID(run_id)):
                log.warning("run is closed already; %d items left to the next run", len(item_ids))
                return []
            with _claimed(adapters, UUID(run_id), self.request.id) as ttl_s:
                outcomes = execute_items(phase, adapters, [UUID(i) for i in item_ids])
                adapters.outcomes.save(UUID(run_id), outcomes, ttl_s=ttl_s, part=self.request.id)
        except InfrastructureUnavailable as error:
            retries = adapters.settings.phases.item_retries
            if self.request.retries >= retries:
                log.error("giving up after %d retries: %s", retries, error)
                raise
            countdown = min(2**self.request.retries, RETRY_BACKOFF_MAX_S)
            log.warning("retrying in %ss: %s", countdown, error)
            raise self.retry(exc=error, countdown=countdown, max_retries=retries) from error
        # The outcomes are in Redis (saved above); the callback reads them there, so the
        # chord's messages stay small at any size (100,000 outcomes were ~6 MB each way).
        return []


@contextmanager
def _claimed(adapters: Adapters, run_id: UUID, claim_id: str) -> Iterator[float]:
    """The run claimed by this process while it runs items (so the sweeper can tell a
    task in progress from one lost with its worker); gives the outcomes' TTL."""
    ttl_s = adapters.settings.phases.deadline_s * 2
    adapters.run_progress.claim(run_id, claim_id, ttl_s)
    try:
        yield ttl_s
    finally:
        adapters.run_progress.release(run_id, claim_id, ttl_s)


@app.task(name="modelfleet.finish_run")
def finish_run(results: list[list[dict[str, Any]]], phase_name: str, run_id: str) -> str:
    """Chord body: merge the header tasks' outcomes and persist them."""
    outcomes = [Outcome.from_json(record) for group in results for record in group]
    with phase_context(phase_name, run_id):
        run = close_run(
            PHASES[phase_name], app.adapters, UUID(run_id), outcomes, PhaseRunState.SUCCEEDED
        )
    return "closed" if run is not None else "left open"


@app.task(name="modelfleet.fail_run")
def fail_run(
    request: Any, exc: BaseException, _traceback: Any, phase_name: str, run_id: str
) -> None:
    """Chord error callback: a header task raised; close the run as failed, apply nothing."""
    with phase_context(phase_name, run_id):
        log.error("header task %s raised %s: %s", request.id, type(exc).__name__, exc)
        close_failed(PHASES[phase_name], app.adapters, UUID(run_id), exc)


def execute_items(phase: AnyPhase, adapters: Adapters, ids: Sequence[UUID]) -> list[Outcome]:
    """Run the executor on fresh rows; anything but a dead store becomes outcome records."""
    return execute_loaded(phase, adapters, ids, phase.load_items(adapters, ids))


def execute_loaded(
    phase: AnyPhase, adapters: Adapters, ids: Sequence[UUID], items: list[Any]
) -> list[Outcome]:
    """`execute_items` on the rows of `ids` loaded just now (those still in the phase)."""
    try:
        outcomes = phase.outcomes(phase.execute(adapters, items))
    except InfrastructureUnavailable:
        raise
    except Exception as error:
        log.exception("executor raised on %d items", len(items))
        outcomes = [_unexpected(item.id, error) for item in items]
    seen = {outcome.id for outcome in outcomes}
    return [*outcomes, *(_left_alone(item_id) for item_id in ids if item_id not in seen)]


def _publish(phase: AnyPhase, run: PhaseRun, groups: list[list[UUID]]) -> None:
    run_id = str(run.id)
    header = [run_items.si(phase.name, run_id, [str(i) for i in group]) for group in groups]
    body = finish_run.s(phase.name, run_id).on_error(fail_run.s(phase.name, run_id))
    chord(header, body).apply_async()
    log.info("published %d tasks for %d items", len(groups), run.item_count)


def _groups(phase: AnyPhase, ids: list[UUID], max_tasks: int, processes: int) -> list[list[UUID]]:
    """Items split evenly over as many header tasks as `task_count` says fits the work."""
    count = _task_count(phase, len(ids), max_tasks, processes)
    return [ids[i::count] for i in range(count)]


def _task_count(phase: AnyPhase, items: int, max_tasks: int, processes: int) -> int:
    return task_count(items, whole_set=phase.whole_set, remote=phase.remote_items,
                      processes=processes, max_tasks=max_tasks)  # fmt: skip


def _unexpected(item_id: UUID, error: Exception) -> Outcome:
    return Outcome(item_id, OutcomeBucket.ERROR, type(error).__name__, str(error), UNEXPECTED_ERROR)


def _left_alone(item_id: UUID) -> Outcome:
    """An item the executor said nothing about: moved out of the phase, or not selected."""
    return Outcome(item_id, OutcomeBucket.SKIPPED)

"""The controller's own counters, kept in Redis so every worker process adds to the same
numbers (prefork children, several hosts) and the metrics endpoint reads them whole.

Each metric family is one hash: field = its label values joined by a unit separator,
value = a number. Writes are fire-and-forget: a metric that cannot be recorded is
logged, never a reason for a phase run to fail. Counters restart from zero when Redis
does, which Prometheus reads as a counter reset.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import redis

from workers.adapters.redis.keys import RedisKeys
from workers.phase_runs import PhaseRun, PhaseRunState

log = logging.getLogger(__name__)

SEPARATOR = "\x1f"
# Phase run durations (seconds): from a no-op tick (most runs: a few ms) to a run near its
# deadline.
DURATION_BUCKETS_S = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                      10.0, 30.0, 60.0, 120.0)  # fmt: skip
# Queue lag (seconds from a tick being sent to its run starting).
START_DELAY_BUCKETS_S = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
RUN_STATES = tuple(s.value for s in PhaseRunState if s is not PhaseRunState.RUNNING)
BUCKETS = ("success", "error", "stale", "skipped", "waiting", "missing")
DIRECTIONS = ("up", "down")

RUNS = "phase_runs_total"
DURATION_BUCKET = "phase_run_duration_seconds_bucket"
DURATION_SUM = "phase_run_duration_seconds_sum"
ITEMS = "phase_items_total"
TRANSITIONS = "phase_transitions_total"
LAST_SUCCESS = "phase_last_success_timestamp_seconds"
LOCK_BUSY = "phase_lock_busy_total"
START_DELAY_BUCKET = "phase_start_delay_seconds_bucket"
START_DELAY_SUM = "phase_start_delay_seconds_sum"
DECISIONS = "autoscaling_decisions_total"
DECISION_VALUE = "autoscaling_last_metric_value"
FAMILIES = (RUNS, DURATION_BUCKET, DURATION_SUM, ITEMS, TRANSITIONS, LAST_SUCCESS, LOCK_BUSY,
            START_DELAY_BUCKET, START_DELAY_SUM, DECISIONS, DECISION_VALUE)  # fmt: skip
# Families whose label values start with a deployment's name (dropped once it is gone).
PER_DEPLOYMENT = (DECISIONS, DECISION_VALUE)


def field(*labels: str) -> str:
    return SEPARATOR.join(labels)


@dataclass(frozen=True)
class RedisControllerMetrics:
    client: redis.Redis
    keys: RedisKeys

    def run_closed(self, run: PhaseRun) -> None:
        """One closed run: its state, duration, items per bucket and transitions."""
        counts = run.summary.counts
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.keys.controller_metric(RUNS), field(run.phase, run.state.value), 1)
        if run.duration_s is not None:
            self._observe(pipe, (DURATION_BUCKET, DURATION_SUM, DURATION_BUCKETS_S),
                          run.phase, run.duration_s)  # fmt: skip
        for bucket in BUCKETS:
            if amount := getattr(counts, bucket):
                pipe.hincrby(self.keys.controller_metric(ITEMS), field(run.phase, bucket), amount)
        pipe.hincrby(self.keys.controller_metric(TRANSITIONS), field(run.phase),
                     run.summary.transition_count)  # fmt: skip
        if run.state is PhaseRunState.SUCCEEDED and run.finished_at is not None:
            pipe.hset(self.keys.controller_metric(LAST_SUCCESS), field(run.phase),
                      f"{run.finished_at.timestamp():.3f}")  # fmt: skip
        self._send(pipe, f"run {run.id}")

    def lock_busy(self, phase: str) -> None:
        """A tick that found the phase held by another run (it did nothing)."""
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.keys.controller_metric(LOCK_BUSY), field(phase), 1)
        self._send(pipe, f"lock busy of {phase}")

    def start_delay(self, phase: str, delay_s: float) -> None:
        """Seconds from beat's tick to the run starting: the queue's lag, as a phase sees it
        (every tick observed, so a scrape sees them all)."""
        pipe = self.client.pipeline(transaction=False)
        self._observe(pipe, (START_DELAY_BUCKET, START_DELAY_SUM, START_DELAY_BUCKETS_S),
                      phase, delay_s)  # fmt: skip
        self._send(pipe, f"start delay of {phase}")

    def forget_deployments(self, names: Sequence[str]) -> None:
        """Drop the per-deployment series of deployments that are gone."""
        if not names:
            return
        read = self.client.pipeline(transaction=False)
        for family in PER_DEPLOYMENT:
            read.hkeys(self.keys.controller_metric(family))
        gone = set(names)
        drop = self.client.pipeline(transaction=False)
        for family, fields in zip(PER_DEPLOYMENT, read.execute(), strict=True):
            doomed = [f for f in fields if f.split(SEPARATOR, 1)[0] in gone]
            if doomed:
                drop.hdel(self.keys.controller_metric(family), *doomed)
        self._send(drop, f"forgetting {len(gone)} deployments")

    def autoscaling_decision(
        self, deployment: str, direction: str, metric: str, value: float
    ) -> None:
        pipe = self.client.pipeline(transaction=False)
        pipe.hincrby(self.keys.controller_metric(DECISIONS), field(deployment, direction), 1)
        pipe.hset(self.keys.controller_metric(DECISION_VALUE), field(deployment, metric),
                  repr(float(value)))  # fmt: skip
        self._send(pipe, f"autoscaling decision of {deployment}")

    def read(self) -> dict[str, dict[tuple[str, ...], float]]:
        """Every family: label values -> number (raises if Redis cannot be read)."""
        pipe = self.client.pipeline(transaction=False)
        for family in FAMILIES:
            pipe.hgetall(self.keys.controller_metric(family))
        replies: Sequence[dict[str, str]] = pipe.execute()
        return {
            family: {tuple(key.split(SEPARATOR)): float(value) for key, value in reply.items()}
            for family, reply in zip(FAMILIES, replies, strict=True)
        }

    def _observe(
        self,
        pipe: redis.client.Pipeline,
        histogram: tuple[str, str, Sequence[float]],
        phase: str,
        seconds: float,
    ) -> None:
        bucket_family, sum_family, bounds = histogram
        key = self.keys.controller_metric(bucket_family)
        for bound in (*bounds, float("inf")):
            if seconds <= bound:
                pipe.hincrby(key, field(phase, le(bound)), 1)
        pipe.hincrbyfloat(self.keys.controller_metric(sum_family), field(phase), seconds)

    @staticmethod
    def _send(pipe: redis.client.Pipeline, what: str) -> None:
        try:
            pipe.execute()
        except redis.RedisError as error:  # metrics never fail the work they describe
            log.warning("controller metrics: could not record %s: %s", what, error)


def le(bound: float) -> str:
    """A bucket's upper bound as its `le` label."""
    return "+Inf" if bound == float("inf") else repr(bound)

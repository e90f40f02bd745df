"""What the deployment executor's rollout step needs beside the pure planner: the requests
each rollout is judged by, and where each rollout's step leaves its deployment."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import replace
from uuid import UUID

from workers.domain import (
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentInfo,
    RolloutOutcome,
    RolloutState,
    RolloutStep,
)
from workers.errors import RolloutFailed, error_code_of
from workers.ports import RequestActivity

log = logging.getLogger(__name__)

QUIET_AFTER_S = 60.0  # no request at all for this long: a rollout is judged on health alone


def with_requests(
    activity: RequestActivity | None, states: Mapping[UUID, RolloutState]
) -> dict[UUID, RolloutState]:
    """Each rollout with what the proxies counted since its step (or it) began, and
    whether its deployment got no request at all in the last minute. Where nothing
    counts requests (an app proxy that does not), rollouts go on health alone."""
    if activity is None:
        return {i: replace(state, quiet=True) for i, state in states.items()}
    if not states:
        return {}
    since = {i: s.judging_since_s for i, s in states.items() if s.judging_since_s is not None}
    traffic = activity.revision_traffic(since)
    last = activity.last_requests(set(states))
    now_s = activity.now_s()
    return {
        i: replace(state, traffic=traffic.get(i, {}),
                   quiet=now_s - last.get(i, 0.0) >= QUIET_AFTER_S)
        for i, state in states.items()
    }  # fmt: skip


def sort_rollout(
    result: DeploymentExecutionResult,
    deployment: DeploymentInfo,
    state: RolloutState,
    step: RolloutStep,
) -> None:
    """Finished: a success; failed (rolled back): an error; else in progress, waiting."""
    if step.outcome is RolloutOutcome.FINISHED:
        log.info("deployment %s: %s", deployment.id, step.summary)
        result.successes.append(deployment)
    elif step.outcome is RolloutOutcome.FAILED:
        log.warning("deployment %s: %s", deployment.id, step.summary)
        failure = RolloutFailed(state.new_revision, step.summary)
        result.errors.append(DeploymentExecutionError(deployment, "Rollout failed", step.summary,
                                                      error_code_of(failure)))  # fmt: skip
    else:
        result.waiting.append(deployment)  # in progress: the phase comes back to it
        if step.again_in_s is not None:
            result.again_in_s[deployment.id] = step.again_in_s

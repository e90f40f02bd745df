"""DeploymentExecutor: what happens to a batch of deployments in each deployment phase.

Each method takes a list of deployments, reads in one call per dependency,
and sorts every deployment into successes, errors, skipped (nothing to do) or
waiting (not done yet: the phase comes back to it); a deployment's
failure is an error record, never an exception.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from functools import partial
from uuid import UUID

from workers.domain import (
    AutoScalingMetricsData,
    AutoScalingRule,
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentInfo,
    ModelRevision,
    RouteBatchUpdater,
    RouteCreator,
    ScalingGroupProxyTarget,
)
from workers.errors import (
    AppProxyResponseInvalid,
    ReplicaCountMismatch,
    error_code_of,
)
from workers.executors import traffic_scaling
from workers.executors.outcomes import capture, unique_by_id
from workers.executors.payloads import endpoint_registration_body
from workers.executors.rollout_steps import sort_rollout, with_requests
from workers.policies.idleness import due_for_zero, idle_for_s, wake_count, woken_note, zeroed_note
from workers.policies.rollouts import abort_step, plan_step
from workers.policies.scaling import manual_desired_replicas, plan_scaling, replicas
from workers.ports import AppProxy, DeploymentRepository, RequestActivity

log = logging.getLogger(__name__)


class DeploymentExecutor:
    def __init__(
        self,
        *,
        deployment_repo: DeploymentRepository,
        app_proxy: AppProxy,
        activity: RequestActivity | None = None,
    ) -> None:
        self._repo = deployment_repo
        self._app_proxy = app_proxy
        self._activity = activity  # when deployments last saw a request (scale to zero)

    def check_pending_deployments(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """Register each deployment's endpoint with its resource group's app proxy.

        A deployment with no revision to run, or whose group has no proxy, waits (the
        reason says for what).
        """
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        targets = self._repo.fetch_scaling_group_proxy_targets(
            {d.resource_group for d in deployments}
        )
        result = DeploymentExecutionResult()
        urls: dict[UUID, str] = {}
        for deployment in deployments:
            revision, target = deployment.target_revision, targets.get(deployment.resource_group)
            if revision is None or target is None:
                _log_unregistrable(deployment, revision)
                result.waiting.append(deployment)
                result.reasons[deployment.id] = _unregistrable(deployment, revision)
                continue
            url = capture(partial(self._register_endpoint, deployment, revision, target))
            if isinstance(url, Exception):
                log.warning("deployment %s: failed to register endpoint: %s", deployment.id, url)
                result.errors.append(
                    _deployment_error(deployment, str(url), "Failed to register endpoint", url)
                )
            else:
                urls[deployment.id] = url
                result.successes.append(deployment)
        if urls:
            self._repo.update_endpoint_urls_bulk(urls)
        return result

    def check_ready_deployments_that_need_scaling(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """A deployment whose active route count differs from its target is an error."""
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        routes = self._repo.fetch_active_routes_by_endpoint_ids({d.id for d in deployments})
        result = DeploymentExecutionResult()
        for deployment in deployments:
            actual = len(replicas(routes.get(deployment.id, ())))
            expected = deployment.target_replica_count
            if actual == expected:
                result.successes.append(deployment)
                continue
            mismatch = ReplicaCountMismatch(expected=expected, actual=actual)
            log.info("deployment %s: %s", deployment.id, mismatch)
            result.errors.append(
                _deployment_error(deployment, "Mismatched active routes", str(mismatch), mismatch)
            )
        return result

    def scale_deployment(self, deployments: Sequence[DeploymentInfo]) -> DeploymentExecutionResult:
        """Create or stop routes until each deployment has its target count.

        A deployment already at its target is skipped. All creations and stops
        of the batch are applied in one repository call.
        """
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        routes = self._repo.fetch_active_routes_by_endpoint_ids({d.id for d in deployments})
        result = DeploymentExecutionResult()
        creators: list[RouteCreator] = []
        to_stop: list[UUID] = []
        for deployment in deployments:
            plan = capture(partial(plan_scaling, deployment, routes.get(deployment.id, ())))
            if isinstance(plan, Exception):
                log.warning("deployment %s: cannot plan scaling: %s", deployment.id, plan)
                result.errors.append(
                    _deployment_error(deployment, str(plan), "Failed to scale deployment", plan)
                )
            elif plan.is_empty:
                result.skipped.append(deployment)
            else:
                creators.extend(plan.creators)
                to_stop.extend(plan.routes_to_stop)
                result.successes.append(deployment)
        if creators or to_stop:
            updater = RouteBatchUpdater(route_ids=tuple(to_stop)) if to_stop else None
            self._repo.scale_routes(creators, updater)
        return result

    def calculate_desired_replicas(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """Save the replica count autoscaling (or, without rules, the manual count) asks for.

        A deployment whose count would not change is skipped.
        """
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        rules = self._repo.fetch_auto_scaling_rules_by_endpoint_ids({d.id for d in deployments})
        metrics = self._repo.fetch_metrics_for_autoscaling(deployments, rules)
        result = DeploymentExecutionResult()
        desired: dict[UUID, int] = {}
        for deployment in deployments:
            # at zero by idleness (a request wakes it), or its traffic autoscaler decides
            if deployment.zeroed_from is not None or deployment.autoscale is not None:
                result.skipped.append(deployment)
                continue
            count = capture(
                partial(self._desired_replicas, deployment, rules.get(deployment.id, ()), metrics)
            )
            if isinstance(count, Exception):
                log.warning("deployment %s: replica calculation failed: %s", deployment.id, count)
                result.errors.append(
                    _deployment_error(
                        deployment, str(count), "Failed to calculate desired replicas", count
                    )
                )
            elif count is None:
                result.skipped.append(deployment)
            else:
                desired[deployment.id] = count
                result.successes.append(deployment)
        if desired:
            self._repo.update_desired_replicas_bulk(desired)
        return result

    def scale_idle_to_zero(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """Deployments idle past their scale-to-zero setting give their replicas back
        (success: the scale phase drains them); the others are skipped."""
        deployments = unique_by_id(deployments)
        if not deployments or self._activity is None:
            return DeploymentExecutionResult(skipped=list(deployments))
        last = self._activity.last_requests({d.id for d in deployments})
        now_s = self._activity.now_s()
        idle = {d.id: idle_for_s(d, last.get(d.id), now_s) for d in deployments}
        due = {d.id: d.target_replica_count for d in deployments if due_for_zero(d, idle[d.id])}
        went = self._repo.scale_to_zero(due) if due else set()
        result = DeploymentExecutionResult()
        for deployment in deployments:
            if deployment.id not in went:
                result.skipped.append(deployment)
                continue
            note = zeroed_note(idle[deployment.id], due[deployment.id])
            log.info("deployment %s: scaled to zero %s", deployment.id, note)
            result.successes.append(deployment)
            result.reasons[deployment.id] = DeploymentExecutionError(
                deployment, "scaled to zero", note
            )
        return result

    def autoscale(self, deployments: Sequence[DeploymentInfo]) -> DeploymentExecutionResult:
        """Each deployment's traffic against its target (`traffic_scaling.autoscale`)."""
        if self._activity is None:
            return DeploymentExecutionResult(skipped=list(deployments))
        return traffic_scaling.autoscale(self._repo, self._activity, unique_by_id(deployments))

    def wake(self, deployments: Sequence[DeploymentInfo]) -> DeploymentExecutionResult:
        """Deployments at zero by idleness that requests wait for get their replicas back
        (within their autoscaling rules' maximum); one wake wins, the others are skipped."""
        at_zero = [d for d in unique_by_id(deployments) if d.zeroed_from is not None]
        if not at_zero:
            return DeploymentExecutionResult(skipped=list(deployments))
        rules = self._repo.fetch_auto_scaling_rules_by_endpoint_ids({d.id for d in at_zero})
        counts = {d.id: wake_count(d.zeroed_from or 1, rules.get(d.id, ())) for d in at_zero}
        if self._activity is not None:  # those the traffic autoscaler tracks: what is held
            counts.update(traffic_scaling.wake_counts(self._activity, at_zero))
        woken = self._repo.restore_from_zero(counts)
        now_s = self._activity.now_s() if self._activity is not None else None
        result = DeploymentExecutionResult()
        for deployment in unique_by_id(deployments):
            if deployment.id not in woken:
                result.skipped.append(deployment)
                continue
            note = woken_note(counts[deployment.id], _at_zero_s(deployment, now_s))
            log.info("deployment %s: woken by a request: %s", deployment.id, note)
            result.successes.append(deployment)
            result.reasons[deployment.id] = DeploymentExecutionError(
                deployment, "woken by a request", note
            )
        return result

    def destroy_deployment(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """Mark every active route terminating, then unregister each endpoint.

        Routes are marked first so that a failed unregistration (an error, to be
        retried) never leaves replicas serving a deployment being destroyed.
        """
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        routes = self._repo.fetch_active_routes_by_endpoint_ids({d.id for d in deployments})
        targets = self._repo.fetch_scaling_group_proxy_targets(
            {d.resource_group for d in deployments}
        )
        route_ids = {route.id for group in routes.values() for route in group}
        if route_ids:
            self._repo.mark_terminating_route_status_bulk(route_ids)
        result = DeploymentExecutionResult()
        for deployment in deployments:
            target = targets.get(deployment.resource_group)
            if target is None:
                log.warning(
                    "deployment %s: resource group %s has no app proxy; nothing to unregister",
                    deployment.id,
                    deployment.resource_group,
                )
                result.successes.append(deployment)
                continue
            failure = capture(partial(self._unregister_endpoint, deployment, target))
            if isinstance(failure, Exception):
                log.warning("deployment %s: failed to unregister: %s", deployment.id, failure)
                result.errors.append(
                    _deployment_error(
                        deployment, "Failed to unregister endpoint", str(failure), failure
                    )
                )
            else:
                result.successes.append(deployment)
        return result

    def rollout_deployment(
        self, deployments: Sequence[DeploymentInfo]
    ) -> DeploymentExecutionResult:
        """Advance each rollout by one step (`workers.policies.rollouts.plan_step`), judged also by
        what the proxies counted of each revision's requests.

        Success: the new revision serves and the rollout is over. Error: it
        failed and was rolled back (new routes drain; the previous revision
        stays current). Waiting: still in progress. A deployment left deploying
        with no rollout (its last step committed, the move to ready lost) succeeds.
        A step that cannot be planned (a bug) aborts the rollout like a failure.
        """
        deployments = unique_by_id(deployments)
        if not deployments:
            return DeploymentExecutionResult()
        states = with_requests(self._activity, self._repo.fetch_rollout_states(deployments))
        result = DeploymentExecutionResult()
        for deployment in deployments:
            state = states.get(deployment.id)
            if state is None:  # the rollout ended but the move to ready was lost: ready now
                result.successes.append(deployment)
                continue
            step = capture(partial(plan_step, state))
            if isinstance(step, Exception):
                log.error("deployment %s: rollout step failed", deployment.id, exc_info=step)
                step = abort_step(state, f"{type(step).__name__}: {step}")
            if not self._repo.apply_rollout_step(deployment.id, state, step):
                log.info("deployment %s: a step was applied meanwhile; this one is not",
                         deployment.id)  # fmt: skip
                result.waiting.append(deployment)
                continue
            sort_rollout(result, deployment, state, step)
        return result

    def _register_endpoint(
        self, deployment: DeploymentInfo, revision: ModelRevision, target: ScalingGroupProxyTarget
    ) -> str:
        client = self._app_proxy.client_for(target)
        answer = client.create_endpoint(
            deployment.id, endpoint_registration_body(deployment, revision)
        )
        url = answer.get("endpoint")
        if not isinstance(url, str) or not url:
            raise AppProxyResponseInvalid("App proxy answer has no 'endpoint' URL")
        return url

    def _unregister_endpoint(
        self, deployment: DeploymentInfo, target: ScalingGroupProxyTarget
    ) -> None:
        self._app_proxy.client_for(target).delete_endpoint(deployment.id)

    def _desired_replicas(
        self,
        deployment: DeploymentInfo,
        rules: Sequence[AutoScalingRule],
        metrics: AutoScalingMetricsData,
    ) -> int | None:
        if not rules:
            return manual_desired_replicas(
                deployment, metrics.routes_by_endpoint.get(deployment.id, ())
            )
        return self._repo.calculate_desired_replicas_for_deployment(deployment, rules, metrics)


def _log_unregistrable(deployment: DeploymentInfo, revision: ModelRevision | None) -> None:
    why = "has no target revision" if revision is None else "has no app proxy in its group"
    log.warning("deployment %s: %s; waiting", deployment.id, why)


def _unregistrable(
    deployment: DeploymentInfo, revision: ModelRevision | None
) -> DeploymentExecutionError:
    """Why a pending deployment waits: what its history row and `deployment show` say."""
    if revision is None:
        reason, code = "no target revision to run", "no_revision"
    else:
        reason = f"resource group {deployment.resource_group} has no app proxy address"
        code = "no_app_proxy"
    return DeploymentExecutionError(
        deployment_info=deployment,
        reason=reason,
        error_detail="endpoint not registered; waiting",
        error_code=code,
    )


def _deployment_error(
    deployment: DeploymentInfo, reason: str, detail: str, failure: Exception
) -> DeploymentExecutionError:
    return DeploymentExecutionError(
        deployment_info=deployment,
        reason=reason,
        error_detail=detail,
        error_code=error_code_of(failure),
    )


def _at_zero_s(deployment: DeploymentInfo, now_s: float | None) -> float | None:
    """How long it stayed at zero (idle time counts from when it went there)."""
    if now_s is None or deployment.idle_counts_from is None:
        return None
    return max(0.0, now_s - deployment.idle_counts_from.timestamp())

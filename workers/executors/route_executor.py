"""RouteExecutor: what happens to a batch of routes in each route phase.

Each method takes a list of routes, does its reads in one call per dependency,
and sorts every route into the result's buckets; a route's failure is an error
record, never an exception. The phase that called decides the status changes.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping, Sequence
from functools import partial
from uuid import UUID

from workers.domain import (
    Condition,
    DeploymentContext,
    DeploymentInfo,
    DeploymentLifecycle,
    HealthCheckStatus,
    HealthStatus,
    RouteData,
    RouteExecutionError,
    RouteExecutionResult,
    RouteStatus,
    SessionId,
    SessionStatus,
    StartupProgress,
)
from workers.errors import (
    ComeBackLater,
    DeploymentNotActive,
    EndpointNotFound,
    ModelfleetError,
    NeverHealthy,
    RouteSessionNotFound,
    RouteSessionTerminated,
    RouteUnhealthy,
    SessionNeverStarted,
    error_code_of,
)
from workers.executors.outcomes import capture, unique_by_id
from workers.executors.payloads import scrape_target, session_spec
from workers.policies.rollout_notes import never_healthy_note
from workers.ports import DeploymentRepository, HealthStore, SchedulingController, ServiceDiscovery

log = logging.getLogger(__name__)

_NO_NEW_SESSIONS = frozenset({DeploymentLifecycle.DESTROYING, DeploymentLifecycle.DESTROYED})


class RouteExecutor:
    def __init__(
        self,
        *,
        deployment_repo: DeploymentRepository,
        scheduling_controller: SchedulingController,
        health_store: HealthStore,
        service_discovery: ServiceDiscovery,
        start_deadline_s: float = 600.0,
    ) -> None:
        self._repo = deployment_repo
        self._scheduler = scheduling_controller
        self._health_store = health_store
        self._service_discovery = service_discovery
        self._start_deadline_s = start_deadline_s  # where a deployment sets none

    def provision_routes(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Start a session for each route that has none and link it to the route.

        A route that already has a session counts as provisioned.
        """
        routes = unique_by_id(routes)
        needing = [route for route in routes if route.session_id is None]
        deployments = self._deployments_by_id({route.endpoint_id for route in needing})
        contexts: dict[tuple[UUID, int | None], DeploymentContext | Exception] = {}
        started: dict[UUID, SessionId] = {}
        result = RouteExecutionResult()
        for route in routes:
            if route.session_id is not None:
                result.successes.append(route)
                continue
            outcome = capture(partial(self._start_session, route, deployments, contexts))
            if isinstance(outcome, ComeBackLater):  # no host has room: it waits, saying why
                result.waiting.append(route)
                result.reasons[route.id] = _route_error(route, "Waiting for a host", outcome)
            elif isinstance(outcome, Exception):
                log.warning("route %s: failed to provision: %s", route.id, outcome)
                result.errors.append(_route_error(route, "Failed to provision", outcome))
            else:
                started[route.id] = outcome
                result.successes.append(route)
        if started:
            self._repo.update_route_sessions(started)
        self._note_waiting(result)
        return result

    def _note_waiting(self, result: RouteExecutionResult) -> None:
        """Deployments whose new routes wait for room say so (REASON)."""
        notes = {
            error.route_info.endpoint_id: Condition(error.error_code or "", error.error_detail)
            for error in result.reasons.values()
        }
        if notes:
            log.info("%d routes wait for a host: %s", len(result.waiting),
                     next(iter(notes.values())).message)  # fmt: skip
            self._repo.note_conditions(notes)

    def terminate_routes(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Ask the scheduler to stop every route's session; each route is then done."""
        routes = unique_by_id(routes)
        session_ids = [route.session_id for route in routes if route.session_id is not None]
        if session_ids:
            self._scheduler.mark_sessions_for_termination(session_ids)
        return RouteExecutionResult(successes=routes)

    def check_running_routes(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """A route whose session is missing or has ended is an error; so is one whose
        session no agent started within its deployment's start deadline (it is given
        up and replaced: a start stranded on a host would otherwise count as a replica
        and hold a rollout for ever)."""
        routes = unique_by_id(routes)
        if not routes:
            return RouteExecutionResult()
        ids = {route.id for route in routes}
        statuses = self._repo.fetch_session_statuses_by_route_ids(ids)
        overdue = self._repo.fetch_overdue_starts(ids, self._start_deadline_s)
        result = RouteExecutionResult()
        for route in routes:
            failure = _session_failure(route, statuses.get(route.id))
            if failure is None and route.id in overdue:
                failure = SessionNeverStarted(*overdue[route.id])
            if failure is None:
                result.successes.append(route)
            else:
                result.errors.append(_route_error(route, type(failure).__name__, failure))
        return result

    def check_route_health(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Healthy routes succeed, unhealthy ones are errors, stale or unknown ones are stale."""
        routes = unique_by_id(routes)
        if not routes:
            return RouteExecutionResult()
        health = self._health_store.check_route_health_status([str(route.id) for route in routes])
        result = RouteExecutionResult()
        for route in routes:
            seen = health.get(str(route.id))
            if seen is None or seen.status is HealthCheckStatus.STALE:
                result.stale.append(route)
            elif seen.status is HealthCheckStatus.HEALTHY:
                result.successes.append(route)
            else:
                failure = RouteUnhealthy(route.id, seen.detail)
                result.errors.append(_route_error(route, type(failure).__name__, failure))
        return result

    def check_startup(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Routes that never passed their health check within their revision's health
        budget, and that the health checker did probe, are errors (each counts against its
        revision); the rest are left alone: a route with no record at all was never
        probed (a prober dead or cut off), and no data is not bad health. A deployment
        outside a rollout whose routes all fail so is noted: nothing can roll it back."""
        routes = unique_by_id(routes)
        progress = self._repo.fetch_startup_progress({r.id for r in routes}) if routes else {}
        overdue = [r for r in routes if (p := progress.get(r.id)) is not None and p.overdue]
        if not overdue:
            return RouteExecutionResult()
        health = self._health_store.check_route_health_status([str(r.id) for r in overdue])
        result = RouteExecutionResult()
        for route in overdue:
            seen = health.get(str(route.id))
            if not _probed_and_failed(seen):
                continue  # healthy just now (the health phases take it), or never probed
            failure = NeverHealthy(progress[route.id].budget_s, seen.detail if seen else None)
            log.warning("route %s: %s", route.id, failure)
            result.errors.append(_route_error(route, type(failure).__name__, failure))
        self._note_never_healthy([e.route_info for e in result.errors], progress, health)
        return result

    def _note_never_healthy(
        self,
        failed: Sequence[RouteData],
        progress: Mapping[UUID, StartupProgress],
        health: Mapping[str, HealthStatus],
    ) -> None:
        deployments = self._deployments_by_id({route.endpoint_id for route in failed})
        active = self._repo.fetch_active_routes_by_endpoint_ids(set(deployments))
        notes = {}
        for route in failed:
            deployment = deployments.get(route.endpoint_id)
            if deployment is None or route.revision == deployment.deploying_revision:
                continue  # its rollout judges it, and says why when it rolls back
            if any(r.status is RouteStatus.HEALTHY for r in active.get(deployment.id, ())):
                continue
            seen = health.get(str(route.id))
            notes[deployment.id] = Condition(NeverHealthy.error_code, never_healthy_note(
                route.revision or deployment.current_revision,
                progress[route.id].budget_s,
                seen.detail if seen is not None else None,
            ))  # fmt: skip
        if notes:
            self._repo.note_conditions(notes)

    def sync_service_discovery(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Publish the routes' model servers as the whole scrape set; changes no status.

        Makes no call when no route has a session (SC-RE-018): emptying the set
        when nothing is healthy is the phase's decision, not this method's.
        """
        route_ids = {route.id for route in routes if route.session_id is not None}
        if not route_ids:
            log.debug("no route with a session; service discovery left as it is")
            return RouteExecutionResult()
        found = self._repo.fetch_route_service_discovery_info(route_ids)
        self._service_discovery.sync_model_service_routes([scrape_target(d) for d in found])
        return RouteExecutionResult()

    def publish_endpoint_modes(self) -> None:
        """What the proxies do for live deployments without a replica to send a request to:
        hold it and wake the deployment, or refuse at once (an operator asked for 0)."""
        self._service_discovery.publish_endpoint_modes(self._repo.fetch_endpoint_modes())

    def cleanup_routes_by_config(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """The routes whose status their resource group's cleanup config names."""
        routes = unique_by_id(routes)
        deployments = self._deployments_by_id({route.endpoint_id for route in routes})
        group_of = {deployment.id: deployment.resource_group for deployment in deployments.values()}
        groups = sorted(set(group_of.values()))
        configs = self._repo.get_scaling_group_cleanup_configs(groups) if groups else {}
        result = RouteExecutionResult()
        for route in routes:
            config = configs.get(group_of.get(route.endpoint_id, ""))
            if config is not None and route.status in config.cleanup_target_statuses:
                result.successes.append(route)
        return result

    def finish_draining(self, routes: Sequence[RouteData]) -> RouteExecutionResult:
        """Drained routes whose session may now be told to stop.

        The routes given have been out of traffic for their deployment's drain
        time. One that service discovery still publishes (a sync that has not
        run yet) is stale: it keeps draining, because traffic leaves first.
        """
        routes = unique_by_id(routes)
        if not routes:
            return RouteExecutionResult()
        published = self._service_discovery.published_route_ids()
        result = RouteExecutionResult()
        for route in routes:
            if route.id in published:
                log.warning("route %s: drained but still published; waits for a sync", route.id)
                result.stale.append(route)
            else:
                result.successes.append(route)
        return result

    def _deployments_by_id(self, endpoint_ids: set[UUID]) -> Mapping[UUID, DeploymentInfo]:
        if not endpoint_ids:
            return {}
        return {d.id: d for d in self._repo.get_endpoints_by_ids(endpoint_ids)}

    def _start_session(
        self,
        route: RouteData,
        deployments: Mapping[UUID, DeploymentInfo],
        contexts: dict[tuple[UUID, int | None], DeploymentContext | Exception],
    ) -> SessionId:
        deployment = deployments.get(route.endpoint_id)
        if deployment is None:
            raise EndpointNotFound(route.endpoint_id)
        if deployment.lifecycle in _NO_NEW_SESSIONS:
            raise DeploymentNotActive(deployment.id, deployment.lifecycle)
        key = (deployment.id, route.revision)
        if key not in contexts:  # one context per deployment revision, not per route
            contexts[key] = capture(partial(self._context, deployment, route.revision))
        context = contexts[key]
        if isinstance(context, Exception):
            raise context
        return self._scheduler.enqueue_session(session_spec(route, context))

    def _context(self, deployment: DeploymentInfo, revision: int | None) -> DeploymentContext:
        if revision is None:
            return self._repo.fetch_deployment_context(deployment)
        return self._repo.fetch_deployment_context(deployment, revision=revision)


def _probed_and_failed(seen: HealthStatus | None) -> bool:
    """The health checker probed the route and it did not pass: a record that says unhealthy,
    or says what a probe saw (the prober writes that before it decides)."""
    if seen is None or seen.status is HealthCheckStatus.HEALTHY:
        return False
    return seen.status is HealthCheckStatus.UNHEALTHY or seen.detail is not None


def _session_failure(route: RouteData, status: SessionStatus | None) -> ModelfleetError | None:
    if status is None:
        return RouteSessionNotFound(route.id)
    if status.is_terminal:
        return RouteSessionTerminated(route.id, status)
    return None


def _route_error(route: RouteData, reason: str, failure: Exception) -> RouteExecutionError:
    return RouteExecutionError(
        route_info=route,
        reason=reason,
        error_detail=str(failure),
        error_code=error_code_of(failure),
    )

"""Statuses: where routes, deployments and sessions are in their lives, and health as read."""

from __future__ import annotations

from enum import StrEnum


class RouteStatus(StrEnum):
    """Where one replica of a deployment is in its life."""

    PROVISIONING = "provisioning"
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    DEGRADED = "degraded"
    # Out of traffic, its session still running: requests in flight finish (drain_s).
    DRAINING = "draining"
    TERMINATING = "terminating"
    TERMINATED = "terminated"
    FAILED_TO_START = "failed_to_start"


# Routes that count towards a deployment's replicas.
ACTIVE_ROUTE_STATUSES = frozenset(
    {RouteStatus.PROVISIONING, RouteStatus.HEALTHY, RouteStatus.UNHEALTHY, RouteStatus.DEGRADED}
)


class EntityKind(StrEnum):
    """What a phase works on: the rows whose statuses it moves."""

    ROUTE = "route"
    DEPLOYMENT = "deployment"
    HOST = "host"


class RoutingPolicy(StrEnum):
    """How a proxy picks a replica within the revision the weights chose."""

    ROUND_ROBIN = "round-robin"  # smooth weighted round robin
    LEAST_REQUEST = "least-request"  # fewer in flight, of two chosen at random
    PREFIX_CACHE = "prefix-cache"  # where the prompt's prefix is cached, unless too busy


class TrafficStatus(StrEnum):
    """Whether a route's session may get requests once it serves."""

    ACTIVE = "active"  # in the traffic set when healthy
    STANDBY = "standby"  # a blue-green route kept out until its rollout is promoted
    INACTIVE = "inactive"  # out of traffic for good (draining, and after)


class DeploymentLifecycle(StrEnum):
    PENDING = "pending"
    SCALING = "scaling"
    READY = "ready"
    DEPLOYING = "deploying"  # a rollout to another revision is in progress
    DESTROYING = "destroying"
    DESTROYED = "destroyed"


# A deployment that still serves or will (not on its way out).
LIVE_LIFECYCLES = frozenset({DeploymentLifecycle.PENDING, DeploymentLifecycle.SCALING,
                             DeploymentLifecycle.READY, DeploymentLifecycle.DEPLOYING})  # fmt: skip


class EndpointMode(StrEnum):
    """What a proxy does with a request for a deployment that has no replica to send it to
    (a deployment with neither answers 503 at once: nothing ready)."""

    WAKES = "wakes"  # scale to zero is on: hold the request and announce a wake
    OPERATOR_ZERO = "operator-zero"  # an operator asked for 0 replicas: 503 at once
    # Its replicas cannot start now (a crash loop, no room, never healthy): 503 at once with
    # why, not held for a wake that cannot come.
    UNAVAILABLE = "unavailable"


class SessionStatus(StrEnum):
    """A scheduler session's status (upper case, as schedulers spell them)."""

    PENDING = "PENDING"
    SCHEDULED = "SCHEDULED"
    PREPARING = "PREPARING"
    CREATING = "CREATING"
    RUNNING = "RUNNING"
    TERMINATING = "TERMINATING"
    TERMINATED = "TERMINATED"
    ERROR = "ERROR"
    CANCELLED = "CANCELLED"
    # Its host was lost: the controller gave it up (its host stops it if it comes back).
    LOST = "LOST"

    @property
    def is_terminal(self) -> bool:
        return self in _TERMINAL_SESSION_STATUSES


_TERMINAL_SESSION_STATUSES = frozenset(
    {SessionStatus.TERMINATED, SessionStatus.ERROR, SessionStatus.CANCELLED, SessionStatus.LOST}
)


class HostStatus(StrEnum):
    """Where a machine that runs sessions is in its life."""

    READY = "ready"  # takes new sessions
    CORDONED = "cordoned"  # takes no new sessions; its replicas stay
    DRAINING = "draining"  # cordoned, and its replicas are moving off (surge first)
    # Silent, or heard only through Redis, but not given up: the controller presumes the
    # fault its own (most hosts silent at once) or waits its turn to give one up. It
    # takes no new session; nothing on it is stopped.
    UNREACHABLE = "unreachable"
    LOST = "lost"  # no heartbeat for MODELFLEET_HOST_LOST_AFTER_S: nothing on it is trusted


# What an operator may ask of a host (its `intent`): the status it has while it lives.
# Liveness (unreachable, lost) is the controller's finding and never changes the intent.
HOST_INTENTS = frozenset({HostStatus.READY, HostStatus.CORDONED, HostStatus.DRAINING})


class HealthCheckStatus(StrEnum):
    HEALTHY = "healthy"
    UNHEALTHY = "unhealthy"
    STALE = "stale"


class OutcomeBucket(StrEnum):
    """Which list of an executor's result an entity ended up in."""

    SUCCESS = "success"
    ERROR = "error"
    STALE = "stale"
    SKIPPED = "skipped"  # nothing to do for it
    WAITING = "waiting"  # not done yet: the phase comes back to it

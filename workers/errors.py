"""Named failures, each with a stable `error_code` that lands in error records and history.

Two families matter to callers:
- an item's failure (`ModelfleetError` and its subclasses, or any foreign exception)
  becomes an error record for that item and the batch goes on;
- `InfrastructureUnavailable` means a store the whole batch needs (database,
  Redis) is unreachable: executors let it propagate so the task can retry later.
"""

from __future__ import annotations

from typing import ClassVar
from uuid import UUID


class ModelfleetError(Exception):
    error_code: ClassVar[str] = "modelfleet_error"


class InfrastructureUnavailable(ModelfleetError):
    """A store every item depends on is unreachable; retry the whole batch later."""

    error_code = "infrastructure_unavailable"


class ComeBackLater(ModelfleetError):
    """Not a failure: the item cannot be done now and the phase comes back to it (a waiting
    outcome, its message saying for what)."""

    error_code = "come_back_later"


class NoHostAvailable(ComeBackLater):
    """No ready host has a free slot for one more session."""

    error_code = "no_host_slot"


class HostLost(ModelfleetError):
    """A host's agent said nothing for too long: nothing on it can be trusted."""

    error_code = "host_lost"

    def __init__(self, name: str, silent_s: float) -> None:
        super().__init__(f"host {name} lost (no heartbeat for {silent_s:.0f} s)")


class HostUnreachable(ComeBackLater):
    """A host silent (or heard in Redis only) that the controller does not give up: it
    presumes the fault its own, or the host waits its turn. Nothing on it is stopped."""

    error_code = "host_unreachable"


class EndpointNotFound(ModelfleetError):
    error_code = "endpoint_not_found"

    def __init__(self, endpoint_id: UUID) -> None:
        super().__init__(f"Deployment not found: {endpoint_id}")


class DeploymentNotActive(ModelfleetError):
    """A route cannot be started for a deployment that is being destroyed."""

    error_code = "deployment_not_active"

    def __init__(self, endpoint_id: UUID, lifecycle: str) -> None:
        super().__init__(f"Deployment {endpoint_id} is {lifecycle}; no new sessions")


class RouteSessionNotFound(ModelfleetError):
    error_code = "route_session_not_found"

    def __init__(self, route_id: UUID) -> None:
        super().__init__(f"No session found for route {route_id}")


class RouteSessionTerminated(ModelfleetError):
    error_code = "route_session_terminated"

    def __init__(self, route_id: UUID, session_status: str) -> None:
        super().__init__(f"Session of route {route_id} ended with status {session_status}")


class SessionNeverStarted(ModelfleetError):
    """A session asked for long ago that no agent has started: given up and replaced."""

    error_code = "session_never_started"

    def __init__(self, waited_s: float, deadline_s: float) -> None:
        super().__init__(
            f"session not running {waited_s:.0f} s after it was asked for (start deadline "
            f"{deadline_s:g} s): given up, a replacement starts"
        )


# What a health checker's probe saw, appended to the messages below, so a rollback can
# quote it ("/health answered 404"); `probe_saw` reads it back from a history message.
PROBE_SAW = "; the probe saw: "


def probe_saw(message: str) -> str | None:
    """What the probe saw, from a message that says so (see `PROBE_SAW`)."""
    _, mark, seen = message.rpartition(PROBE_SAW)
    return seen if mark and seen else None


def _saying(message: str, seen: str | None) -> str:
    return f"{message}{PROBE_SAW}{seen}" if seen else message


class RouteUnhealthy(ModelfleetError):
    error_code = "route_unhealthy"

    def __init__(self, route_id: UUID, seen: str | None = None) -> None:
        super().__init__(_saying(f"Route {route_id} failed its health check", seen))


class NeverHealthy(ModelfleetError):
    """A new replica did not pass its health check within its revision's health budget."""

    error_code = "never_healthy"

    def __init__(self, budget_s: float, seen: str | None) -> None:
        super().__init__(_saying(f"never became healthy within {budget_s:g} s", seen))


class ReplicaCountMismatch(ModelfleetError):
    error_code = "replica_count_mismatch"

    def __init__(self, *, expected: int, actual: int) -> None:
        super().__init__(f"Expected {expected} active routes, found {actual}")
        self.expected = expected
        self.actual = actual


class InvalidReplicaCount(ModelfleetError):
    error_code = "invalid_replica_count"

    def __init__(self, count: int) -> None:
        super().__init__(f"Target replica count must be >= 0, got {count}")


class RevisionMissing(ModelfleetError):
    """A deployment has no target revision, so there is nothing to start."""

    error_code = "revision_missing"

    def __init__(self, endpoint_id: UUID) -> None:
        super().__init__(f"Deployment {endpoint_id} has no target revision")


class RolloutFailed(ModelfleetError):
    """A rollout failed and was rolled back; the message says why."""

    error_code = "rollout_failed"

    def __init__(self, revision: int, why: str) -> None:
        super().__init__(why)
        self.revision = revision


class AppProxyResponseInvalid(ModelfleetError):
    error_code = "app_proxy_response_invalid"


class AppProxyRequestFailed(ModelfleetError):
    """The app proxy could not be reached or answered with an error status.

    `temporary` is true when trying again later may help: no answer at all, or
    a 5xx. The message names the request and the status, never the token.
    """

    error_code = "app_proxy_request_failed"

    def __init__(self, message: str, *, status: int | None) -> None:
        super().__init__(message)
        self.status = status

    @property
    def temporary(self) -> bool:
        return self.status is None or self.status >= 500


def error_code_of(error: BaseException) -> str | None:
    """The stable code of a modelfleet failure; None for a foreign exception."""
    if isinstance(error, ModelfleetError):
        return error.error_code
    return None

"""The words modelfleet speaks: statuses, entities, the executors' result types, rollouts.

Plain values only: no I/O, no clock, no library beyond the standard one. Every
other layer imports from here (`from workers.domain import RouteStatus, ...`);
this package imports from nobody.
"""

from __future__ import annotations

from workers.domain.entities import (
    REVISION_VARIABLE,
    AutoScalingMetricsData,
    AutoScalingRule,
    CleanupConfig,
    Comparator,
    DeploymentContext,
    DeploymentInfo,
    HealthCheckConfig,
    HealthStatus,
    MetricSource,
    ModelRevision,
    ModelServiceMetadata,
    RouteBatchUpdater,
    RouteCreator,
    RouteData,
    RouteDiscoveryData,
    ScalingGroupProxyTarget,
    SessionId,
    SessionSpec,
    StartupProgress,
)
from workers.domain.results import (
    DeploymentExecutionError,
    DeploymentExecutionResult,
    DeploymentTransition,
    RouteExecutionError,
    RouteExecutionResult,
    RouteTransition,
    StatusTransition,
)
from workers.domain.rollouts import (
    RevisionFailures,
    RolloutOutcome,
    RolloutSpec,
    RolloutState,
    RolloutStep,
    RolloutStrategy,
)
from workers.domain.statuses import (
    ACTIVE_ROUTE_STATUSES,
    DeploymentLifecycle,
    HealthCheckStatus,
    OutcomeBucket,
    RouteStatus,
    SessionStatus,
)

__all__ = [
    "ACTIVE_ROUTE_STATUSES",
    "REVISION_VARIABLE",
    "AutoScalingMetricsData",
    "AutoScalingRule",
    "CleanupConfig",
    "Comparator",
    "DeploymentContext",
    "DeploymentExecutionError",
    "DeploymentExecutionResult",
    "DeploymentInfo",
    "DeploymentLifecycle",
    "DeploymentTransition",
    "HealthCheckConfig",
    "HealthCheckStatus",
    "HealthStatus",
    "MetricSource",
    "ModelRevision",
    "ModelServiceMetadata",
    "OutcomeBucket",
    "RevisionFailures",
    "RolloutOutcome",
    "RolloutSpec",
    "RolloutState",
    "RolloutStep",
    "RolloutStrategy",
    "RouteBatchUpdater",
    "RouteCreator",
    "RouteData",
    "RouteDiscoveryData",
    "RouteExecutionError",
    "RouteExecutionResult",
    "RouteStatus",
    "RouteTransition",
    "ScalingGroupProxyTarget",
    "SessionId",
    "SessionSpec",
    "SessionStatus",
    "StartupProgress",
    "StatusTransition",
]

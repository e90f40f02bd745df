"""The composition root: builds every adapter from `Settings` and wires the executors.

Call once per process (for Celery, after the worker forks); nothing here runs
at import. `Adapters.close()` releases pools and sockets.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis
import sqlalchemy as sa

from workers.adapters.app_proxy_http import HttpAppProxy
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.hosts import PostgresHostRegistry
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.redis.activity import RedisRequestActivity, wake_feed
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.controller_metrics import RedisControllerMetrics
from workers.adapters.redis.discovery import RedisServiceDiscovery
from workers.adapters.redis.feeds import RedisFeed
from workers.adapters.redis.health import RedisHealthStore
from workers.adapters.redis.hosts import RedisHostSignals
from workers.adapters.redis.keys import RedisKeys
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.adapters.redis.phase_runs import RedisOutcomeStore, RedisPhaseLock, RedisRunProgress
from workers.config import Settings
from workers.domain import AutoscaleDecision, DeploymentInfo
from workers.executors import DeploymentExecutor, HostExecutor, RouteExecutor
from workers.phase_names import PhaseName
from workers.policies.autoscaling import ScalingDecision, direction
from workers.policies.host_liveness import LivenessRules
from workers.ports import PhaseStore

# `hosts.check` runs missed for this many of its intervals mean the controller was blind.
BLIND_AFTER_TICKS = 3


@dataclass(frozen=True)
class Adapters:
    settings: Settings
    engine: sa.Engine
    redis: redis.Redis
    repository: PostgresDeploymentRepository
    scheduler: SessionTableScheduler
    health_store: RedisHealthStore
    service_discovery: RedisServiceDiscovery
    metrics: RedisMetricsStore
    app_proxy: HttpAppProxy
    phase_store: PhaseStore
    phase_lock: RedisPhaseLock
    outcomes: RedisOutcomeStore
    run_progress: RedisRunProgress
    controller_metrics: RedisControllerMetrics
    host_registry: PostgresHostRegistry
    host_signals: RedisHostSignals
    activity: RedisRequestActivity
    wakes: RedisFeed

    def route_executor(self) -> RouteExecutor:
        return RouteExecutor(
            deployment_repo=self.repository,
            scheduling_controller=self.scheduler,
            health_store=self.health_store,
            service_discovery=self.service_discovery,
            start_deadline_s=self.settings.session_start_deadline_s,
        )

    def host_executor(self) -> HostExecutor:
        hosts = self.settings.hosts
        rules = LivenessRules(hosts.lost_after_s, hosts.disruption_threshold,
                              hosts.give_up_interval_s)  # fmt: skip
        return HostExecutor(
            host_registry=self.host_registry,
            host_signals=self.host_signals,
            rules=rules,
            blind_after_s=blind_after_s(self.settings),
        )

    def deployment_executor(self) -> DeploymentExecutor:
        return DeploymentExecutor(
            deployment_repo=self.repository, app_proxy=self.app_proxy, activity=self.activity
        )

    def close(self) -> None:
        self.run_progress.close()
        self.app_proxy.close()
        self.redis.close()
        self.engine.dispose()


def build_adapters(settings: Settings) -> Adapters:
    engine = create_database_engine(settings.database_url)
    client = create_redis_client(settings.redis_url)
    keys = RedisKeys(prefix=settings.redis_key_prefix)
    metrics = RedisMetricsStore(client=client, keys=keys)
    controller_metrics = RedisControllerMetrics(client=client, keys=keys)

    def count_decision(deployment: DeploymentInfo, decision: ScalingDecision) -> None:
        controller_metrics.autoscaling_decision(
            deployment.name,
            direction(deployment, decision),
            decision.rule.metric_name,
            decision.metric_value,
        )

    def count_autoscaled(name: str, before: int, decision: AutoscaleDecision) -> None:
        moved = "up" if decision.desired > before else "down"
        controller_metrics.autoscaling_decision(name, moved, "traffic", decision.value)

    return Adapters(
        settings=settings,
        engine=engine,
        redis=client,
        repository=PostgresDeploymentRepository(
            engine=engine,
            metrics=metrics,
            on_decision=count_decision,
            on_autoscaled=count_autoscaled,
        ),
        scheduler=SessionTableScheduler(engine=engine),
        health_store=RedisHealthStore(client=client, keys=keys),
        service_discovery=RedisServiceDiscovery(client=client, keys=keys),
        metrics=metrics,
        app_proxy=HttpAppProxy(settings=settings.app_proxy),
        phase_store=PostgresPhaseStore(engine=engine),
        phase_lock=RedisPhaseLock(client=client, keys=keys),
        outcomes=RedisOutcomeStore(client=client, keys=keys),
        run_progress=RedisRunProgress(client=client, keys=keys),
        controller_metrics=controller_metrics,
        host_registry=PostgresHostRegistry(engine=engine),
        host_signals=RedisHostSignals(client=client, keys=keys),
        activity=RedisRequestActivity(client=client, keys=keys),
        wakes=wake_feed(client, keys),
    )


def blind_after_s(settings: Settings) -> float:
    """A gap between two looks at the hosts longer than this is the controller's own blind
    spell (its database down, its workers frozen): silences count only from after it.
    Half the time a host has before it is lost, and never under three of the phase's
    ticks (a slower tick would otherwise look blind every time)."""
    interval_s = settings.phases.intervals_s.get(PhaseName.CHECK_HOSTS, 1.0)
    return max(settings.hosts.lost_after_s / 2, BLIND_AFTER_TICKS * interval_s)

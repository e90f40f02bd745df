"""Autoscaling through the repository: rules from PostgreSQL, metrics from Redis."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import redis
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from workers.adapters.app_proxy_http import HttpAppProxy
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import autoscaling_rules, deployment_history
from workers.adapters.redis.keys import RedisKeys
from workers.adapters.redis.metrics import RedisMetricsStore
from workers.config import AppProxySettings
from workers.domain import (
    AutoScalingRule,
    Comparator,
    DeploymentInfo,
    MetricSource,
    SessionId,
)
from workers.executors import DeploymentExecutor
from workers.executors.payloads import session_spec

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)


class Clock:
    def __init__(self) -> None:
        self.now = NOW

    def __call__(self) -> datetime:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def repo(
    engine: sa.Engine, metrics_store: RedisMetricsStore, clock: Clock
) -> PostgresDeploymentRepository:
    return PostgresDeploymentRepository(engine=engine, metrics=metrics_store, clock=clock)


@pytest.fixture
def deployment(catalog: Catalog) -> DeploymentInfo:
    catalog.create_scaling_group("sg1")
    return catalog.create_deployment(make_deployment(replica_count=1))


def _scale_out_rule(**overrides: object) -> AutoScalingRule:
    fields: dict[str, object] = {
        "metric_source": MetricSource.INFERENCE_FRAMEWORK,
        "metric_name": "requests_in_flight",
        "threshold": 5.0,
        "comparator": Comparator.GREATER_THAN,
        "step_size": 1,
        "cooldown_s": 60,
        "max_replicas": 3,
    }
    return AutoScalingRule(**(fields | overrides))  # type: ignore[arg-type]


def _last_triggered(engine: sa.Engine, rule: AutoScalingRule) -> datetime | None:
    with engine.connect() as conn:
        query = sa.select(autoscaling_rules.c.last_triggered_at).where(
            autoscaling_rules.c.id == rule.id
        )
        value: datetime | None = conn.execute(query).scalar_one()
        return value


def _desired(repo: PostgresDeploymentRepository, deployment: DeploymentInfo) -> int | None:
    return repo.get_endpoints_by_ids({deployment.id})[0].desired_replica_count


def test_rules_come_back_oldest_first(
    repo: PostgresDeploymentRepository, catalog: Catalog, deployment: DeploymentInfo
) -> None:
    first = catalog.add_autoscaling_rule(deployment.id, _scale_out_rule(step_size=2))
    second = catalog.add_autoscaling_rule(deployment.id, _scale_out_rule(step_size=-1))
    rules = repo.fetch_auto_scaling_rules_by_endpoint_ids({deployment.id})[deployment.id]
    assert [r.id for r in rules] == [first.id, second.id]
    assert rules[0] == first


def test_metrics_are_read_from_redis_for_deployments_with_rules(
    repo: PostgresDeploymentRepository,
    catalog: Catalog,
    metrics_store: RedisMetricsStore,
    deployment: DeploymentInfo,
) -> None:
    rule = catalog.add_autoscaling_rule(deployment.id, _scale_out_rule())
    route = make_route(deployment)
    catalog.add_routes([route])
    metrics_store.write_deployment_metrics(deployment.id, {"requests_in_flight": 7.0})
    metrics = repo.fetch_metrics_for_autoscaling([deployment], {deployment.id: [rule]})
    assert metrics.endpoint_metrics == {deployment.id: {"requests_in_flight": 7.0}}
    assert [r.id for r in metrics.routes_by_endpoint[deployment.id]] == [route.id]


def test_non_numeric_metrics_are_ignored(
    metrics_store: RedisMetricsStore,
    redis_client: redis.Redis,
    redis_keys: RedisKeys,
    deployment: DeploymentInfo,
) -> None:
    metrics_store.write_deployment_metrics(deployment.id, {"good": 1.5})
    redis_client.hset(redis_keys.deployment_metrics(deployment.id), "bad", "lots")
    session = SessionId(deployment.id)
    assert metrics_store.read([deployment.id], [session]) == ({deployment.id: {"good": 1.5}}, {})


def test_a_firing_rule_saves_the_count_and_stamps_itself_in_one_go(
    repo: PostgresDeploymentRepository,
    catalog: Catalog,
    metrics_store: RedisMetricsStore,
    engine: sa.Engine,
    clock: Clock,
    deployment: DeploymentInfo,
) -> None:
    rule = catalog.add_autoscaling_rule(deployment.id, _scale_out_rule())
    proxy = HttpAppProxy(settings=AppProxySettings())  # not called by this method
    executor = DeploymentExecutor(deployment_repo=repo, app_proxy=proxy)
    metrics_store.write_deployment_metrics(deployment.id, {"requests_in_flight": 9.0})

    first = executor.calculate_desired_replicas([deployment])
    assert [d.id for d in first.successes] == [deployment.id]
    assert _desired(repo, deployment) == 2
    assert _last_triggered(engine, rule) == NOW

    clock.now = NOW + timedelta(seconds=30)  # still cooling down: no change
    current = repo.get_endpoints_by_ids({deployment.id})
    assert [d.id for d in executor.calculate_desired_replicas(current).skipped] == [deployment.id]
    assert _last_triggered(engine, rule) == NOW

    clock.now = NOW + timedelta(seconds=61)
    executor.calculate_desired_replicas(repo.get_endpoints_by_ids({deployment.id}))
    assert _desired(repo, deployment) == 3
    assert _last_triggered(engine, rule) == clock.now

    clock.now = NOW + timedelta(seconds=200)  # at max_replicas: nothing changes, no stamp
    executor.calculate_desired_replicas(repo.get_endpoints_by_ids({deployment.id}))
    assert _desired(repo, deployment) == 3
    assert _last_triggered(engine, rule) == NOW + timedelta(seconds=61)


def test_session_metrics_drive_a_session_rule(
    repo: PostgresDeploymentRepository,
    catalog: Catalog,
    metrics_store: RedisMetricsStore,
    deployment: DeploymentInfo,
    engine: sa.Engine,
) -> None:
    route = make_route(deployment)
    catalog.add_routes([route])
    context = repo.fetch_deployment_context(deployment)
    session_id = SessionTableScheduler(engine=engine).enqueue_session(session_spec(route, context))
    repo.update_route_sessions({route.id: session_id})
    rule = catalog.add_autoscaling_rule(
        deployment.id,
        _scale_out_rule(metric_source=MetricSource.SESSION, metric_name="cpu_util", threshold=80),
    )
    metrics_store.write_session_metrics(session_id, {"cpu_util": 95.0})
    metrics = repo.fetch_metrics_for_autoscaling([deployment], {deployment.id: [rule]})
    assert repo.calculate_desired_replicas_for_deployment(deployment, [rule], metrics) == 2


def test_each_decision_leaves_a_history_row_with_rule_value_and_threshold(
    engine: sa.Engine,
    metrics_store: RedisMetricsStore,
    catalog: Catalog,
    clock: Clock,
    deployment: DeploymentInfo,
) -> None:
    """Like Kubernetes' SuccessfulRescale event; and the decision is handed on (to metrics)."""
    decided: list[tuple[str, int, float]] = []
    repo = PostgresDeploymentRepository(
        engine=engine, metrics=metrics_store, clock=clock,
        on_decision=lambda d, decision: decided.append(
            (d.name, decision.replicas, decision.metric_value)
        ),
    )  # fmt: skip
    rule = catalog.add_autoscaling_rule(
        deployment.id, _scale_out_rule(comparator=Comparator.GREATER_THAN_OR_EQUAL,
                                       threshold=2.0, step_size=2)
    )  # fmt: skip
    metrics_store.write_deployment_metrics(deployment.id, {"requests_in_flight": 2.7})
    executor = DeploymentExecutor(deployment_repo=repo,
                                  app_proxy=HttpAppProxy(settings=AppProxySettings()))  # fmt: skip
    executor.calculate_desired_replicas([deployment])
    with engine.connect() as conn:
        [row] = conn.execute(
            sa.select(deployment_history).where(deployment_history.c.deployment_id == deployment.id)
        ).mappings().all()  # fmt: skip
    assert row["message"] == f"scaled 1 -> 3: requests_in_flight 2.7 >= 2 (rule {rule.id})"
    assert (row["phase"], row["result"]) == ("deployments.check_replicas", "success")
    assert decided == [(deployment.name, 3, 2.7)]

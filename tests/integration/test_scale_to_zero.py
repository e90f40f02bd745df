"""Scale to zero on PostgreSQL and Redis, the phases run in this process: an idle deployment
goes to zero, a wake brings it back once, an operator's zero stays, and the commands."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any
from uuid import UUID, uuid4

import pytest
import redis
import sqlalchemy as sa
from click.testing import Result

from workers.adapters.postgres.deployment_repository import PostgresDeploymentRepository
from workers.adapters.postgres.schema import deployment_history, deployments, routes, sessions
from workers.adapters.redis.activity import wake_feed
from workers.adapters.redis.keys import RedisKeys
from workers.contracts.service_discovery import modes_from_fields
from workers.domain import EndpointMode, EndpointState
from workers.phase_names import PhaseName
from workers.phase_runs import PhaseRun

RunPhase = Callable[[str], PhaseRun | None]


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def serving(run: Any, engine: sa.Engine) -> UUID:
    """`svc`: 2 replicas asked for, scale to zero after 5 s, ready, idle for a minute."""
    assert run("scaling-group", "create", "rg").exit_code == 0
    created = _json(run("deployment", "create", "svc", "--group", "rg", "--image", "img",
                        "--replicas", "2", "--scale-to-zero-after-s", "5", "--json"))  # fmt: skip
    with engine.begin() as conn:  # as if the phases had made it ready a minute ago
        conn.execute(deployments.update().values(
            lifecycle="ready", idle_counts_from=sa.func.now() - sa.text("interval '60 seconds'")
        ))  # fmt: skip
    return UUID(created["id"])


def _row(engine: sa.Engine, deployment_id: UUID) -> sa.RowMapping:
    query = sa.select(deployments).where(deployments.c.id == deployment_id)
    with engine.connect() as conn:
        return conn.execute(query).mappings().one()


def _said(engine: sa.Engine, phase: str) -> list[str]:
    query = sa.select(deployment_history.c.message).where(deployment_history.c.phase == phase)
    with engine.connect() as conn:
        return [str(m) for m in conn.execute(query).scalars()]


def test_an_idle_deployment_goes_to_zero_and_one_wake_brings_its_replicas_back(
    run: Any, run_phase: RunPhase, engine: sa.Engine, serving: UUID,
    redis_client: redis.Redis, redis_keys: RedisKeys,
) -> None:  # fmt: skip
    run_phase(PhaseName.SCALE_TO_ZERO)
    zeroed = _row(engine, serving)
    assert (zeroed["lifecycle"], zeroed["replica_count"], zeroed["zeroed_from"]) == (
        "scaling", 0, 2,
    )  # fmt: skip
    [note] = _said(engine, PhaseName.SCALE_TO_ZERO)
    assert re.fullmatch(r"scaled to zero: after 6\d s idle \(2 replicas before\); wakes on request",
                        note), note  # fmt: skip
    run_phase(PhaseName.SCALE)
    shown = _json(run("deployment", "show", "svc", "--json"))
    assert (shown["lifecycle"], shown["ready"], shown["reason"]) == (
        "ready", "0/0", "scaled to zero after 5 s idle; wakes on request",
    )  # fmt: skip
    assert (shown["scale_to_zero_after_s"], shown["idle_s"]) == (5.0, None)
    run_phase(PhaseName.SYNC_SERVICE_DISCOVERY)
    assert modes_from_fields(_hash(redis_client, redis_keys.endpoint_modes)) == {
        str(serving): EndpointState(EndpointMode.WAKES)
    }

    feed = wake_feed(redis_client, redis_keys)
    feed.announce([str(serving)])
    feed.announce([str(serving)])  # a second burst while the first wake is on its way
    run_phase(PhaseName.WAKE)
    woken = _row(engine, serving)
    assert (woken["lifecycle"], woken["replica_count"], woken["zeroed_from"]) == (
        "scaling", 2, None,
    )  # fmt: skip
    feed.announce([str(serving)])
    run_phase(PhaseName.WAKE)
    [wake] = _said(engine, PhaseName.WAKE)  # one wake, one row
    assert wake.startswith("woken by a request: 2 replicas after ")


def test_a_recent_request_keeps_it_up(
    run_phase: RunPhase, engine: sa.Engine, serving: UUID, redis_client: redis.Redis,
    redis_keys: RedisKeys,
) -> None:  # fmt: skip
    now_s = float(redis_client.time()[0])
    redis_client.zadd(redis_keys.last_requests, {str(serving): now_s - 2})
    run_phase(PhaseName.SCALE_TO_ZERO)
    assert _row(engine, serving)["replica_count"] == 2
    assert _said(engine, PhaseName.SCALE_TO_ZERO) == []


def test_an_operators_zero_does_not_wake_and_turning_the_setting_off_at_zero_brings_it_back(
    run: Any, run_phase: RunPhase, engine: sa.Engine, serving: UUID,
    redis_client: redis.Redis, redis_keys: RedisKeys,
) -> None:  # fmt: skip
    assert run("deployment", "scale", "svc", "0").exit_code == 0
    run_phase(PhaseName.SCALE)
    run_phase(PhaseName.SYNC_SERVICE_DISCOVERY)
    assert modes_from_fields(_hash(redis_client, redis_keys.endpoint_modes)) == {
        str(serving): EndpointState(EndpointMode.OPERATOR_ZERO)
    }
    shown = _json(run("deployment", "show", "svc", "--json"))
    assert (shown["ready"], shown["reason"]) == ("0/0", "scaled to 0 by an operator")
    wake_feed(redis_client, redis_keys).announce([str(serving)])
    run_phase(PhaseName.WAKE)
    assert _row(engine, serving)["replica_count"] == 0

    assert run("deployment", "scale", "svc", "2").exit_code == 0
    run_phase(PhaseName.SCALE)
    run_phase(PhaseName.SCALE_TO_ZERO)  # idle: its count restarted with the operator's scale
    assert _row(engine, serving)["replica_count"] == 2
    with engine.begin() as conn:
        conn.execute(deployments.update().values(
            idle_counts_from=sa.func.now() - sa.text("interval '60 seconds'")))  # fmt: skip
    run_phase(PhaseName.SCALE_TO_ZERO)
    run_phase(PhaseName.SCALE)
    changed = _json(run("deployment", "set", "svc", "--scale-to-zero-after-s", "0", "--json"))
    assert changed["changed"] == ["scale_to_zero_after_s: 5 -> off"]
    back = _row(engine, serving)
    assert (back["lifecycle"], back["replica_count"], back["zeroed_from"]) == ("scaling", 2, None)


def test_set_changes_settings_and_says_what_changed(run: Any, serving: UUID) -> None:
    said = run("deployment", "set", "svc", "--drain-s", "30", "--scale-to-zero-after-s", "600")
    assert said.exit_code == 0, said.output
    assert said.output.strip() == (
        "deployment svc: drain_s: 10 -> 30; scale_to_zero_after_s: 5 -> 600"
    )
    again = run("deployment", "set", "svc", "--drain-s", "30")
    assert again.output.strip() == "deployment svc: nothing changed"


@pytest.mark.parametrize("value", ["-1", "nan", "1e400", "inf", "soon"])
@pytest.mark.parametrize("command", ["create", "set"])
def test_a_bad_idle_time_is_one_line_exit_2_and_changes_nothing(
    run: Any, engine: sa.Engine, command: str, value: str
) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    assert run("deployment", "create", "kept", "--group", "rg", "--image", "i").exit_code == 0
    before = _row_by_name(engine, "kept")
    args = (["deployment", "create", "new", "--group", "rg", "--image", "i"]
            if command == "create" else ["deployment", "set", "kept"])  # fmt: skip
    result = run(*args, "--scale-to-zero-after-s", value)
    assert result.exit_code == 2, result.output
    [line] = result.output.strip().splitlines()
    assert line.startswith("Error: Invalid value for '--scale-to-zero-after-s'")
    assert _row_by_name(engine, "kept") == before
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deployments)).scalar() == 1


def test_set_without_a_setting_or_on_a_destroyed_deployment_is_refused(
    run: Any, serving: UUID
) -> None:
    nothing = run("deployment", "set", "svc")
    assert (nothing.exit_code, nothing.output.strip()) == (
        2, "Error: options: give --scale-to-zero-after-s, --drain-s, --start-deadline-s, --routing "
        "or --autoscale and its options",
    )  # fmt: skip
    unknown = run("deployment", "set", "nope", "--drain-s", "1")
    assert unknown.output.strip() == "Error: DEPLOYMENT: no deployment named or with id 'nope'"


def _row_by_name(engine: sa.Engine, name: str) -> dict[str, Any]:
    query = sa.select(deployments).where(deployments.c.name == name)
    with engine.connect() as conn:
        return dict(conn.execute(query).mappings().one())


def _hash(client: redis.Redis, key: str) -> dict[str, str]:
    found: dict[str, str] = client.hgetall(key)  # type: ignore[assignment]
    return found


def test_a_deployment_whose_replicas_cannot_start_is_refused_saying_why_not_held(
    engine: sa.Engine, serving: UUID, repository: PostgresDeploymentRepository
) -> None:
    assert repository.fetch_endpoint_modes() == {serving: EndpointState(EndpointMode.WAKES)}
    with engine.begin() as conn:  # two of its sessions exited on their own a moment ago
        for _ in range(2):
            route_id, session_id = uuid4(), uuid4()
            conn.execute(routes.insert().values(id=route_id, deployment_id=serving, revision=1,
                                                status="terminated"))  # fmt: skip
            conn.execute(sessions.insert().values(
                id=session_id, route_id=route_id, name="s", spec={}, status="ERROR",
                terminated_at=sa.func.now()))  # fmt: skip
    why = "its replicas keep exiting: 2 sessions ended on their own in the last 10 minutes"
    looping = repository.fetch_endpoint_modes()[serving]
    assert looping == EndpointState(EndpointMode.UNAVAILABLE, why)
    with engine.begin() as conn:
        conn.execute(sessions.delete())
        conn.execute(deployments.update().values(
            condition_reason="no_host_slot",
            condition_message="no host with a free slot: 2 hosts, all full"))  # fmt: skip
    assert repository.fetch_endpoint_modes()[serving] == EndpointState(
        EndpointMode.UNAVAILABLE, "no host with a free slot: 2 hosts, all full")  # fmt: skip

"""The traffic autoscaler on PostgreSQL and Redis, its phase run in this process: the
proxies' load read back, a burst scaled at once with the numbers in history, a rollout's
count followed, zero and a wake to what is held, and the commands."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any
from uuid import UUID

import pytest
import redis
import sqlalchemy as sa
from click.testing import Result

from workers.adapters.postgres.schema import deployment_history, deployments
from workers.adapters.redis.activity import RedisRequestActivity
from workers.adapters.redis.client import server_time_s
from workers.adapters.redis.keys import RedisKeys
from workers.composition import Adapters
from workers.contracts.load import busy_field, started_field
from workers.domain import EndpointMode
from workers.phase_runs import PhaseRun
from workers.standalone.proxy.counting import LoadMeter

RunPhase = Callable[[str], PhaseRun | None]


def _json(result: Result) -> Any:
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def tracked(run: Any, engine: sa.Engine) -> UUID:
    """`llm`: concurrency target 2 per replica, 1-10 replicas, ready with 2."""
    assert run("scaling-group", "create", "rg").exit_code == 0
    created = _json(run("deployment", "create", "llm", "--group", "rg", "--image", "img",
                        "--replicas", "2", "--autoscale", "concurrency", "--target", "2",
                        "--max-replicas", "10", "--json"))  # fmt: skip
    with engine.begin() as conn:
        conn.execute(deployments.update().values(lifecycle="ready"))
    return UUID(created["id"])


def _load(client: redis.Redis, keys: RedisKeys, deployment_id: UUID, in_flight: float,
          seconds: int, per_second: int = 0) -> None:  # fmt: skip
    """What the proxies would have written: `in_flight` for the last `seconds` seconds,
    written early in a second so that the read after it ends on the same second."""
    now = _early_in_a_second(client)
    for second in range(now - seconds, now):
        client.hset(keys.load_second(second), mapping={
            busy_field(str(deployment_id)): in_flight,
            started_field(str(deployment_id)): per_second})  # fmt: skip


def _early_in_a_second(client: redis.Redis) -> int:
    """The Redis server's current second, waiting for the next one when less than
    half of this one is left (a read that crossed into the next second would see a
    last second nobody wrote)."""
    now_s = server_time_s(client.time())
    if now_s % 1 > 0.5:
        time.sleep(1.01 - now_s % 1)
        now_s = server_time_s(client.time())
    return int(now_s)


def _row(engine: sa.Engine, deployment_id: UUID) -> sa.RowMapping:
    with engine.connect() as conn:
        return conn.execute(sa.select(deployments).where(deployments.c.id == deployment_id)
                            ).mappings().one()  # fmt: skip


def test_the_load_a_proxy_meters_reads_back_as_concurrency_and_rate(
    redis_client: redis.Redis, redis_keys: RedisKeys
) -> None:
    meter, endpoint = LoadMeter(), "d1"
    meter.begin(endpoint, 100.0)
    meter.begin(endpoint, 100.5)
    meter.end(endpoint, 101.0)
    taken = meter.take(101.5)  # 1.5 s of one, 0.5 s of a second, then 0.5 s of one again
    assert taken == {endpoint: (2.0, 2)}
    deployment_id = UUID(int=1)
    _load(redis_client, redis_keys, deployment_id, in_flight=6.0, seconds=6, per_second=3)
    read = RedisRequestActivity(client=redis_client, keys=redis_keys).load(
        {deployment_id: (60.0, 6.0)})[deployment_id]  # fmt: skip
    concurrency = read.concurrency
    assert [round(v, 6) for v in (concurrency.panic, concurrency.stable, concurrency.latest)] == [
        6.0, 0.6, 6.0]  # fmt: skip
    assert (round(read.rps.panic, 6), round(read.rps.latest, 6)) == (3.0, 3.0)


def test_a_burst_scales_up_at_once_saying_the_numbers(
    tracked: UUID, engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys,
    run_phase: RunPhase, run: Any,
) -> None:  # fmt: skip
    _load(redis_client, redis_keys, tracked, in_flight=17.6, seconds=6)
    run_phase("deployments.autoscale")
    row = _row(engine, tracked)
    assert (row["desired_replica_count"], row["lifecycle"]) == (9, "scaling")
    with engine.connect() as conn:
        said = conn.execute(sa.select(deployment_history.c.message).where(
            deployment_history.c.phase == "deployments.autoscale")).scalars().all()  # fmt: skip
    assert any("over 6 s panic window, target 2 per replica, 2 -> 9 replicas" in m for m in said)
    shown = _json(run("deployment", "show", "llm", "--json"))["autoscale"]
    assert (shown["mode"], shown["target"], shown["view"]["panicking"]) == (
        "concurrency", 2.0, True)  # fmt: skip


def test_a_rollout_gets_the_new_count_for_its_new_revision(
    tracked: UUID, engine: sa.Engine, redis_client: redis.Redis, redis_keys: RedisKeys,
    run_phase: RunPhase,
) -> None:  # fmt: skip
    with engine.begin() as conn:
        conn.execute(deployments.update().values(lifecycle="deploying", rollout_desired=2))
    _load(redis_client, redis_keys, tracked, in_flight=10.0, seconds=6)
    run_phase("deployments.autoscale")
    row = _row(engine, tracked)
    assert (row["rollout_desired"], row["lifecycle"]) == (5, "deploying")


def test_no_traffic_with_min_zero_goes_to_zero_and_a_wake_brings_what_is_held(
    tracked: UUID, engine: sa.Engine, redis_keys: RedisKeys, run_phase: RunPhase, run: Any,
    adapters: Adapters,
) -> None:  # fmt: skip
    assert run("deployment", "set", "llm", "--min-replicas", "0").exit_code == 0
    run_phase("deployments.autoscale")  # nothing seen, but not for a whole window yet
    assert _row(engine, tracked)["zeroed_from"] is None
    with engine.begin() as conn:  # as if set a minute ago
        conn.execute(deployments.update().values(
            idle_counts_from=sa.func.now() - sa.text("interval '61 seconds'")))  # fmt: skip
    run_phase("deployments.autoscale")  # nothing over a whole stable window
    row = _row(engine, tracked)
    assert (row["replica_count"], row["zeroed_from"], row["lifecycle"]) == (0, 2, "scaling")
    modes = adapters.repository.fetch_endpoint_modes()
    assert modes[tracked].mode is EndpointMode.WAKES  # its requests are held for a wake
    with engine.begin() as conn:
        conn.execute(deployments.update().values(lifecycle="ready"))
    adapters.redis.hset(redis_keys.held(tracked), mapping={"proxy-a:1": 9, "proxy-b:2": 4})
    adapters.redis.xadd(redis_keys.wakes, {"deployments": str(tracked)})
    run_phase("deployments.wake")
    assert _row(engine, tracked)["replica_count"] == 7  # 13 held, 2 per replica


@pytest.mark.parametrize(
    ("argv", "said"),
    [
        (["--autoscale", "rps", "--target", "-1"], "--target"),
        (["--autoscale", "rps", "--target", "2", "--min-replicas", "5", "--max-replicas", "3"],
         "--min-replicas: 5 is over --max-replicas (3)"),
        (["--autoscale", "sometimes", "--target", "2"], "--autoscale"),
        (["--autoscale", "rps"], "--target: needed with --autoscale rps"),
        (["--autoscale", "rps", "--target", "2", "--panic-window-s", "90"],
         "--panic-window-s: 90 is over --stable-window-s (60)"),
    ],
)  # fmt: skip
def test_bad_autoscale_input_is_one_line_exit_2_and_changes_nothing(
    run: Any, engine: sa.Engine, argv: list[str], said: str
) -> None:
    assert run("scaling-group", "create", "rg").exit_code == 0
    result = run("deployment", "create", "bad", "--group", "rg", "--image", "i", *argv)
    assert (result.exit_code, said in result.output, "Traceback" in result.output) == (
        2, True, False), result.output  # fmt: skip
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(deployments)).scalar() == 0


def test_one_or_the_other_rules_or_the_traffic_autoscaler(
    run: Any, engine: sa.Engine, tracked: UUID
) -> None:
    rule_options = ["--metric-source", "session", "--metric", "cpu", "--threshold", "1",
                    "--comparator", "gt", "--step", "1"]  # fmt: skip
    rule = run("autoscaling-rule", "add", "llm", *rule_options)
    assert (rule.exit_code, "autoscales on its traffic" in rule.output) == (2, True)
    assert run("deployment", "set", "llm", "--autoscale", "off").exit_code == 0
    assert run("autoscaling-rule", "add", "llm", *rule_options).exit_code == 0
    again = run("deployment", "set", "llm", "--autoscale", "rps", "--target", "3")
    assert (again.exit_code, "has 1 autoscaling rule(s)" in again.output) == (2, True)
    assert _row(engine, tracked)["autoscale_mode"] == "off"
    changed = _json(run("deployment", "update", "llm", "--autoscale", "off", "--json"))
    assert changed["changed"] == []  # settings only: no revision, nothing rolled out


def test_a_deployment_with_its_traffic_autoscaler_is_left_alone_by_the_rules_phase(
    tracked: UUID, engine: sa.Engine, run_phase: RunPhase
) -> None:
    with engine.begin() as conn:
        conn.execute(deployments.update().values(desired_replica_count=6))
    run_phase("deployments.check_replicas")
    assert _row(engine, tracked)["desired_replica_count"] == 6  # not back to the operator's 2

"""The traffic autoscaler in the reference world, under closed-loop clients through the
proxy: a burst scales up in panic mode, steady load does not flap, the decision trail
shows the numbers, and with `--min-replicas 0` an idle deployment goes to zero and a
burst wakes it to what it needs. Every answer other than 200 is a failure.

Windows are short here (stable 20 s, panic 4 s) to keep the test brief; the defaults are
measured in `bench/autoscale.py`.
"""

from __future__ import annotations

import time
from uuid import UUID

import sqlalchemy as sa

from tests.e2e.fleet import TIMEOUT_S, cli, endpoint_url
from workers.adapters.postgres.schema import deployment_history, deployments, routes
from workers.devtools import dev
from workers.devtools.processes import wait_for
from workers.devtools.traffic import LoadLoop, failures

CLOSED_LOOP = 1e6  # requests per second no client reaches: each sends as soon as answered
LATENCY_S = 0.5


def test_a_burst_panics_up_steady_load_holds_and_idle_goes_to_zero_then_wakes(
    system: dev.DevSystem,
) -> None:
    deployment = system.sample_deployment("busy", 1, drain_s=1.0,
                                          model=dev.SampleModel(latency_s=LATENCY_S))  # fmt: skip
    _healthy(system, deployment.id, 1)
    set_up = cli(system, "deployment", "set", "busy", "--autoscale", "concurrency", "--target",
                 "2", "--min-replicas", "0", "--max-replicas", "6", "--stable-window-s", "20",
                 "--panic-window-s", "4")  # fmt: skip
    assert set_up.returncode == 0, set_up.stderr
    url = endpoint_url(system, deployment.id)
    base = LoadLoop(url, rate_per_s=CLOSED_LOOP, clients=2, timeout_s=30)
    burst = LoadLoop(url, rate_per_s=CLOSED_LOOP, clients=10, timeout_s=30)
    with base.running():
        time.sleep(5)
        with burst.running():  # 12 in flight against a target of 2: 6 wanted, 1 serving
            _healthy(system, deployment.id, 6)
            reached_at = time.monotonic()
            time.sleep(15)  # steady: nothing goes down, nothing flaps
            held = _counts_since(system, deployment.id, reached_at)
    answers = base.snapshot() + burst.snapshot()
    assert len(answers) > 100
    assert failures(answers) == []
    assert held == [], f"changes during steady load: {held}"
    said = _trail(system, deployment.id)
    assert any("over 4 s panic window, target 2 per replica, 1 -> " in m for m in said), said

    # Idle: a stable window after the last increase it goes to zero (min 0)...
    wait_for(lambda: _row(system, deployment.id)["zeroed_from"], lambda z: z is not None,
             timeout_s=TIMEOUT_S, what="busy at zero")  # fmt: skip
    # ...and a burst of 8 wakes it to 4 (8 held, 2 per replica), every request answered.
    wake = LoadLoop(url, rate_per_s=CLOSED_LOOP, clients=8, timeout_s=60)
    with wake.running():
        _healthy(system, deployment.id, 4)
    assert failures(wake.snapshot()) == []
    assert _row(system, deployment.id)["replica_count"] == 4


def _healthy(system: dev.DevSystem, deployment_id: UUID, count: int) -> None:
    def healthy() -> int:
        with system.engine.connect() as conn:
            return int(conn.execute(sa.select(sa.func.count()).where(
                routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
            ).scalar_one())  # fmt: skip

    wait_for(healthy, lambda n: n >= count, timeout_s=TIMEOUT_S, what=f"{count} healthy")


def _row(system: dev.DevSystem, deployment_id: UUID) -> sa.RowMapping:
    with system.engine.connect() as conn:
        return conn.execute(sa.select(deployments).where(deployments.c.id == deployment_id)
                            ).mappings().one()  # fmt: skip


def _trail(system: dev.DevSystem, deployment_id: UUID) -> list[str]:
    with system.engine.connect() as conn:
        return list(conn.execute(sa.select(deployment_history.c.message).where(
            deployment_history.c.deployment_id == deployment_id,
            deployment_history.c.phase == "deployments.autoscale")).scalars())  # fmt: skip


def _counts_since(system: dev.DevSystem, deployment_id: UUID, since: float) -> list[str]:
    """The autoscaler's changes written since `since` (time.monotonic()), counted back
    from now by the database clock."""
    ago = time.monotonic() - since
    with system.engine.connect() as conn:
        return list(conn.execute(sa.select(deployment_history.c.message).where(
            deployment_history.c.deployment_id == deployment_id,
            deployment_history.c.phase == "deployments.autoscale",
            deployment_history.c.created_at > sa.func.now() - sa.func.make_interval(
                0, 0, 0, 0, 0, 0, ago))).scalars())  # fmt: skip

"""GPUs end to end: three hosts whose agents declare 4 GPUs of 80 GiB each, real
sessions of the sample model, requests through the proxy.

One fleet for the whole story: under `pack`, replicas asking 2 GPUs, 1 GPU and a 20 GiB
share fill one host on disjoint devices (each session's CUDA_VISIBLE_DEVICES read from
its environment); under `spread` a deployment's replicas go one per host; a 4-GPU
replica that fits only once a 1-GPU replica moves gets that move, with load on the moved
deployment and no failed request; a host that comes back gets replicas again (skew at
most 1) under load, no failed request; a replica that can never fit says why.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Iterator
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.e2e.fleet import cli, endpoint_url
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import deployments, hosts, routes, sessions
from workers.devtools import dev
from workers.devtools.fleet import Fleet, running_fleet
from workers.devtools.processes import wait_for
from workers.devtools.traffic import LoadLoop, between, failures
from workers.domain import DeploymentInfo, PlacementMode, ResourceRequest
from workers.standalone.process_identity import environment_of

TIMEOUT_S = 120
GPUS = {"MODELFLEET_RUNNER_GPUS": "4", "MODELFLEET_RUNNER_GPU_MEMORY_GIB": "80",
        "MODELFLEET_RUNNER_GPU_MODEL": "NVIDIA A100-SXM4-80GB"}  # fmt: skip


@pytest.fixture
def fleet(world_environ: dict[str, str]) -> Iterator[Fleet]:
    with running_fleet(3, namespaces=False, environ={**world_environ, **GPUS}) as running:
        yield running


def test_gpus_are_placed_packed_or_spread_rooms_are_made_and_a_host_back_gets_replicas(
    fleet: Fleet,
) -> None:
    system = fleet.system
    wait_for(lambda: _registered(fleet), lambda n: n == 3, timeout_s=TIMEOUT_S,
             what="three hosts registered with their GPUs")  # fmt: skip
    Catalog(engine=system.engine).create_scaling_group(
        dev.DEMO_GROUP, app_proxy_addr=system.proxy_url, app_proxy_api_token=system.proxy_token,
        placement=PlacementMode.PACK)  # fmt: skip
    spread = _packed_then_spread(fleet)
    _room_made_under_load(fleet, spread)
    _never_fits_says_why(fleet)
    for name in ("p0", "p1", "p2", "spread", "big", "huge"):
        assert cli(system, "deployment", "destroy", name).returncode == 0
    wait_for(lambda: _live_sessions(fleet), lambda n: n == 0, timeout_s=TIMEOUT_S,
             what="every replica stopped")  # fmt: skip
    _host_back_gets_replicas_under_load(fleet)


def _packed_then_spread(fleet: Fleet) -> DeploymentInfo:
    """Pack: one host filled first, each session on devices of its own; then spread: one
    replica per host while one fits there."""
    system = fleet.system
    packed = [
        _deploy(system, f"p{i}", 1, request)
        for i, request in enumerate(
            (ResourceRequest(gpus=2), ResourceRequest(gpus=1), ResourceRequest(gpu_memory_gib=20))
        )
    ]
    placed = [pair for d in packed for pair in _devices_of(fleet, d.id)]
    [host] = {h for h, _ in placed}
    told = [set(devices.split(",")) for _, devices in placed]
    assert set().union(*told) == {"0", "1", "2", "3"}  # one host, disjoint devices
    assert sum(len(devices) for devices in told) == 4
    assert _share_told(fleet, packed[2].id) == "20"
    assert cli(system, "scaling-group", "update", dev.DEMO_GROUP, "--placement",
               "spread").returncode == 0  # fmt: skip
    spread = _deploy(system, "spread", 2, ResourceRequest(gpus=1))
    on = collections.Counter(h for h, _ in _devices_of(fleet, spread.id))
    assert host not in on  # the packed host has no whole GPU left
    assert sorted(on.values()) == [1, 1]
    return spread


def _room_made_under_load(fleet: Fleet, spread: DeploymentInfo) -> None:
    """A 4-GPU replica fits only once one 1-GPU replica moves: that move, under load."""
    system = fleet.system
    load = LoadLoop(endpoint_url(system, spread.id))
    with load.running():
        time.sleep(2)
        moved_at = time.monotonic()
        big = system.sample_deployment("big", 1, model=dev.SampleModel(
            resources=ResourceRequest(gpus=4)), drain_s=2.0)  # fmt: skip
        _serving(fleet, big.id, 1)
        _serving(fleet, spread.id, 2)
        time.sleep(1)
        end = time.monotonic()
    answers = between(load.snapshot(), moved_at, end)
    assert len(answers) > 50
    assert failures(answers) == []
    said = _history_of_moves(fleet)
    assert any("to make room for big (needs 4 GPUs)" in m for m in said), said


def _never_fits_says_why(fleet: Fleet) -> None:
    fleet.system.sample_deployment("huge", 1, model=dev.SampleModel(
        resources=ResourceRequest(gpus=8)))  # fmt: skip
    reason = wait_for(lambda: _reason(fleet, "huge"), lambda r: "needs 8 GPUs" in r,
                      timeout_s=TIMEOUT_S, what="the reason huge waits")  # fmt: skip
    assert "largest free block:" in reason
    assert "free over" in reason


def _host_back_gets_replicas_under_load(fleet: Fleet) -> None:
    """A host lost and back gets replicas again, skew at most 1, with no failed request."""
    light = _deploy(fleet.system, "light", 4, ResourceRequest(gpus=1))
    lost = _least_busy(fleet, light.id)
    fleet.host(lost).kill()
    wait_for(lambda: _host_status(fleet, lost), lambda s: s == "lost", timeout_s=TIMEOUT_S,
             what=f"{lost} lost")  # fmt: skip
    _serving(fleet, light.id, 4, avoid=lost)
    fleet.host(lost).start()
    wait_for(lambda: _host_status(fleet, lost), lambda s: s == "ready", timeout_s=TIMEOUT_S,
             what=f"{lost} back")  # fmt: skip
    load = LoadLoop(endpoint_url(fleet.system, light.id))
    with load.running():
        back_at = time.monotonic()
        counts = wait_for(lambda: _healthy_hosts(fleet, light.id),
                          lambda c: sum(c.values()) == 4 and c.get(lost, 0) >= 1
                          and max(c.values()) - min(c.get(h.name, 0) for h in fleet.hosts) <= 1,
                          timeout_s=TIMEOUT_S, what="spread restored")  # fmt: skip
        time.sleep(3)  # the last mover drained
        end = time.monotonic()
    answers = between(load.snapshot(), back_at, end)
    assert len(answers) > 50
    assert failures(answers) == []
    assert counts[lost] >= 1


def _deploy(system: dev.DevSystem, name: str, replicas: int,
            request: ResourceRequest) -> DeploymentInfo:  # fmt: skip
    deployment = system.sample_deployment(name, replicas, drain_s=2.0,
                                          model=dev.SampleModel(resources=request))  # fmt: skip
    wait_for(lambda: _healthy_count(system, deployment.id), lambda n: n == replicas,
             timeout_s=TIMEOUT_S, what=f"{name}: {replicas} healthy")  # fmt: skip
    return deployment


def _healthy_count(system: dev.DevSystem, deployment_id: UUID) -> int:
    with system.engine.connect() as conn:
        return int(
            conn.execute(
                sa.select(sa.func.count()).where(
                    routes.c.deployment_id == deployment_id, routes.c.status == "healthy"
                )
            ).scalar_one()
        )


def _serving(fleet: Fleet, deployment_id: UUID, replicas: int, avoid: str = "") -> None:
    wait_for(lambda: _healthy_hosts(fleet, deployment_id),
             lambda c: sum(c.values()) == replicas and avoid not in c,
             timeout_s=TIMEOUT_S, what=f"{replicas} healthy")  # fmt: skip


def _healthy_hosts(fleet: Fleet, deployment_id: UUID) -> collections.Counter[str]:
    with fleet.system.engine.connect() as conn:
        placed = conn.execute(
            sa.select(sessions.c.placed_on).join(routes, routes.c.session_id == sessions.c.id)
            .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
        ).scalars()  # fmt: skip
        return collections.Counter(p for p in placed if p is not None)


def _devices_of(fleet: Fleet, deployment_id: UUID) -> list[tuple[str, str]]:
    """(host, CUDA_VISIBLE_DEVICES) of each healthy replica, read from its process."""
    with fleet.system.engine.connect() as conn:
        rows = conn.execute(
            sa.select(sessions.c.placed_on, sessions.c.pid)
            .join(routes, routes.c.session_id == sessions.c.id)
            .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
        ).all()  # fmt: skip
    return [(row.placed_on, environment_of(row.pid).get("CUDA_VISIBLE_DEVICES", ""))
            for row in rows]  # fmt: skip


def _share_told(fleet: Fleet, deployment_id: UUID) -> str:
    with fleet.system.engine.connect() as conn:
        pid = conn.execute(
            sa.select(sessions.c.pid).join(routes, routes.c.session_id == sessions.c.id)
            .where(routes.c.deployment_id == deployment_id)
        ).scalar_one()  # fmt: skip
    return environment_of(pid).get("MODELFLEET_GPU_MEMORY_GIB", "")


def _live_sessions(fleet: Fleet) -> int:
    with fleet.system.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            sessions.c.status.in_(["PENDING", "PREPARING", "RUNNING", "TERMINATING"]))
        ).scalar_one())  # fmt: skip


def _registered(fleet: Fleet) -> int:
    with fleet.system.engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            sa.func.jsonb_array_length(hosts.c.devices) == 4)).scalar_one())  # fmt: skip


def _host_status(fleet: Fleet, name: str) -> str | None:
    with fleet.system.engine.connect() as conn:
        return conn.execute(sa.select(hosts.c.status).where(hosts.c.name == name)).scalar()


def _least_busy(fleet: Fleet, deployment_id: UUID) -> str:
    counts = _healthy_hosts(fleet, deployment_id)
    return min((h.name for h in fleet.hosts), key=lambda n: (counts.get(n, 0), n))


def _reason(fleet: Fleet, name: str) -> str:
    with fleet.system.engine.connect() as conn:
        return str(conn.execute(sa.select(deployments.c.condition_message)
                                .where(deployments.c.name == name)).scalar() or "")  # fmt: skip


def _history_of_moves(fleet: Fleet) -> list[str]:
    with fleet.system.engine.connect() as conn:
        return list(
            conn.execute(
                sa.text("SELECT message FROM route_history WHERE phase = 'hosts.rebalance'")
            ).scalars()
        )

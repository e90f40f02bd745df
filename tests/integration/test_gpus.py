"""GPUs on the real PostgreSQL: hosts report them (declared, or read from nvidia-smi),
replicas ask for them, the scheduler fits device by device, sessions are told theirs, a
host that lost a device gives up what it held, and one move makes room."""

from __future__ import annotations

import json
import stat
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any
from uuid import UUID

import pytest
import sqlalchemy as sa

from tests.factories import make_deployment, make_route
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.scheduler import SessionTableScheduler
from workers.adapters.postgres.schema import deployments, hosts, route_history, routes, sessions
from workers.composition import Adapters
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    PlacementMode,
    ResourceRequest,
    RouteStatus,
    SessionSpec,
)
from workers.errors import NoHostAvailable
from workers.standalone.agent_rows import AgentRows
from workers.standalone.gpus import Declared, detected, this_machine

FAKE_NVIDIA_SMI = """#!/bin/sh
echo "0, GPU-aaaa, NVIDIA A100-SXM4-80GB, 81920"
echo "1, GPU-bbbb, NVIDIA A100-SXM4-80GB, 81920"
"""


def _host(engine: sa.Engine, name: str, gpus: int = 4, gib: float = 80) -> None:
    machine = this_machine(name, Declared(gpus, gib, "NVIDIA A100"))
    AgentRows(engine, name).register(f"10.8.0.{name[-1]}", 0, machine)


def _deployment(catalog: Catalog, request: ResourceRequest, name: str = "d",
                group: str = "sg1") -> DeploymentInfo:  # fmt: skip
    deployment = make_deployment(name=name, resource_group=group,
                                 lifecycle=DeploymentLifecycle.READY)  # fmt: skip
    revision = deployment.target_revision
    assert revision is not None
    asked = replace(revision, resources=request.to_resources())
    return catalog.create_deployment(replace(deployment, target_revision=asked))


def _place(catalog: Catalog, scheduler: SessionTableScheduler, deployment: DeploymentInfo,
           request: ResourceRequest) -> tuple[str, list[int], UUID]:  # fmt: skip
    route = make_route(deployment)
    catalog.add_routes([route])
    spec = SessionSpec(route.id, deployment.id, "s", deployment.resource_group, "img", "custom",
                       "/m", None, request.to_resources(), {})  # fmt: skip
    session_id = scheduler.enqueue_session(spec)
    with scheduler._engine.begin() as conn:  # as routes.provision records it
        conn.execute(routes.update().where(routes.c.id == route.id).values(session_id=session_id))
        row = conn.execute(sa.select(sessions.c.placed_on, sessions.c.gpu_devices)
                           .where(sessions.c.id == session_id)).one()  # fmt: skip
    return row.placed_on, list(row.gpu_devices or []), route.id


def test_replicas_get_disjoint_devices_pack_fills_one_host_and_spread_alternates(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    for name in ("h1", "h2", "h3"):
        _host(engine, name)
    catalog.create_scaling_group("packed", placement=PlacementMode.PACK)
    catalog.create_scaling_group("spread")
    two, one, share = (ResourceRequest(gpus=2), ResourceRequest(gpus=1),
                       ResourceRequest(gpu_memory_gib=20))  # fmt: skip
    packed = [_place(catalog, scheduler, _deployment(catalog, r, f"p{i}", "packed"), r)
              for i, r in enumerate((two, one, share))]  # fmt: skip
    assert [(host, devices) for host, devices, _ in packed] == [
        ("h1", [0, 1]), ("h1", [2]), ("h1", [3])]  # fmt: skip
    spread = _deployment(catalog, one, "s", "spread")
    hosts_of_s = [_place(catalog, scheduler, spread, one)[0] for _ in range(3)]
    assert hosts_of_s == ["h2", "h3", "h2"]  # h1 has no whole GPU left: the others in turn


def test_a_request_that_fits_nowhere_says_why_with_the_numbers(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    _host(engine, "h1", gpus=2)
    catalog.create_scaling_group("sg1")
    one, four = ResourceRequest(gpus=1), ResourceRequest(gpus=4)
    _place(catalog, scheduler, _deployment(catalog, one, "small"), one)
    said = r"needs 4 GPUs; largest free block: 1 GPU \(h1\); 1 GPU free over 1 host"
    with pytest.raises(NoHostAvailable, match=said):
        _place(catalog, scheduler, _deployment(catalog, four, "big"), four)


def test_nvidia_smi_on_the_path_is_read_and_a_host_without_it_has_no_gpu(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert detected() == ()
    fake = tmp_path / "nvidia-smi"
    fake.write_text(FAKE_NVIDIA_SMI)
    fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    found = detected()
    assert [(d.index, d.uuid, d.model, d.memory_gib) for d in found] == [
        (0, "GPU-aaaa", "NVIDIA A100-SXM4-80GB", 80.0),
        (1, "GPU-bbbb", "NVIDIA A100-SXM4-80GB", 80.0),
    ]


def test_a_host_that_came_back_with_a_device_fewer_gives_up_what_it_held(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler
) -> None:
    _host(engine, "h1", gpus=2)
    catalog.create_scaling_group("sg1")
    one = ResourceRequest(gpus=1)
    deployment = _deployment(catalog, one)
    first, second = (_place(catalog, scheduler, deployment, one) for _ in range(2))
    assert (first[1], second[1]) == ([0], [1])
    _host(engine, "h1", gpus=1)  # one GPU fewer after a reboot
    with engine.connect() as conn:
        states = dict(conn.execute(sa.select(sessions.c.route_id, sessions.c.status)).all())
        route_states = dict(conn.execute(sa.select(routes.c.id, routes.c.status)).all())
    assert (states[first[2]], states[second[2]]) == ("PENDING", "LOST")
    assert route_states[second[2]] == RouteStatus.TERMINATED.value


def test_one_move_makes_room_and_the_mover_leaves_once_its_replacement_serves(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler, adapters: Adapters,
    run_phase: Callable[[str], object],
) -> None:  # fmt: skip
    _host(engine, "h1", gpus=2)
    _host(engine, "h2", gpus=2)
    catalog.create_scaling_group("sg1")
    one, two = ResourceRequest(gpus=1), ResourceRequest(gpus=2)
    small = _deployment(catalog, one, "small")
    on_h1, on_h2 = (_place(catalog, scheduler, small, one) for _ in range(2))
    _healthy(engine, on_h1[2], on_h2[2])
    _scale(engine, small, 2)
    big = _deployment(catalog, two, "big")
    catalog.add_routes([make_route(big, status=RouteStatus.PROVISIONING)])  # waits
    run_phase("hosts.rebalance")
    with engine.connect() as conn:
        moving = conn.execute(sa.select(routes.c.id).where(routes.c.moving_since.is_not(None)))
        [mover] = moving.scalars().all()
        said = conn.execute(sa.select(route_history.c.message)
                            .where(route_history.c.route_id == mover)).scalar()  # fmt: skip
    assert "to make room for big (needs 2 GPUs)" in str(said)
    run_phase("hosts.rebalance")  # one at a time, and its replacement does not serve yet
    assert _moving_count(engine) == 1
    # its replacement serves (with the one that stays, the deployment's 2)
    catalog.add_routes([make_route(small, status=RouteStatus.HEALTHY)])
    run_phase("hosts.rebalance")
    with engine.connect() as conn:
        status = conn.execute(sa.select(routes.c.status).where(routes.c.id == mover)).scalar()
    assert status == RouteStatus.DRAINING.value


def test_gpu_options_and_bad_gpu_input(engine: sa.Engine, run: Any) -> None:
    assert run("scaling-group", "create", "sg1", "--placement", "pack").exit_code == 0
    created = run("deployment", "create", "llm", "--group", "sg1", "--image", "i", "--gpus", "2",
                  "--gpu-model", "A100", "--cpus", "4", "--memory-gib", "32", "--json")  # fmt: skip
    assert created.exit_code == 0, created.output
    shown = json.loads(run("deployment", "show", "llm", "--json").output)
    assert shown["resources"] == {"gpus": "2", "gpu_model": "A100", "cpus": "4",
                                  "memory_gib": "32"}  # fmt: skip
    for argv, said in [
        (["--gpus", "-1"], "--gpus"),
        (["--gpus", "2", "--gpu-memory-gib", "10"], "--gpu-memory-gib: a share of one GPU"),
        (["--gpu-memory-gib", "many"], "--gpu-memory-gib"),
    ]:
        result = run("deployment", "create", "bad", "--group", "sg1", "--image", "i", *argv)
        assert (result.exit_code, said in result.output) == (2, True), result.output
        assert "Traceback" not in result.output
    with engine.connect() as conn:
        names = set(conn.execute(sa.select(deployments.c.name)).scalars())
        groups = conn.execute(sa.text("SELECT placement FROM scaling_groups")).scalars().all()
    assert names == {"llm"}
    assert groups == ["pack"]
    assert run("scaling-group", "update", "sg1", "--placement", "spread",
               "--no-rebalance").exit_code == 0  # fmt: skip
    listed = json.loads(run("scaling-group", "list", "--json").output)
    assert (listed[0]["placement"], listed[0]["rebalance"]) == ("spread", False)
    missing = run("scaling-group", "update", "nope", "--placement", "pack")
    assert (missing.exit_code, "NAME: no scaling group named 'nope'" in missing.output) == (2, True)


def test_runner_declares_gpus_and_host_show_lists_what_each_device_holds(
    engine: sa.Engine, catalog: Catalog, scheduler: SessionTableScheduler, run: Any
) -> None:
    _host(engine, "h1", gpus=2, gib=24)
    catalog.create_scaling_group("sg1")
    share = ResourceRequest(gpu_memory_gib=10)
    deployment = _deployment(catalog, share, "tiny")
    _place(catalog, scheduler, deployment, share)
    result = run("host", "list", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    listed = json.loads(result.output)
    assert (listed[0]["gpus_used"], listed[0]["gpus_total"]) == (1, 2)
    assert "1/2" in run("host", "list").output
    result = run("host", "show", "h1", "--json")
    assert result.exit_code == 0, (result.output, result.exception)
    shown = json.loads(result.output)
    assert [d["index"] for d in shown["devices"]] == [0, 1]
    [held] = shown["devices"][0]["allocated"]
    assert (held["deployment"], held["gib"]) == ("tiny", 10)
    assert shown["devices"][1]["allocated"] == []
    assert run("host", "show", "nope").exit_code == 2
    declared_badly = run("runner", "--gpus", "2")
    assert declared_badly.exit_code == 2
    assert "--gpu-memory-gib" in declared_badly.output
    with engine.connect() as conn:
        assert conn.execute(sa.select(sa.func.count()).select_from(hosts)).scalar_one() == 1


def _healthy(engine: sa.Engine, *route_ids: UUID) -> None:
    with engine.begin() as conn:
        conn.execute(routes.update().where(routes.c.id.in_(route_ids))
                     .values(status=RouteStatus.HEALTHY.value))  # fmt: skip
        conn.execute(sessions.update().where(sessions.c.route_id.in_(route_ids))
                     .values(status="RUNNING"))  # fmt: skip


def _scale(engine: sa.Engine, deployment: DeploymentInfo, replicas: int) -> None:
    with engine.begin() as conn:
        conn.execute(deployments.update().where(deployments.c.id == deployment.id)
                     .values(replica_count=replicas))  # fmt: skip


def _moving_count(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(
            routes.c.moving_since.is_not(None))).scalar_one())  # fmt: skip

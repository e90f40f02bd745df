"""Static stability: no fault of the control plane costs a request or a replica.

Three hosts (runners on 127.0.0.x), 6 replicas spread 2/2/2, 20 requests/s through the
proxy for the whole of each fault, the fleet's own throwaway PostgreSQL and Redis. One
after another on the same fleet (a fresh fleet each costs CI a minute more; the bench
runs each on a fresh one): PostgreSQL stopped for 15 s, PostgreSQL restarted, Redis
restarted empty, the prober frozen past the health records' expiry (shortened here to
10 s so the freeze lasts tens of seconds, not minutes), beat and every worker frozen,
one host's agent restarted. For each: 0 failed requests, 0 hosts lost, 0 model servers
killed, 0 requests run twice (the sample models note what they computed), and after a
store fault every heartbeat fresh again.
"""

from __future__ import annotations

import collections
from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import pytest
import requests
import sqlalchemy as sa

from tests.e2e.fleet import published
from workers.adapters.postgres.schema import hosts, routes, sessions
from workers.devtools.control_plane import COLUMNS, FaultReport, measure
from workers.devtools.fleet import Fleet, running_fleet
from workers.devtools.processes import wait_for

TIMEOUT_S = 120
REPLICAS = 6
FAULTS = [
    ("postgres stopped", 15.0),
    ("postgres restarted", 0.0),
    ("redis restarted empty", 0.0),
    ("prober frozen", 25.0),  # records expire after 10 s here
    ("beat and workers frozen", 25.0),
    ("runner restarted", 0.0),
]


@pytest.fixture
def served(tmp_path: Path) -> Path:
    folder = tmp_path / "served"
    folder.mkdir()
    return folder


@pytest.fixture
def fleet(world_environ: dict[str, str], served: Path) -> Iterator[Fleet]:
    environ = {**world_environ, "MODEL_SERVED_DIR": str(served),
               "MODELFLEET_HEALTH_RECORD_TTL_S": "10"}  # fmt: skip
    with running_fleet(3, namespaces=False, environ=environ, own_stores=True) as running:
        yield running


def test_no_control_plane_fault_costs_a_request_a_host_or_a_model_server(
    fleet: Fleet, served: Path
) -> None:
    wait_for(lambda: _host_statuses(fleet), lambda s: s == ["ready"] * 3, timeout_s=TIMEOUT_S,
             what="three hosts ready")  # fmt: skip
    deployment = fleet.system.sample_deployment("steady", REPLICAS, drain_s=3.0)
    assert sorted(_healthy_on(fleet, deployment.id).values()) == [2, 2, 2]
    url = f"{fleet.system.proxy_url}/e/{deployment.id}/v1/completions"
    wait_for(lambda: published(fleet.system, deployment.id), lambda n: n == REPLICAS,
             timeout_s=TIMEOUT_S, what="every replica published")  # fmt: skip
    wait_for(lambda: requests.post(url, json={"prompt": "a"}, timeout=5).status_code,
             lambda status: status == 200, timeout_s=TIMEOUT_S,
             what="an answer through the proxy")  # fmt: skip
    reports: list[FaultReport] = []
    for fault, for_s in FAULTS:
        reports.append(measure(fleet, deployment.id, fault, for_s, served_dir=served))
        assert sorted(_healthy_on(fleet, deployment.id).values()) == [2, 2, 2], fault
        assert _host_statuses(fleet) == ["ready"] * 3, fault
    table = "\n".join(" | ".join(r.row()) for r in reports)
    print(" | ".join(COLUMNS), table, sep="\n")  # noqa: T201  # the table, for the log
    for report in reports:
        assert report.sent > 100, report
        assert (report.failed, report.hosts_lost, report.servers_killed, report.duplicates) == (
            0, 0, 0, 0), report  # fmt: skip


def _host_statuses(fleet: Fleet) -> list[str]:
    with fleet.system.engine.connect() as conn:
        return list(conn.execute(sa.select(hosts.c.status).order_by(hosts.c.name)).scalars())


def _healthy_on(fleet: Fleet, deployment_id: UUID) -> dict[str, int]:
    def counted() -> dict[str, int]:
        query = (
            sa.select(sessions.c.placed_on)
            .join(routes, routes.c.session_id == sessions.c.id)
            .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
        )
        with fleet.system.engine.connect() as conn:
            return dict(collections.Counter(conn.execute(query).scalars()))

    return wait_for(counted, lambda c: sum(c.values()) == REPLICAS, timeout_s=TIMEOUT_S,
                    what=f"{REPLICAS} healthy replicas")  # fmt: skip

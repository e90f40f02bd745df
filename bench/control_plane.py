"""Faults of the control plane at default settings: what each cost the data plane.

    python bench/control_plane.py [--faults all] [--pg-outages 15,60] [--freeze-s 330]

For each fault a fresh fleet (`workers.devtools.fleet`: three hosts, runners on
127.0.0.x, the fleet's own throwaway PostgreSQL and Redis, every setting at its
default) serves a deployment of 6 replicas spread 2/2/2, with 20 requests/s through
the proxy for the whole run; then one fault (`workers.devtools.control_plane`):
PostgreSQL stopped for each of `--pg-outages` seconds, PostgreSQL restarted, Redis
restarted empty, the prober frozen for `--freeze-s` (past the health records' 120 s
expiry), beat and every worker frozen as long, one host's agent restarted. Reports
failed requests, hosts lost, model servers killed, requests the sample models ran twice,
the longest time without an answer, and, after a store fault, the seconds until every
host's heartbeat was fresh again. Targets: 0, 0, 0, 0, and within 5 s.
"""

from __future__ import annotations

import argparse
import collections
import tempfile
import time
from pathlib import Path

import sqlalchemy as sa

from workers.adapters.postgres.schema import hosts, routes, sessions
from workers.devtools import dev
from workers.devtools.control_plane import COLUMNS, FAULTS, FaultReport, measure
from workers.devtools.fleet import running_fleet
from workers.devtools.processes import wait_for

TIMEOUT_S = 180
REPLICAS = 6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--faults", default="all", help=f"all, or some of: {', '.join(FAULTS)}")
    parser.add_argument("--pg-outages", default="15,60")
    parser.add_argument("--freeze-s", type=float, default=330.0)
    args = parser.parse_args()
    chosen = list(FAULTS) if args.faults == "all" else args.faults.split(",")
    runs: list[tuple[str, float]] = []
    for fault in chosen:
        if fault == "postgres stopped":
            runs += [(fault, float(s)) for s in args.pg_outages.split(",")]
        elif fault in {"prober frozen", "beat and workers frozen"}:
            runs.append((fault, args.freeze_s))
        else:
            runs.append((fault, 0.0))
    print(f"| {' | '.join(COLUMNS)} |")
    print(f"|---|{'---:|' * (len(COLUMNS) - 1)}")
    for fault, for_s in runs:
        print(f"| {' | '.join(_one(fault, for_s).row())} |", flush=True)


def _one(fault: str, for_s: float) -> FaultReport:
    served = Path(tempfile.mkdtemp(prefix="modelfleet-served-"))
    environ = {**dev.isolated_environ(), "MODEL_SERVED_DIR": str(served)}
    with running_fleet(3, namespaces=False, environ=environ, fast=False, own_stores=True) as fleet:
        engine = fleet.system.engine
        wait_for(lambda: _ready_hosts(engine), lambda n: n == 3, timeout_s=TIMEOUT_S,
                 what="three hosts ready")  # fmt: skip
        deployment = fleet.system.sample_deployment("bench", REPLICAS, drain_s=3.0)
        wait_for(lambda: _healthy_per_host(engine), lambda c: sorted(c.values()) == [2, 2, 2],
                 timeout_s=TIMEOUT_S, what="6 replicas spread 2/2/2")  # fmt: skip
        time.sleep(5)  # the proxy's table and its connections settled
        return measure(fleet, deployment.id, fault, for_s, served_dir=served, settle_s=15.0)


def _ready_hosts(engine: sa.Engine) -> int:
    with engine.connect() as conn:
        return int(conn.execute(sa.select(sa.func.count()).where(hosts.c.status == "ready"))
                   .scalar_one())  # fmt: skip


def _healthy_per_host(engine: sa.Engine) -> dict[str, int]:
    query = (
        sa.select(sessions.c.placed_on)
        .join(routes, routes.c.session_id == sessions.c.id)
        .where(routes.c.status == "healthy")
    )
    with engine.connect() as conn:
        return dict(collections.Counter(conn.execute(query).scalars()))


if __name__ == "__main__":
    main()

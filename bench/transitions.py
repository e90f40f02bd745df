"""How long 10,000 guarded route transitions with history take on PostgreSQL.

    python bench/transitions.py [--rows 10000] [--repeat 5]

Uses MODELFLEET_BENCH_DATABASE_URL (a server where a database may be created
and dropped) or else a throwaway server from the PyPI wheel. Prints the
median and the worst of each kind of batch: first transitions (history rows
inserted), repeats (history attempts bumped), and a batch whose guards all fail.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
import uuid
from collections.abc import Callable

import sqlalchemy as sa
from sqlalchemy.engine import make_url

from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import deployments, routes, scaling_groups
from workers.adapters.postgres.transitions import apply_route_transitions
from workers.devtools.throwaway_servers import start_postgres
from workers.domain import OutcomeBucket, RouteStatus, RouteTransition


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    server_url = os.environ.get("MODELFLEET_BENCH_DATABASE_URL")
    throwaway = None if server_url else start_postgres()
    server_url = server_url or throwaway.url  # type: ignore[union-attr]
    name = f"modelfleet_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    engine = create_database_engine(make_url(server_url).set(database=name).render_as_string(False))
    try:
        upgrade_to_head(engine)
        run(engine, args.rows, args.repeat)
    finally:
        engine.dispose()
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        if throwaway is not None:
            throwaway.stop()


def run(engine: sa.Engine, rows: int, repeat: int) -> None:
    route_ids = _seed(engine, rows)
    print(f"{rows} routes, {repeat} batches of each kind (seconds per batch)")
    live = frozenset({RouteStatus.HEALTHY, RouteStatus.DEGRADED})
    flip = (RouteStatus.DEGRADED, RouteStatus.HEALTHY)
    kinds: list[tuple[str, Callable[[int], RouteStatus | None], frozenset[RouteStatus]]] = [
        ("first transition (history inserted)", lambda i: flip[i % 2], live),
        ("repeat (history attempts bumped)", lambda i: None, live),
        ("guard fails (nothing written)", lambda i: RouteStatus.TERMINATING, frozenset()),
    ]
    for kind, to_status, expected in kinds:
        _report(kind, [_batch(engine, route_ids, i, to_status, expected) for i in range(repeat)])


def _batch(
    engine: sa.Engine,
    route_ids: list[uuid.UUID],
    i: int,
    to_status: Callable[[int], RouteStatus | None],
    expected: frozenset[RouteStatus],
) -> float:
    changes = [
        RouteTransition(
            entity_id=route_id,
            expected=expected,
            to_status=to_status(i),
            phase="bench",
            result=OutcomeBucket.SUCCESS,
        )
        for route_id in route_ids
    ]
    started = time.perf_counter()
    with engine.begin() as conn:
        applied = apply_route_transitions(conn, changes)
    elapsed = time.perf_counter() - started
    assert len(applied) == (len(route_ids) if expected else 0)
    return elapsed


def _seed(engine: sa.Engine, rows: int) -> list[uuid.UUID]:
    deployment_id, route_ids = uuid.uuid4(), [uuid.uuid4() for _ in range(rows)]
    with engine.begin() as conn:
        conn.execute(scaling_groups.insert().values(name="bench"))
        conn.execute(
            deployments.insert().values(
                id=deployment_id, name="bench", resource_group="bench", replica_count=rows
            )
        )
        conn.execute(
            routes.insert(),
            [{"id": r, "deployment_id": deployment_id, "status": "healthy"} for r in route_ids],
        )
    return route_ids


def _report(kind: str, seconds: list[float]) -> None:
    print(f"  {kind:40s} median {statistics.median(seconds):.3f}  worst {max(seconds):.3f}")


if __name__ == "__main__":
    main()

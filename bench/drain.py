"""Scale-in under load: requests failed and how long removed replicas lived on.

    python bench/drain.py [--rates 20,100] [--replicas 4] [--drain-s 10] [--fast]

For each rate, the reference world (`modelfleet dev`'s processes) serves a
deployment of N replicas; a load loop sends completions through the dev proxy
at that rate; `modelfleet deployment scale NAME 1` runs in the middle. Phase
intervals are the defaults of `beat_schedule.py` (`--fast`: one second). Reports
requests sent and failed (any status but 200, or no answer), latency p50/p99,
and for the removed replicas the seconds from the command to their last
request served and to their process exit (max over them).

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels.
"""

from __future__ import annotations

import argparse
import subprocess
import threading
import time
import uuid
from dataclasses import dataclass

import requests
import sqlalchemy as sa

from workers.adapters.postgres.schema import routes, sessions
from workers.devtools import dev, smoke
from workers.devtools.processes import modelfleet, process_alive, wait_for
from workers.devtools.traffic import LoadLoop, failures, percentile

TIMEOUT_S = 120


@dataclass
class Replica:
    route_id: uuid.UUID
    url: str
    pid: int
    served: int = -1
    last_served_at: float = 0.0
    exited_at: float = 0.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rates", default="20,100")
    parser.add_argument("--replicas", type=int, default=4)
    parser.add_argument("--drain-s", type=float, default=10.0)
    parser.add_argument(
        "--fast", action="store_true", help="every phase every second, as `modelfleet dev` runs"
    )
    args = parser.parse_args()
    print("| requests/s | sent | failed | p50 ms | p99 ms | last request s | process exit s |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for rate in (float(r) for r in args.rates.split(",")):
        with dev.running_system(dev.isolated_environ(), fast=args.fast) as system:
            print(_row(rate, *_scale_in_under_load(system, rate, args.replicas, args.drain_s)))


def _scale_in_under_load(
    system: dev.DevSystem, rate: float, replicas: int, drain_s: float
) -> tuple[LoadLoop, list[Replica], float]:
    deployment = system.sample_deployment(
        "bench", replicas, drain_s=drain_s, model=dev.SampleModel(latency_s=0.02)
    )
    url = wait_for(lambda: smoke.deployment_url(system.engine, deployment.id) or "",
                   timeout_s=TIMEOUT_S, what="the endpoint URL")  # fmt: skip
    wait_for(lambda: len(_running(system, deployment.id)), lambda n: n == replicas,
             timeout_s=TIMEOUT_S, what="every replica healthy")  # fmt: skip
    time.sleep(2)  # published: service discovery follows health within a tick
    watched = _running(system, deployment.id)
    load, stop = LoadLoop(url, rate_per_s=rate, clients=max(4, int(rate // 10))), threading.Event()
    watcher = threading.Thread(target=_watch, args=(watched, stop), daemon=True)
    with load.running():
        watcher.start()
        time.sleep(2)
        command_at = time.monotonic()
        subprocess.run(modelfleet("deployment", "scale", deployment.name, "1"), env=system.env,
                       check=True, capture_output=True, timeout=60)  # fmt: skip
        wait_for(lambda: sum(1 for r in watched if r.exited_at), lambda n: n == replicas - 1,
                 timeout_s=TIMEOUT_S, what="the removed replicas' processes gone")  # fmt: skip
        wait_for(lambda: _published(system, deployment.id), lambda n: n == 1,
                 timeout_s=TIMEOUT_S, what="one replica left in service discovery")  # fmt: skip
        time.sleep(1)
    stop.set()
    watcher.join()
    return load, [r for r in watched if r.exited_at], command_at


def _published(system: dev.DevSystem, deployment_id: uuid.UUID) -> int:
    try:
        groups = requests.get(system.sd_url, timeout=2).json()
    except (requests.RequestException, ValueError):
        return -1
    return sum(1 for g in groups if g["labels"].get("endpoint_id") == str(deployment_id))


def _running(system: dev.DevSystem, deployment_id: uuid.UUID) -> list[Replica]:
    query = (
        sa.select(routes.c.id, sessions.c.host, sessions.c.port, sessions.c.pid)
        .join(sessions, sessions.c.id == routes.c.session_id)
        .where(routes.c.deployment_id == deployment_id, routes.c.status == "healthy")
    )
    with system.engine.connect() as conn:
        rows = list(conn.execute(query))
    return [Replica(row.id, f"http://{row.host}:{row.port}", row.pid) for row in rows]


def _watch(replicas: list[Replica], stop: threading.Event) -> None:
    """Each replica's request counter (its last change) and its process (its exit)."""
    while not stop.wait(0.05):
        for replica in replicas:
            if replica.exited_at:
                continue
            if not process_alive(replica.pid):
                replica.exited_at = time.monotonic()
                continue
            served = _served(replica.url)
            if served is not None and served != replica.served:
                replica.served, replica.last_served_at = served, time.monotonic()


def _served(url: str) -> int | None:
    try:
        text = requests.get(f"{url}/metrics", timeout=0.5).text
    except requests.RequestException:
        return None
    for line in text.splitlines():
        if line.startswith("model_requests_total "):
            return int(float(line.split()[1]))
    return None


def _row(rate: float, load: LoadLoop, removed: list[Replica], command_at: float) -> str:
    answers = load.snapshot()
    latencies_ms = [a.latency_s * 1000 for a in answers if a.ok]
    last_request_s = max(r.last_served_at for r in removed) - command_at
    exit_s = max(r.exited_at for r in removed) - command_at
    return (
        f"| {rate:g} | {len(answers)} | {len(failures(answers))} | "
        f"{percentile(latencies_ms, 0.5):.1f} | {percentile(latencies_ms, 0.99):.1f} | "
        f"{last_request_s:.1f} | {exit_s:.1f} |"
    )


if __name__ == "__main__":
    main()

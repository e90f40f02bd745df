"""routes.health_check end to end on Celery, against the same work done in-process.

    python bench/phase_throughput.py [--sizes 100,1000,10000] [--repeat 5] [--concurrency 2]
                                     [--slow-items 50] [--slow-delay-s 1]

For each N, N degraded routes whose readiness in Redis is "1" are moved to
healthy, `--repeat` times. Celery: from publishing the phase task to the run's
transitions being committed (`phase_runs.finished_at`), with a real `celery
worker` (prefork). Floor: the same work in this process, no Celery: the targets
loaded once, the executor call, the transitions from the rows it holds, applied
with their history. Prints the median, min and max of both, the ratio of the
medians (and the min and max of each repeat's ratio), the worker processes' peak
RSS, Redis's peak memory and the largest task result stored (what the chord
callback's message carries).

The slow-item case: deployments.check_pending for --slow-items pending
deployments against an app proxy that answers each registration after
--slow-delay-s; compared with the ideal, items x delay / worker processes.

Uses MODELFLEET_BENCH_DATABASE_URL / MODELFLEET_BENCH_REDIS_URL, or else
throwaway servers from the PyPI wheels. MODELFLEET_FANOUT_MAX_TASKS applies.
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import sqlalchemy as sa
from redis.client import PubSub
from sqlalchemy.engine import make_url

from tasks.routes.health_check import PHASE
from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.migrate import upgrade_to_head
from workers.adapters.postgres.schema import route_history, routes
from workers.celery import ModelfleetCelery
from workers.composition import Adapters, build_adapters
from workers.config import Settings
from workers.devtools.throwaway_servers import start_postgres, start_redis
from workers.domain import DeploymentInfo, ModelRevision, RouteStatus
from workers.phase_runs import PhaseRun, PhaseRunState

RESULT_WAIT_S = 60.0
SETTLE_S = 0.5
CHECK_PENDING = "deployments.check_pending"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="100,1000,10000")
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--slow-items", type=int, default=50)
    parser.add_argument("--slow-delay-s", type=float, default=1.0)
    args = parser.parse_args()
    with _servers() as (database_url, redis_url):
        env = {
            **os.environ,
            "MODELFLEET_DATABASE_URL": database_url,
            "MODELFLEET_REDIS_URL": redis_url,
            "MODELFLEET_BROKER_URL": redis_url,
            "MODELFLEET_RESULT_BACKEND": redis_url,
            "MODELFLEET_REDIS_KEY_PREFIX": f"bench-{uuid.uuid4().hex[:8]}:",
        }
        adapters = build_adapters(Settings.from_environ(env))
        worker = subprocess.Popen(
            [
                *(sys.executable, "-m", "celery", "-A", "workers", "--quiet", "worker"),
                *("--loglevel=WARNING", f"--concurrency={args.concurrency}"),
                *("--without-mingle", "--without-gossip"),
            ],
            env=env,
        )
        try:
            upgrade_to_head(adapters.engine)
            sender = ModelfleetCelery(settings=adapters.settings)
            gc.freeze()  # as a worker process does once it is set up: the floor alike
            print(f"fan-out limit {adapters.settings.phases.fanout_max_tasks} tasks, "
                  f"worker concurrency {args.concurrency}, median of {args.repeat}")  # fmt: skip
            print(f"{'N':>7} {'celery s (min-max)':>24} {'in-process s (min-max)':>24} "
                  f"{'ratio (min-max)':>18} {'worker RSS MB':>14} {'Redis peak MB':>14} "
                  f"{'result KB':>10}")  # fmt: skip
            _measure(adapters, sender, 100)  # warm the worker up
            for size in (int(n) for n in args.sizes.split(",")):
                celery, floor = _measure(adapters, sender, size, args.repeat)
                ratios = [c / f for c, f in zip(celery, floor, strict=True)]
                ratio = statistics.median(celery) / statistics.median(floor)
                print(f"{size:>7} {_spread(celery):>24} {_spread(floor):>24} "
                      f"{ratio:>6.2f} ({min(ratios):.2f}-{max(ratios):.2f}) "
                      f"{_peak_rss_mb(worker.pid):>14.0f} {_redis_peak_mb(adapters):>14.0f} "
                      f"{_largest_result_kb(adapters):>10.1f}")  # fmt: skip
            if args.slow_items:
                took_s = _slow_items(adapters, sender, args.slow_items, args.slow_delay_s)
                ideal_s = args.slow_items * args.slow_delay_s / args.concurrency
                print(f"slow items: {args.slow_items} registrations of {args.slow_delay_s:g}s "
                      f"took {took_s:.1f}s on Celery; ideal {ideal_s:.1f}s "
                      f"(ratio {took_s / ideal_s:.2f})")  # fmt: skip
        finally:
            worker.terminate()
            worker.wait(timeout=30)
            adapters.close()


def _measure(
    adapters: Adapters, sender: ModelfleetCelery, size: int, repeat: int = 1
) -> tuple[list[float], list[float]]:
    """Seconds of each repeat on Celery and in process, alternating. Each starts on a
    machine quiet for SETTLE_S, as a phase's tick finds it: a database connection idle
    that long takes a few milliseconds more for its first query, which only the worker
    paid while the floor ran right after the reset, on a connection just used."""
    route_ids = _seed(adapters, size)
    celery_runs, floor_runs = [], []
    for _ in range(repeat):
        _reset(adapters, route_ids)
        _settle(adapters)
        celery_runs.append(_through_celery(adapters, sender))
        _reset(adapters, route_ids)
        _settle(adapters)
        floor_runs.append(_in_process(adapters))
    return celery_runs, floor_runs


def _spread(seconds: list[float]) -> str:
    return f"{statistics.median(seconds):.3f} ({min(seconds):.3f}-{max(seconds):.3f})"


def _through_celery(adapters: Adapters, sender: ModelfleetCelery) -> float:
    started = time.perf_counter()
    run = _run_through_celery(adapters, sender, PHASE.name)
    elapsed = time.perf_counter() - started
    assert run.state is PhaseRunState.SUCCEEDED, run
    _settle(adapters)
    return elapsed


def _run_through_celery(adapters: Adapters, sender: ModelfleetCelery, phase: str) -> PhaseRun:
    """Send the phase's task and return its run once closed. Waits on the results the
    result backend publishes (the phase task's: the run id; any task's: a run may have
    closed, look again), not by polling: a poll every millisecond took a share of this
    machine's two cores from the worker it measured. (AsyncResult.get would wait alike
    but prints a traceback at interpreter exit.)"""
    backend = sender.backend
    task_id = str(uuid.uuid4())
    with backend.client.pubsub(ignore_subscribe_messages=True) as results:
        results.psubscribe(backend.get_key_for_task("*"))
        sender.send_task(phase, task_id=task_id)
        run_id = uuid.UUID(_result_of(results, _text(backend.get_key_for_task(task_id))))
        while (run := adapters.phase_store.get_run(run_id)) is None or run.finished_at is None:
            results.get_message(timeout=RESULT_WAIT_S)
    sender.AsyncResult(task_id).forget()
    return run


def _result_of(results: PubSub, channel: str) -> str:
    """The result published on `channel` (the task's result key)."""
    deadline = time.monotonic() + RESULT_WAIT_S
    while time.monotonic() < deadline:
        message = results.get_message(timeout=RESULT_WAIT_S)
        if message is not None and _text(message["channel"]) == channel:
            meta = json.loads(message["data"])
            assert meta["status"] == "SUCCESS", meta
            return str(meta["result"])
    raise TimeoutError(f"no result on {channel} within {RESULT_WAIT_S}s")


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _settle(adapters: Adapters) -> None:
    """Wait until the follow-ups the run started (service discovery, rollouts) are over:
    no run open for SETTLE_S in a row, so they do not share the machine with the next
    measurement."""
    quiet_since = time.monotonic()
    while time.monotonic() - quiet_since < SETTLE_S:
        if adapters.phase_store.running_run_ids():
            quiet_since = time.monotonic()
        time.sleep(0.02)


def _in_process(adapters: Adapters) -> float:
    started = time.perf_counter()
    targets = list(PHASE.targets_now(adapters))
    outcomes = PHASE.outcomes(PHASE.execute(adapters, targets))
    changes = PHASE.transitions(outcomes, {target.id: target for target in targets})
    with adapters.phase_store.transaction() as conn:
        PHASE.apply(adapters, changes, conn)
    return time.perf_counter() - started


def _peak_rss_mb(worker_pid: int) -> float:
    """The largest peak RSS (VmHWM) among the worker's processes, in MB."""
    pids = [worker_pid, *_children(worker_pid)]
    peaks = []
    for pid in pids:
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        peaks += [int(line.split()[1]) for line in status.splitlines() if line.startswith("VmHWM")]
    return max(peaks, default=0) / 1024


def _children(pid: int) -> list[int]:
    try:
        found = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return []
    return [int(child) for child in found]


def _redis_peak_mb(adapters: Adapters) -> float:
    return float(adapters.redis.info("memory")["used_memory_peak"]) / 1e6


def _largest_result_kb(adapters: Adapters) -> float:
    """The largest task result in the result backend: the header tasks' results are what
    the chord callback's message carries."""
    pattern = f"{adapters.settings.redis_key_prefix}celery-task-meta-*"
    sizes = [adapters.redis.strlen(key) for key in adapters.redis.scan_iter(pattern, count=1000)]
    return max(sizes, default=0) / 1024


class _SlowProxy(BaseHTTPRequestHandler):
    delay_s = 1.0

    def do_POST(self) -> None:  # http.server's name for POST
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        time.sleep(self.delay_s)
        body = json.dumps({"endpoint": f"http://slow{self.path}"}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *_: object) -> None:
        pass


def _slow_items(adapters: Adapters, sender: ModelfleetCelery, count: int, delay_s: float) -> float:
    _SlowProxy.delay_s = delay_s
    server = ThreadingHTTPServer(("127.0.0.1", 0), _SlowProxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        catalog = Catalog(engine=adapters.engine)
        with adapters.engine.begin() as conn:
            conn.execute(sa.text("TRUNCATE routes, deployments, scaling_groups CASCADE"))
        catalog.create_scaling_group("slow", app_proxy_addr=f"http://127.0.0.1:{server.server_port}",
                                     app_proxy_api_token="bench")  # fmt: skip
        for n in range(count):
            catalog.create_deployment(DeploymentInfo(uuid.uuid4(), f"slow-{n}", "slow", 0,
                                                     ModelRevision(image="i")))  # fmt: skip
        started = time.perf_counter()
        _run_through_celery(adapters, sender, CHECK_PENDING)
        return time.perf_counter() - started
    finally:
        server.shutdown()


def _seed(adapters: Adapters, size: int) -> list[uuid.UUID]:
    catalog = Catalog(engine=adapters.engine)
    with adapters.engine.begin() as conn:
        conn.execute(sa.text("TRUNCATE routes, deployments, scaling_groups CASCADE"))
    catalog.create_scaling_group("bench")
    deployment = catalog.create_deployment(
        DeploymentInfo(uuid.uuid4(), "bench", "bench", size, ModelRevision(image="i"))
    )
    route_ids = [uuid.uuid4() for _ in range(size)]
    with adapters.engine.begin() as conn:
        conn.execute(
            routes.insert(),
            [{"id": i, "deployment_id": deployment.id, "status": "degraded"} for i in route_ids],
        )
    adapters.health_store.update_readiness({str(i): True for i in route_ids})
    return route_ids


def _reset(adapters: Adapters, route_ids: list[uuid.UUID]) -> None:
    with adapters.engine.begin() as conn:
        conn.execute(route_history.delete())
        conn.execute(routes.update().values(status=RouteStatus.DEGRADED.value))
    adapters.health_store.update_readiness({str(i): True for i in route_ids})


@contextmanager
def _servers() -> Iterator[tuple[str, str]]:
    server_url = os.environ.get("MODELFLEET_BENCH_DATABASE_URL")
    redis_url = os.environ.get("MODELFLEET_BENCH_REDIS_URL")
    postgres = None if server_url else start_postgres()
    redis = None if redis_url else start_redis()
    server_url = server_url or postgres.url  # type: ignore[union-attr]
    redis_url = redis_url or redis.url  # type: ignore[union-attr]
    name = f"modelfleet_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(server_url).set(database=name).render_as_string(False), redis_url
    finally:
        with admin.connect() as conn:
            conn.execute(sa.text(f'DROP DATABASE "{name}" WITH (FORCE)'))
        admin.dispose()
        for server in (postgres, redis):
            if server is not None:
                server.stop()


if __name__ == "__main__":
    main()

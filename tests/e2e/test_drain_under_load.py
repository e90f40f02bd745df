"""No request fails when replicas leave or join: ~20 requests/s through the dev proxy the
whole time, the reference world only (runner, prober, proxy, sample model), while a
deployment scales 4 -> 1, then 1 -> 4, then loses a replica made sick.

Every answer other than 200, and every connection error, counts as a failure. A
watcher polls the service-discovery endpoint and every published replica's port
every 0.2 s: no replica may be dead while it is still published.
"""

from __future__ import annotations

import time

import requests

from tests.e2e.fleet import (
    NAME,
    TIMEOUT_S,
    cli,
    ended_sessions,
    endpoint_url,
    healthy_addresses,
    published,
    serving,
)
from workers.devtools import dev
from workers.devtools.processes import wait_for
from workers.devtools.traffic import LivenessWatch, LoadLoop, between, failures


def _scale(system: dev.DevSystem, replicas: int) -> None:
    done = cli(system, "deployment", "scale", NAME, str(replicas))
    assert done.returncode == 0, done.stderr


def test_scale_in_scale_out_and_eviction_under_load_fail_no_request(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=4)
    url = endpoint_url(system, deployment.id)
    load, watch = LoadLoop(url, rate_per_s=20), LivenessWatch(system.sd_url)
    with load.running(), watch.running():
        time.sleep(2)  # a baseline: all four serve

        scale_in_at = time.monotonic()
        _scale(system, 1)
        wait_for(lambda: ended_sessions(system, deployment.id), lambda n: n == 3,
                 timeout_s=TIMEOUT_S, what="the 3 scaled-in sessions stopped")  # fmt: skip
        time.sleep(1)

        scale_out_at = time.monotonic()
        _scale(system, 4)
        wait_for(lambda: published(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="4 replicas published again")  # fmt: skip
        time.sleep(1)

        sick_at = time.monotonic()
        victim = healthy_addresses(system, deployment.id)[0]
        requests.post(f"{victim}/admin/fail-health", timeout=5)
        wait_for(lambda: ended_sessions(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="the sick replica evicted and stopped")  # fmt: skip
        wait_for(lambda: published(system, deployment.id), lambda n: n == 4,
                 timeout_s=TIMEOUT_S, what="a replacement published")  # fmt: skip
        end = time.monotonic()

    answers = load.snapshot()
    scale_in, scale_out = (
        between(answers, scale_in_at, scale_out_at),
        between(answers, scale_out_at, sick_at),
    )
    eviction = between(answers, sick_at, end)
    assert len(scale_in) > 50, "the load loop must run through the scale-in"
    assert len(scale_out) > 20, "the load loop must run through the scale-out"
    assert failures(scale_in) == []
    assert failures(scale_out) == []
    # A sick replica still answers completions; its eviction drains it like a scale-in.
    assert failures(eviction) == []
    assert watch.polls > 20
    assert watch.violations == []

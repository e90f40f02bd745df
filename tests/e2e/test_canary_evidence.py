"""Canaries judged on evidence (the reference world, one deployment of the sample model):

- at 0.5 requests/s a canary of a revision answering every request 500 sees a handful of
  requests in its first step, never the 20 it needs to be judged: it is never promoted;
  it holds, saying how many it has, until its progress deadline rolls it back, "not
  enough traffic to judge";
- at 20 requests/s a canary whose replicas reset every connection (health passing) is
  rolled back: each such request, retried on the old revision and answered there, still
  counts as a failure of the canary's revision.
"""

from __future__ import annotations

import subprocess

from tests.e2e.fleet import NAME, TIMEOUT_S, cli, endpoint_url, serving
from workers.devtools import dev
from workers.devtools.traffic import LoadLoop, failures


def _canary(system: dev.DevSystem, *args: str) -> subprocess.CompletedProcess[str]:
    return cli(system, "deployment", "update", NAME, *args, "--strategy", "canary",
               "--canary-steps", "10,50", "--canary-interval-s", "5", "--wait",
               "--timeout-s", str(TIMEOUT_S * 2), timeout_s=TIMEOUT_S * 3)  # fmt: skip


def test_a_canary_is_promoted_only_on_evidence_and_one_that_resets_is_rolled_back(
    system: dev.DevSystem,
) -> None:
    deployment = serving(system, replicas=2)
    url = endpoint_url(system, deployment.id)

    trickle = LoadLoop(url, rate_per_s=0.5, clients=1)
    with trickle.running():
        starved = _canary(system, "--env", "MODEL_ERROR_RATE=1", "--progress-deadline-s", "40")
    assert starved.returncode == 1, starved.stdout
    assert "not enough traffic to judge" in starved.stderr, starved.stderr
    assert "of 20 requests within the deadline of 40s" in starved.stderr

    load = LoadLoop(url, rate_per_s=20)
    with load.running():
        resetting = _canary(system, "--env", "MODEL_RESET_RATE=1")
    assert resetting.returncode == 1, resetting.stdout
    assert "rolled back: 5xx rate 1.00" in resetting.stderr, resetting.stderr
    answers = load.snapshot()
    assert len(answers) > 100
    assert failures(answers) == []  # each reset was retried on revision 1 and answered
    assert {a.revision for a in answers} == {1}

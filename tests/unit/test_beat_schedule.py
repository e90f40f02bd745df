"""The cadence table: one entry per phase of the phase table, each expiring within its interval."""

from __future__ import annotations

from beat_schedule import PHASE_INTERVALS_S, beat_schedule

DESIGN_PHASES = {
    "deployments.check_pending",
    "deployments.check_replicas",
    "deployments.scale",
    "deployments.reconcile",
    "deployments.destroy",
    "deployments.rollout",
    "deployments.scale_to_zero",  # an idle deployment gives its replicas back
    "deployments.autoscale",  # each deployment's traffic against its target
    "deployments.wake",  # a request held for a deployment at zero brings them back
    "routes.provision",
    "routes.check_running",
    "routes.check_startup",  # a new route past its health budget fails its revision
    "routes.health_check",
    "routes.health_changed",  # this stage: the change feed's fast path
    "routes.evict",
    "routes.drain",
    "routes.terminate",
    "routes.sync_service_discovery",
    "hosts.check",  # a silent host is lost; its routes leave service at once
    "hosts.drain",  # a draining host's replicas move off, surge first
    "hosts.rebalance",  # one replica moves to make room, or to restore spread
}


def test_every_design_phase_is_scheduled_and_so_is_the_sweeper() -> None:
    assert set(beat_schedule()) == DESIGN_PHASES | {"phase_runs.sweep"}
    assert set(PHASE_INTERVALS_S) == DESIGN_PHASES


def test_ticks_carry_no_expiry_a_clock_could_misread_and_say_they_are_ticks() -> None:
    for name, entry in beat_schedule().items():
        assert entry["task"] == name
        assert "expires" not in entry.get("options", {})
        assert entry["kwargs"] == ({} if name == "phase_runs.sweep" else {"tick": True})


def test_intervals_can_be_replaced() -> None:
    schedule = beat_schedule({**PHASE_INTERVALS_S, "routes.health_check": 1.5})
    assert schedule["routes.health_check"]["schedule"] == 1.5
    assert schedule["routes.provision"]["schedule"] == PHASE_INTERVALS_S["routes.provision"]

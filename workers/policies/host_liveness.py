"""Which silent hosts to give up, and which to leave alone (pure).

Absence of a heartbeat is evidence only when the controller could see: its database
answered, its own runs kept coming, and other hosts kept beating. So:

- A host heard in either store (PostgreSQL, or Redis alone: cut off from the database,
  not dead) is alive; heard only in Redis for `lost_after_s` it is `unreachable`
  (nothing placed there, nothing stopped).
- Silence counts only for the time the controller has been watching without a gap
  (`seeing_for_s`): after an outage of its own every host gets a full `lost_after_s`.
- When more than `disruption_threshold` of the hosts (and at least 2) are quiet at
  once (silent for half of `lost_after_s`: hosts that fall silent together cross the
  full time a heartbeat or two apart), the fault is presumed on the controller's side (a
  network, a store): none is given up, the silent ones are `unreachable`. Kubernetes'
  node lifecycle controller stops evicting in a fully disrupted zone; the threshold is
  its unhealthy-zone-threshold, 0.55.
- Otherwise at most one host is given up per `give_up_interval_s` (the longest silent
  first); the others wait their turn, `unreachable`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workers.domain import HostInfo, HostStatus

MIN_DISRUPTED_HOSTS = 2  # one silent host is a host's fault, whatever the fleet's size


@dataclass(frozen=True)
class LivenessRules:
    lost_after_s: float = 10.0
    disruption_threshold: float = 0.55
    give_up_interval_s: float = 10.0


@dataclass(frozen=True)
class Signals:
    """What the controller sees beside the host rows (their PostgreSQL heartbeats)."""

    seeing_for_s: float  # since the controller last came back from an outage of its own
    since_last_give_up_s: float | None = None  # None: no host given up yet
    # Seconds since each host's last heartbeat in Redis; None: Redis could not be read.
    redis_ages_s: Mapping[str, float] | None = None


@dataclass(frozen=True)
class LivenessVerdict:
    give_up: Mapping[str, float] = field(default_factory=dict)  # host -> seconds silent
    unreachable: Mapping[str, str] = field(default_factory=dict)  # host -> why
    restore: Sequence[str] = ()  # unreachable hosts heard again: back to their intent
    disrupted: bool = False


def judge(hosts: Sequence[HostInfo], signals: Signals, rules: LivenessRules) -> LivenessVerdict:
    """The verdict on every host not lost yet."""
    watched = [h for h in hosts if h.status is not HostStatus.LOST]
    silent: dict[str, float] = {}  # host -> seconds neither store heard it
    unreachable: dict[str, str] = {}
    restore: list[str] = []
    for host in watched:
        database_s = min(host.heartbeat_age_s, signals.seeing_for_s)
        redis_s = (signals.redis_ages_s or {}).get(host.name)
        heard_s = database_s if redis_s is None else min(database_s, redis_s, signals.seeing_for_s)
        if database_s < rules.lost_after_s:
            if host.status is HostStatus.UNREACHABLE:
                restore.append(host.name)
        elif heard_s < rules.lost_after_s:
            unreachable[host.name] = (
                f"host {host.name} heard in Redis but not in PostgreSQL for {database_s:.0f} s: "
                "cut off from the controller's database; nothing on it is stopped"
            )
        silent[host.name] = heard_s
    lost = {name: s for name, s in silent.items() if s >= rules.lost_after_s}
    if not lost:
        return LivenessVerdict(unreachable=unreachable, restore=restore)
    quiet = sum(1 for s in silent.values() if s >= rules.lost_after_s / 2)
    if quiet >= MIN_DISRUPTED_HOSTS and quiet > rules.disruption_threshold * len(watched):
        said = (
            f"{quiet} of {len(watched)} hosts silent at once (more than "
            f"{rules.disruption_threshold:g}): presumed a fault on the controller's side; "
            "no host is given up"
        )
        unreachable.update(dict.fromkeys(lost, said))
        return LivenessVerdict(unreachable=unreachable, restore=restore, disrupted=True)
    return _one_at_a_time(lost, unreachable, restore, signals, rules)


def _one_at_a_time(
    lost: Mapping[str, float],
    unreachable: dict[str, str],
    restore: list[str],
    signals: Signals,
    rules: LivenessRules,
) -> LivenessVerdict:
    since = signals.since_last_give_up_s
    may_give_up = since is None or since >= rules.give_up_interval_s
    first = max(lost, key=lambda name: (lost[name], name)) if may_give_up else None
    for name, silent_s in lost.items():
        if name != first:
            unreachable[name] = (
                f"host {name} silent for {silent_s:.0f} s; waiting its turn: at most one "
                f"host is given up every {rules.give_up_interval_s:g} s"
            )
    give_up = {} if first is None else {first: lost[first]}
    return LivenessVerdict(give_up=give_up, unreachable=unreachable, restore=restore)

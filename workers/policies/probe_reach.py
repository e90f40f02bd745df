"""Which hosts get no new replicas because the probers cannot reach theirs (pure).

A host whose agent heartbeats while probes of its replicas get no answer at all (not
even a refusal) is cut off from the request path, not dead: the controller keeps its
hands off what runs there (a failed probe drains those replicas on its own), but
placing their replacements on the same host would only cut them off too (measured: 5
of 6 replicas serving for a whole partition, replacements landing on the cut host
again and again). Such a host takes no new session until a probe of one of its
replicas passes again, or, with nothing of it left to probe, for `hold_s` after the
last probe that went unanswered (then one replica may try again).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from workers.domain import HOST_INTENTS, HostInfo, ProbeReach

HOLD_S = 60.0


@dataclass(frozen=True)
class ProbeVerdict:
    failing: Mapping[str, str] = field(default_factory=dict)  # host -> why (newly failing)
    cleared: frozenset[str] = frozenset()  # hosts whose probes pass again


def unreachable_by_probes(reach: ProbeReach | None, hold_s: float = HOLD_S) -> bool:
    if reach is None or reach.unreached_s_ago is None or reach.unreached_s_ago >= hold_s:
        return False
    return reach.passed_s_ago is None or reach.passed_s_ago > reach.unreached_s_ago


def judge_probes(
    hosts: Sequence[HostInfo], reach: Mapping[str, ProbeReach], hold_s: float = HOLD_S
) -> ProbeVerdict:
    """Hosts that start or stop failing their probes (unchanged ones are left out)."""
    failing: dict[str, str] = {}
    cleared: set[str] = set()
    for host in hosts:
        if host.status not in HOST_INTENTS:
            continue  # unreachable or lost: its liveness speaks for it
        seen = reach.get(host.name)
        now_failing = unreachable_by_probes(seen, hold_s)
        if now_failing and not host.probes_failing and seen is not None:
            failing[host.name] = (
                f"probes of its replicas get no answer ({seen.detail}) while it heartbeats: "
                "no new session there until one passes again"
            )
        elif host.probes_failing and not now_failing:
            cleared.add(host.name)
    return ProbeVerdict(failing, frozenset(cleared))

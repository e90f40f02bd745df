"""Where a new session goes: the controller's choice, not the first agent to poll (pure).

Like Kubernetes' topology spread with max skew 1: a deployment's replicas go to the
ready host with the fewest of them, then the least loaded, then by name, as long as
the host has a free slot. Never on a cordoned, draining, unreachable or lost host, nor on
one whose replicas get no answer to their probes. When no host
has room the session is not made: the route waits, and `why_no_room` says why.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import replace
from uuid import UUID

from workers.domain import HostInfo, HostStatus


def choose_host(hosts: Sequence[HostInfo], deployment_id: UUID) -> HostInfo | None:
    """The host for one more session of `deployment_id`, or None when none has room."""
    candidates = [h for h in hosts if h.takes_sessions]
    if not candidates:
        return None
    return min(candidates, key=lambda h: (h.per_deployment.get(deployment_id, 0), h.sessions,
                                          h.name))  # fmt: skip


def with_one_more(host: HostInfo, deployment_id: UUID) -> HostInfo:
    """`host` after a session of `deployment_id` was placed on it (for the next choice)."""
    per_deployment = {**host.per_deployment}
    per_deployment[deployment_id] = per_deployment.get(deployment_id, 0) + 1
    return replace(host, sessions=host.sessions + 1, per_deployment=per_deployment)


def why_no_room(hosts: Sequence[HostInfo]) -> str:
    """For people: 'no host with a free slot: 2 hosts, all full (1 cordoned)'."""
    by_status = Counter(h.status.value for h in hosts if not h.probes_failing)
    by_status.update("failing probes" for h in hosts if h.probes_failing)
    ready = by_status.pop(HostStatus.READY.value, 0)
    others = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    if not hosts:
        return "no host with a free slot: no host is registered"
    if ready:
        said = f"no host with a free slot: {ready} host{'s' if ready > 1 else ''}, all full"
    else:
        said = f"no host with a free slot: none of {len(hosts)} hosts is ready"
    return f"{said} ({others})" if others else said

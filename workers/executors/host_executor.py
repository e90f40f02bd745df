"""HostExecutor: what happens to a batch of hosts in the host phases.

A host whose agent has been silent for `lost_after_s` is lost: its sessions are
given up and its routes leave service at once (their deployments get replacements
elsewhere). A draining host's replicas move off surge first: a route leaves once
its deployment has as many healthy replicas on other hosts as it asks for (the
replacements start by themselves, since routes on a leaving host no longer count).
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Sequence
from uuid import UUID

from workers.domain import (
    HostExecutionError,
    HostExecutionResult,
    HostInfo,
    HostRoute,
    HostStatus,
)
from workers.errors import HostLost, error_code_of
from workers.placement import choose_host, why_no_room
from workers.ports import HostRegistry

log = logging.getLogger(__name__)


class HostExecutor:
    def __init__(self, *, host_registry: HostRegistry, lost_after_s: float) -> None:
        self._hosts = host_registry
        self._lost_after_s = lost_after_s

    def check_hosts(self, hosts: Sequence[HostInfo]) -> HostExecutionResult:
        """Hosts silent for `lost_after_s` are errors (lost); their sessions are given up."""
        result = HostExecutionResult()
        lost = {h.name: HostLost(h.name, h.heartbeat_age_s) for h in hosts if self._is_lost(h)}
        if lost:
            given_up = self._hosts.give_up_lost_hosts({name: str(e) for name, e in lost.items()})
            for name, count in given_up.items():
                log.warning("host %s: lost; %d routes given up", name, count)
        for host in hosts:
            failure = lost.get(host.name)
            if failure is None:
                result.successes.append(host)
            else:
                result.errors.append(_host_error(host, "HostLost", failure))
        return result

    def drain_hosts(self, hosts: Sequence[HostInfo]) -> HostExecutionResult:
        """Move each draining host's replicas off once their replacements serve elsewhere;
        a host with no live session left is drained (success), the others wait."""
        names = {h.name for h in hosts if h.status is HostStatus.DRAINING}
        if not names:
            return HostExecutionResult()
        on_them = self._hosts.fetch_routes_on(names)
        leaving = {r.route_id for r in on_them if r.healthy_elsewhere >= r.target}
        if leaving:
            self._hosts.move_off(leaving, "its host is draining: a replacement serves elsewhere")
        left = self._hosts.count_live_sessions(names)
        waiting_for = _waiting_for(on_them, leaving)
        every = self._hosts.fetch_hosts() if waiting_for else []
        result = HostExecutionResult()
        for host in hosts:
            if host.name not in names or not left.get(host.name):
                result.successes.append(host)
                continue
            result.waiting.append(host)
            why = _drain_progress(left[host.name], waiting_for.get(host.name, []), every)
            result.reasons[host.id] = HostExecutionError(host, "draining", why)
        return result

    def _is_lost(self, host: HostInfo) -> bool:
        return host.status is not HostStatus.LOST and host.heartbeat_age_s >= self._lost_after_s


def _waiting_for(on_them: Sequence[HostRoute], leaving: set[UUID]) -> dict[str, list[HostRoute]]:
    waiting: dict[str, list[HostRoute]] = defaultdict(list)
    for route in on_them:
        if route.route_id not in leaving:
            waiting[route.host].append(route)
    return waiting


def _drain_progress(left: int, waiting: Sequence[HostRoute], every: Sequence[HostInfo]) -> str:
    """'3 sessions left: 2 wait for replacements to serve elsewhere; no host with a free
    slot: 2 hosts, all full'."""
    said = f"{left} session{'s' if left > 1 else ''} left"
    if not waiting:
        return f"{said}: stopping"
    said = f"{said}: {len(waiting)} wait for replacements to serve elsewhere"
    if any(choose_host(every, route.deployment_id) is None for route in waiting):
        said = f"{said}; {why_no_room(every)}"
    return said


def _host_error(host: HostInfo, reason: str, failure: Exception) -> HostExecutionError:
    return HostExecutionError(host, reason, str(failure), error_code_of(failure))

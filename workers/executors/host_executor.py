"""HostExecutor: what happens to a batch of hosts in the host phases.

`check_hosts` judges liveness (`workers.policies.host_liveness`): a host heard in
neither store for `lost_after_s`, while the controller could see, is given up (its
sessions LOST and its routes out of service, in one transaction with its row); hosts
silent together, or waiting their turn, are `unreachable` and lose nothing. A draining
host's replicas move off surge first: a route leaves once its deployment has as many
healthy replicas on other hosts as it asks for (the replacements start by themselves,
since routes on a leaving host no longer count).
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
from workers.errors import HostLost, HostUnreachable, InfrastructureUnavailable, error_code_of
from workers.policies.host_liveness import LivenessRules, LivenessVerdict, Signals, judge
from workers.policies.moves import plan_move
from workers.policies.placement import choose_host, why_no_room
from workers.policies.probe_reach import judge_probes
from workers.ports import HostRegistry, HostSignals

log = logging.getLogger(__name__)

HEARD_AGAIN = "heard again: back to what its operator asked"
# A move whose replacement has not served by then is abandoned (the replica counts
# again): longer than a big model's start (MODELFLEET_SESSION_START_DEADLINE_S, 600).
MOVE_ABANDONED_AFTER_S = 900.0


class HostExecutor:
    def __init__(
        self,
        *,
        host_registry: HostRegistry,
        host_signals: HostSignals,
        rules: LivenessRules,
        blind_after_s: float,
    ) -> None:
        self._hosts = host_registry
        self._signals = host_signals
        self._rules = rules
        self._blind_after_s = blind_after_s

    def check_hosts(self, hosts: Sequence[HostInfo]) -> HostExecutionResult:
        """Given up: errors (lost already, by the registry); unreachable: waiting, with why."""
        view = self._hosts.observe(self._blind_after_s)
        signals = Signals(view.seeing_for_s, view.since_last_give_up_s, self._redis_ages())
        verdict = judge(hosts, signals, self._rules)
        given_up = self._hosts.give_up_hosts(verdict.give_up) if verdict.give_up else {}
        for name, count in given_up.items():
            log.warning("host %s: lost; %d routes given up", name, count)
        if verdict.restore:
            self._hosts.restore_hosts(set(verdict.restore), HEARD_AGAIN)
        if verdict.disrupted:
            log.warning("hosts: %s", next(iter(verdict.unreachable.values())))
        self._note_probes(hosts)
        return _sorted(hosts, verdict, set(given_up))

    def _note_probes(self, hosts: Sequence[HostInfo]) -> None:
        """Hosts whose replicas the probers cannot reach take no new session until one
        passes a probe again (`workers.policies.probe_reach`)."""
        try:
            reach = self._signals.probe_reach()
        except InfrastructureUnavailable:
            return  # nothing known: nothing changes
        probes = judge_probes(hosts, reach)
        for name, why in probes.failing.items():
            log.warning("host %s: %s", name, why)
        if probes.failing or probes.cleared:
            self._hosts.note_probes(probes.failing, probes.cleared)

    def _redis_ages(self) -> dict[str, float] | None:
        """The hosts' Redis heartbeats; None when Redis cannot be read (PostgreSQL's alone
        then decide: an unknown is not an old heartbeat)."""
        try:
            return dict(self._signals.heartbeat_ages_s())
        except InfrastructureUnavailable as error:
            log.warning("hosts: Redis heartbeats unreadable (%s); judging by PostgreSQL's", error)
            return None

    def rebalance(self, hosts: Sequence[HostInfo]) -> HostExecutionResult:
        """Finish the moves whose replacement serves, then start at most one more
        (`workers.policies.moves`): a host a move started or ended on waits, saying what."""
        said: dict[str, list[str]] = defaultdict(list)
        for name, what in self._hosts.finish_moves(MOVE_ABANDONED_AFTER_S):
            said[name].append(what)
        move = plan_move(self._hosts.fetch_fleet())
        if move is not None and self._hosts.start_move(move):
            what = f"moving route {move.route_id} to {move.to_host} {move.why}"
            log.info("host %s: %s", move.from_host, what)
            said[move.from_host].append(what)
        result = HostExecutionResult()
        for host in hosts:
            if host.name not in said:
                result.successes.append(host)
                continue
            result.waiting.append(host)
            why = "; ".join(said[host.name])
            result.reasons[host.id] = HostExecutionError(host, "rebalancing", why)
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


def _sorted(
    hosts: Sequence[HostInfo], verdict: LivenessVerdict, given_up: set[str]
) -> HostExecutionResult:
    """Each host in its bucket: given up (error), unreachable (waiting, with why), else fine."""
    result = HostExecutionResult()
    for host in hosts:
        if host.name in given_up:
            failure: Exception = HostLost(host.name, verdict.give_up[host.name])
            result.errors.append(_host_error(host, "HostLost", failure))
        elif host.name in verdict.unreachable:
            failure = HostUnreachable(verdict.unreachable[host.name])
            result.waiting.append(host)
            result.reasons[host.id] = _host_error(host, "HostUnreachable", failure)
        else:
            result.successes.append(host)
    return result


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

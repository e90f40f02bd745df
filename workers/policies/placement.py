"""Where a new session goes: the controller's choice, not the first agent to poll (pure).

A session goes only where what it asks for fits, device by device: whole GPUs on devices
nothing holds, a share on one device with that much memory free (never straddling two),
only devices of the model it names, within the host's cores, memory and slots. Never on
a cordoned, draining, unreachable or lost host, nor on one whose replicas get no answer
to their probes, nor where its deployment has a replica moving off. Among the hosts
where it fits, by the scaling group's placement:

- spread (Kubernetes' topology spread, max skew 1): the host with the fewest replicas of
  its deployment, then the least loaded, then by name;
- pack (Ray's PACK, Backend.AI's concentrated): the most allocated host first, and on it
  the device whose free memory fits best, so that whole hosts and whole devices stay
  free for big models.

Within a host, whole GPUs are its lowest free indices and a share goes on the device it
fits best. When nothing fits, `why_not` says why with the numbers.

`Placer` keeps the fleet indexed by free devices and by load, so that placing one more
session looks at a handful of hosts, not all of them: 10,000 replicas onto 1,000 hosts
of 8 GPUs take well under a second (`bench/placement.py`).
"""

from __future__ import annotations

import bisect
import itertools
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TypeVar
from uuid import UUID

from workers.domain import Allocation, HostInfo, HostStatus, PlacementMode, ResourceRequest

_EPSILON_GIB = 1e-6
_Share = tuple[int, float, str, int]  # (nothing held on it, free GiB, host, device index)
_T = TypeVar("_T", str, _Share)
_Fits = Callable[[str], bool]


@dataclass
class _Host:
    """A host as placement works on it: what is free on it now."""

    info: HostInfo
    free_gib: dict[int, float]  # device index -> GiB free
    sessions: int
    per_deployment: Counter[UUID]
    cpus_used: float
    memory_used_gib: float
    memory_of: dict[int, float] = field(default_factory=dict)  # device index -> its GiB

    def __post_init__(self) -> None:
        self.memory_of = {d.index: d.memory_gib for d in self.info.devices}

    @property
    def name(self) -> str:
        return self.info.name

    def whole_free(self, model: str | None = None) -> list[int]:
        """Indices of its devices nothing holds (of `model`), lowest first."""
        free, memory = self.free_gib, self.memory_of
        held_nothing = [
            d for d in self.info.devices if free[d.index] + _EPSILON_GIB >= memory[d.index]
        ]
        return [d.index for d in held_nothing if d.is_model(model)]

    def whole_free_count(self) -> int:
        free = self.free_gib
        return sum(1 for i, gib in self.memory_of.items() if free[i] + _EPSILON_GIB >= gib)

    def best_share(self, gib: float, model: str | None) -> int | None:
        """The device that holds `gib` (of `model`) and fits it best: one that shares
        already hold first (a device nothing holds stays whole), the least free first."""
        room = gib - _EPSILON_GIB
        fitting = [(self.share_key(d.index), d.index) for d in self.info.devices
                   if d.is_model(model) and self.free_gib[d.index] >= room]  # fmt: skip
        return min(fitting)[1] if fitting else None

    def share_key(self, index: int) -> tuple[int, float]:
        """(1 if nothing holds it, else 0; its free GiB): the order shares fill devices."""
        free = self.free_gib[index]
        return (int(free + _EPSILON_GIB >= self.memory_of[index]), free)

    def used_fraction(self) -> float:
        total = sum(self.memory_of.values())
        return 1.0 - sum(self.free_gib.values()) / total if total else 0.0

    def takes(self, deployment_id: UUID, request: ResourceRequest) -> bool:
        """Whether a session of `deployment_id` asking `request` fits here now."""
        info = self.info
        if info.slots and self.sessions >= info.slots:
            return False
        if deployment_id in info.moving_off:
            return False
        if info.cpus and self.cpus_used + request.cpus > info.cpus + _EPSILON_GIB:
            return False
        if info.memory_gib and self.memory_used_gib + request.memory_gib > info.memory_gib + (
            _EPSILON_GIB
        ):
            return False
        if request.gpu_memory_gib is not None:
            return self.best_share(request.gpu_memory_gib, request.gpu_model) is not None
        return not request.gpus or len(self.whole_free(request.gpu_model)) >= request.gpus

    def allocate(self, request: ResourceRequest) -> Allocation:
        """What `request` gets here (it fits: see `takes`)."""
        cpus, memory_gib = request.cpus, request.memory_gib
        if request.gpu_memory_gib is not None:
            index = self.best_share(request.gpu_memory_gib, request.gpu_model)
            assert index is not None
            return Allocation(self.name, (index,), request.gpu_memory_gib, False, cpus, memory_gib)
        if request.gpus:
            chosen = tuple(self.whole_free(request.gpu_model)[: request.gpus])
            # held whole: the largest of them, so that none shows memory free
            gib = max(self.memory_of[i] for i in chosen)
            return Allocation(self.name, chosen, gib, True, cpus, memory_gib)
        return Allocation(self.name, cpus=cpus, memory_gib=memory_gib)

    def hold(self, deployment_id: UUID, allocation: Allocation, sign: int = 1) -> None:
        """Count `allocation` as held here (`sign` -1: as given back)."""
        for index in allocation.devices:
            whole = self.memory_of[index]
            held = whole if allocation.whole else allocation.gib_per_device
            self.free_gib[index] = min(whole, max(0.0, self.free_gib[index] - sign * held))
        self.sessions += sign
        self.per_deployment[deployment_id] += sign
        self.cpus_used += sign * allocation.cpus
        self.memory_used_gib += sign * allocation.memory_gib


def _working_copy(info: HostInfo) -> _Host:
    free = {d.index: max(0.0, d.memory_gib - info.device_used_gib.get(d.index, 0.0))
            for d in info.devices}  # fmt: skip
    return _Host(info, free, info.sessions, Counter(info.per_deployment), info.cpus_used,
                 info.memory_used_gib)  # fmt: skip


class Placer:
    """The fleet as placement sees it, indexed; `place` chooses and records one session."""

    def __init__(self, hosts: Sequence[HostInfo], mode: PlacementMode = PlacementMode.SPREAD):
        self.mode = mode
        self._all = [_working_copy(h) for h in hosts]
        self._hosts = {h.name: h for h in self._all if _eligible(h.info)}
        self._by_whole: dict[int, list[str]] = defaultdict(list)  # free whole devices -> names
        self._shares: list[_Share] = []  # devices shares could go on, ascending
        self._by_sessions: dict[int, list[str]] = defaultdict(list)
        self._of_deployment: dict[UUID, set[str]] = defaultdict(set)
        for host in self._hosts.values():
            self._index(host)

    # -- choosing --
    def choose(
        self, deployment_id: UUID, request: ResourceRequest, *, avoid: Iterable[str] = ()
    ) -> Allocation | None:
        """Where one more session of `deployment_id` asking `request` goes; None: nowhere."""
        avoided = set(avoid)

        def fits(name: str) -> bool:
            return name not in avoided and self._hosts[name].takes(deployment_id, request)

        name = self._first(deployment_id, request, fits)
        return None if name is None else self._hosts[name].allocate(request)

    def place(self, deployment_id: UUID, request: ResourceRequest) -> Allocation | None:
        """`choose`, then count the session as held there (for the next choice)."""
        allocation = self.choose(deployment_id, request)
        if allocation is not None:
            self.hold(deployment_id, allocation)
        return allocation

    def hold(self, deployment_id: UUID, allocation: Allocation, sign: int = 1) -> None:
        """Count `allocation` as held (`sign` -1: given back, as when a replica leaves)."""
        host = self._hosts.get(allocation.host)
        if host is None:
            return
        # Only what changes is indexed again: the devices held, the host's buckets.
        whole, sessions = host.whole_free_count(), host.sessions
        for index in allocation.devices:
            self._share_entry(host, index, _remove)
        host.hold(deployment_id, allocation, sign)
        for index in allocation.devices:
            self._share_entry(host, index, bisect.insort)
        _move(self._by_whole, whole, host.whole_free_count(), host.name)
        _move(self._by_sessions, sessions, host.sessions, host.name)
        if host.per_deployment[deployment_id] > 0:
            self._of_deployment[deployment_id].add(host.name)
        else:
            self._of_deployment[deployment_id].discard(host.name)

    def fits_on(self, name: str, deployment_id: UUID, request: ResourceRequest) -> bool:
        host = self._hosts.get(name)
        return host is not None and host.takes(deployment_id, request)

    def host(self, name: str) -> _Host | None:
        return self._hosts.get(name)

    # -- saying why not --
    def why_not(self, request: ResourceRequest) -> str:
        """For people, with the numbers: 'needs 2 GPUs; largest free block: 1 GPU
        (host-3); 5 GPUs free over 4 hosts'."""
        if not self._hosts or not request.wants_gpu:
            return _no_slot(self._all)
        needs = f"needs {request.describe()}"
        of_model = [h for h in self._hosts.values()
                    if any(d.is_model(request.gpu_model) for d in h.info.devices)]  # fmt: skip
        if not of_model:
            kind = "a GPU of that model" if request.gpu_model else "a GPU"
            return f"{needs}; no ready host has {kind}"
        if request.gpu_memory_gib is not None:
            return f"{needs}; {_share_numbers(of_model, request.gpu_model)}"
        return f"{needs}; {_block_numbers(of_model, request.gpu_model)}"

    # -- the indexes --
    def _first(self, deployment_id: UUID, request: ResourceRequest, fits: _Fits) -> str | None:
        if request.gpu_memory_gib is not None:
            candidates = self._share_candidates(request.gpu_memory_gib)
        elif request.gpus:
            candidates = self._whole_candidates(request.gpus)
        else:
            candidates = self._session_candidates()
        if self.mode is PlacementMode.PACK:
            return next((name for name in candidates if fits(name)), None)
        return self._spread(deployment_id, candidates, fits)

    def _spread(self, deployment_id: UUID, candidates: Iterator[str], fits: _Fits) -> str | None:
        """The least loaded host without a replica of the deployment; failing that, the one
        with the fewest of them (candidates come least loaded first)."""
        has_some = self._of_deployment.get(deployment_id, set())
        for name in candidates:
            if name not in has_some and fits(name):
                return name
        ranked = sorted(has_some, key=lambda n: (self._hosts[n].per_deployment[deployment_id],
                                                 self._hosts[n].used_fraction(),
                                                 self._hosts[n].sessions, n))  # fmt: skip
        return next((name for name in ranked if fits(name)), None)

    def _whole_candidates(self, gpus: int) -> Iterator[str]:
        counts = sorted(k for k in self._by_whole if k >= gpus)
        if self.mode is PlacementMode.SPREAD:
            counts.reverse()  # most free first: the least loaded
        for count in counts:
            yield from list(self._by_whole[count])

    def _share_candidates(self, gib: float) -> Iterator[str]:
        """Hosts with a device that holds `gib`: under pack, devices shares hold first, the
        least free first, then whole ones; under spread, the most free first."""
        shares, low = self._shares, gib - _EPSILON_GIB
        partial = range(bisect.bisect_left(shares, (0, low, "", -1)),
                        bisect.bisect_left(shares, (1, 0.0, "", -1)))  # fmt: skip
        fresh = range(bisect.bisect_left(shares, (1, low, "", -1)), len(shares))
        if self.mode is PlacementMode.SPREAD:
            positions = itertools.chain(reversed(fresh), reversed(partial))
        else:
            positions = itertools.chain(partial, fresh)
        seen: set[str] = set()
        for position in positions:
            name = shares[position][2]
            if name not in seen:
                seen.add(name)
                yield name

    def _session_candidates(self) -> Iterator[str]:
        counts = sorted(self._by_sessions, reverse=self.mode is PlacementMode.PACK)
        for count in counts:
            yield from list(self._by_sessions[count])

    def _share_entry(
        self, host: _Host, index: int, change: Callable[[list[_Share], _Share], None]
    ) -> None:
        """Add (or remove) a device's entry among those shares could go on."""
        if host.free_gib[index] > _EPSILON_GIB:
            change(self._shares, (*host.share_key(index), host.name, index))

    def _index(self, host: _Host) -> None:
        bisect.insort(self._by_whole[host.whole_free_count()], host.name)
        for index in host.free_gib:
            self._share_entry(host, index, bisect.insort)
        bisect.insort(self._by_sessions[host.sessions], host.name)
        for deployment_id, count in host.per_deployment.items():
            if count > 0:
                self._of_deployment[deployment_id].add(host.name)


def choose_host(
    hosts: Sequence[HostInfo],
    deployment_id: UUID,
    request: ResourceRequest | None = None,
    mode: PlacementMode = PlacementMode.SPREAD,
) -> Allocation | None:
    """Where one more session of `deployment_id` goes, or None when it fits nowhere."""
    return Placer(hosts, mode).choose(deployment_id, request or ResourceRequest())


def why_no_room(hosts: Sequence[HostInfo], request: ResourceRequest | None = None) -> str:
    """Why a session asking `request` fits on no host, for people."""
    return Placer(hosts).why_not(request or ResourceRequest())


def _eligible(host: HostInfo) -> bool:
    return host.status is HostStatus.READY and not host.probes_failing


def _move(buckets: dict[int, list[str]], before: int, after: int, name: str) -> None:
    if before != after:
        _remove(buckets[before], name)
        bisect.insort(buckets[after], name)


def _remove(items: list[_T], item: _T) -> None:
    position = bisect.bisect_left(items, item)
    if position < len(items) and items[position] == item:
        del items[position]


def _block_numbers(hosts: Sequence[_Host], model: str | None) -> str:
    free = {h.name: len(h.whole_free(model)) for h in hosts}
    largest = max(free.items(), key=lambda item: (item[1], item[0]))
    with_some = sum(1 for n in free.values() if n)
    total = sum(free.values())
    block = f"largest free block: {_gpus(largest[1])}" + (f" ({largest[0]})" if largest[1] else "")
    return f"{block}; {_gpus(total)} free over {with_some} host{'s' if with_some != 1 else ''}"


def _share_numbers(hosts: Sequence[_Host], model: str | None) -> str:
    shares = [(free, h.name) for h in hosts for d in h.info.devices if d.is_model(model)
              for free in (h.free_gib[d.index],)]  # fmt: skip
    largest = max(shares)
    total = sum(free for free, _ in shares)
    with_some = len({name for free, name in shares if free > _EPSILON_GIB})
    return (f"largest free share: {largest[0]:g} GiB ({largest[1]}); {total:g} GiB free over "
            f"{with_some} host{'s' if with_some != 1 else ''}")  # fmt: skip


def _gpus(count: int) -> str:
    return f"{count} GPU{'s' if count != 1 else ''}"


def _no_slot(hosts: Sequence[_Host]) -> str:
    """'no host with a free slot: 2 hosts, all full (1 cordoned)'."""
    infos = [h.info for h in hosts]
    by_status = Counter(h.status.value for h in infos if not h.probes_failing)
    by_status.update("failing probes" for h in infos if h.probes_failing)
    ready = by_status.pop(HostStatus.READY.value, 0)
    others = ", ".join(f"{count} {status}" for status, count in sorted(by_status.items()))
    if not infos:
        return "no host with a free slot: no host is registered"
    if ready:
        said = f"no host with a free slot: {ready} host{'s' if ready > 1 else ''}, all full"
    else:
        said = f"no host with a free slot: none of {len(infos)} hosts is ready"
    return f"{said} ({others})" if others else said

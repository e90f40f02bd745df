"""Machines on one machine: a bridge and one network namespace per host, made with `ip`
(root only), for the host-loss tests and `bench/host_loss.py`.

Every address lives on the bridge this module makes (a /24 of 10.0.0.0/8 no interface
here uses yet); nothing is routed anywhere else. A host's link can be set down (a
partition) and up again, or the host cut from some ports only (`cut_from`): this kernel
has no netem and no tc actions, so the host's side of its cable gets an htb qdisc whose
class of 8 bit/s swallows what `u32` filters send it (PostgreSQL only, Redis only),
while the rest flows. Everything is deleted on exit, processes in a namespace first.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

KILL_ROUNDS = 50  # a dying process's children may appear while the first are killed


@dataclass(frozen=True)
class NetworkHost:
    namespace: str
    link: str  # the bridge's end of its cable
    address: str

    def argv(self, argv: list[str]) -> list[str]:
        """`argv` run inside this host's namespace."""
        return ["ip", "netns", "exec", self.namespace, *argv]

    def pids(self) -> list[int]:
        listed = _ip("netns", "pids", self.namespace, check=False)
        return [int(pid) for pid in listed.split()]

    def kill_all(self) -> None:
        """SIGKILL to every process in the namespace, until none is left."""
        for _ in range(KILL_ROUNDS):
            pids = self.pids()
            if not pids:
                return
            for pid in pids:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
            time.sleep(0.05)

    def cut(self) -> None:
        _ip("link", "set", self.link, "down")

    def mend(self) -> None:
        _ip("link", "set", self.link, "up")

    def cut_from(self, address: str, ports: list[int]) -> None:
        """Nothing this host sends to `address` on `ports` arrives; the rest flows."""
        inside = f"{self.link}i"
        self._tc("qdisc", "add", "dev", inside, "root", "handle", "1:", "htb", "default", "10")
        self._tc("class", "add", "dev", inside, "parent", "1:", "classid", "1:10", "htb",
                 "rate", "10gbit")  # fmt: skip
        self._tc("class", "add", "dev", inside, "parent", "1:", "classid", "1:20", "htb",
                 "rate", "8bit", "ceil", "8bit")  # fmt: skip
        for port in ports:
            self._tc("filter", "add", "dev", inside, "parent", "1:", "protocol", "ip", "prio",
                     "1", "u32", "match", "ip", "dst", f"{address}/32", "match", "ip", "dport",
                     str(port), "0xffff", "flowid", "1:20")  # fmt: skip

    def mend_ports(self) -> None:
        self._tc("qdisc", "del", "dev", f"{self.link}i", "root", check=False)

    def _tc(self, *args: str, check: bool = True) -> None:
        done = subprocess.run(["ip", "netns", "exec", self.namespace, "tc", *args],
                              capture_output=True, text=True, check=False)  # fmt: skip
        if check and done.returncode != 0:
            raise RuntimeError(f"tc {' '.join(args)}: {done.stderr.strip()}")


@dataclass(frozen=True)
class Network:
    bridge: str
    address: str  # this machine's address on the bridge: where its servers listen
    hosts: list[NetworkHost]


def available() -> bool:
    """Whether this process can make namespaces (root, and `ip` installed)."""
    return os.geteuid() == 0 and shutil.which("ip") is not None


@contextlib.contextmanager
def bridged_hosts(count: int) -> Iterator[Network]:
    tag = secrets.token_hex(3)
    subnet = _free_subnet()
    bridge = f"mfb{tag}"
    network = Network(
        bridge,
        str(subnet[1]),
        [NetworkHost(f"mf{tag}h{i}", f"mfv{tag}{i}", str(subnet[10 + i])) for i in range(count)],
    )
    try:
        _ip("link", "add", bridge, "type", "bridge")
        _ip("addr", "add", f"{network.address}/{subnet.prefixlen}", "dev", bridge)
        _ip("link", "set", bridge, "up")
        for host in network.hosts:
            _plug(host, bridge, subnet.prefixlen)
        yield network
    finally:
        for host in network.hosts:
            host.kill_all()
            _ip("netns", "del", host.namespace, check=False)
        _ip("link", "del", bridge, check=False)


def _plug(host: NetworkHost, bridge: str, prefix: int) -> None:
    inside = f"{host.link}i"
    _ip("netns", "add", host.namespace)
    _ip("link", "add", host.link, "type", "veth", "peer", "name", inside)
    _ip("link", "set", inside, "netns", host.namespace)
    _ip("link", "set", host.link, "master", bridge)
    _ip("link", "set", host.link, "up")
    _ip("-n", host.namespace, "addr", "add", f"{host.address}/{prefix}", "dev", inside)
    _ip("-n", host.namespace, "link", "set", inside, "up")
    _ip("-n", host.namespace, "link", "set", "lo", "up")


def _free_subnet() -> ipaddress.IPv4Network:
    used = [
        ipaddress.ip_interface(word).network
        for line in _ip("-4", "-o", "addr", "show").splitlines()
        for word in line.split()
        if "/" in word and word[0].isdigit()
    ]
    for _ in range(100):
        candidate = ipaddress.IPv4Network(
            f"10.{secrets.randbelow(200) + 50}.{secrets.randbelow(256)}.0/24"
        )
        if not any(candidate.overlaps(network) for network in used):
            return candidate
    raise RuntimeError("no free /24 in 10.0.0.0/8 for a test bridge")


def _ip(*args: str, check: bool = True) -> str:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, check=False)
    if check and done.returncode != 0:
        raise RuntimeError(f"ip {' '.join(args)}: {done.stderr.strip()}")
    return done.stdout

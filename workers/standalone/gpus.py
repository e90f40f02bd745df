"""What a host has, as its agent finds it: accelerators, cores, memory; and what a session
is told of the devices it was given.

NVIDIA devices are read from `nvidia-smi` when it is on PATH (no library to install, and
nothing fails where there is no GPU). A machine without it, or a test, declares its
devices instead (`modelfleet runner --gpus N --gpu-memory-gib X [--gpu-model NAME]`: N
identical devices).
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from workers.domain import Device

log = logging.getLogger(__name__)

QUERY = ["--query-gpu=index,uuid,name,memory.total", "--format=csv,noheader,nounits"]
QUERY_TIMEOUT_S = 10.0
DEVICES_VARIABLES = ("CUDA_VISIBLE_DEVICES", "NVIDIA_VISIBLE_DEVICES")
SHARE_VARIABLE = "MODELFLEET_GPU_MEMORY_GIB"
_FIELDS = 4  # index, uuid, name, memory.total
_MIB_PER_GIB = 1024


@dataclass(frozen=True)
class Declared:
    """Devices an operator declared: `count` identical ones."""

    count: int
    memory_gib: float
    model: str = "declared GPU"


@dataclass(frozen=True)
class Machine:
    devices: tuple[Device, ...]
    cpus: float
    memory_gib: float


def this_machine(host: str, declared: Declared | None) -> Machine:
    """The devices declared, else those `nvidia-smi` lists (none without it), with this
    machine's cores and memory."""
    if declared is not None:
        devices = tuple(Device(i, f"{host}-gpu-{i}", declared.model, declared.memory_gib)
                        for i in range(declared.count))  # fmt: skip
    else:
        devices = detected()
    return Machine(devices, float(os.cpu_count() or 0), _memory_gib())


def detected() -> tuple[Device, ...]:
    """NVIDIA devices as `nvidia-smi` lists them; none when it is absent or fails."""
    command = shutil.which("nvidia-smi")
    if command is None:
        return ()
    try:
        listed = subprocess.run([command, *QUERY], capture_output=True, text=True, check=True,
                                timeout=QUERY_TIMEOUT_S).stdout  # fmt: skip
    except (OSError, subprocess.SubprocessError) as error:
        log.warning("nvidia-smi failed (%s): no GPU reported", error)
        return ()
    return parse(listed)


def parse(listed: str) -> tuple[Device, ...]:
    """`nvidia-smi --query-gpu=index,uuid,name,memory.total --format=csv,noheader,nounits`
    lines ('0, GPU-5d3a..., NVIDIA A100-SXM4-80GB, 81920'): memory in MiB."""
    devices = []
    for line in listed.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != _FIELDS:
            continue
        try:
            index, memory_mib = int(fields[0]), float(fields[3])
        except ValueError:
            log.warning("nvidia-smi line not understood, passed over: %r", line)
            continue
        devices.append(Device(index, fields[1], fields[2], round(memory_mib / _MIB_PER_GIB, 2)))
    return tuple(devices)


def session_environ(devices: Sequence[int], share_gib: float | None) -> Mapping[str, str]:
    """What a session is told of its devices: their indices (CUDA's and the NVIDIA
    container runtime's variable), and the GiB it may use of a shared one."""
    if not devices:
        return {}
    listed = ",".join(str(index) for index in devices)
    environ = dict.fromkeys(DEVICES_VARIABLES, listed)
    if share_gib is not None:
        environ[SHARE_VARIABLE] = f"{share_gib:g}"
    return environ


def _memory_gib() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return round(int(line.split()[1]) / (1024 * 1024), 1)
    except (OSError, ValueError, IndexError):
        pass
    return 0.0

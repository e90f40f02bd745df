"""Resources as values: the accelerators a host has, what a replica asks for, and what a
placement gives it.

A replica asks for whole GPUs (`gpus`) or a share of one device (`gpu_memory_gib`; a
share never straddles devices), optionally only devices of one model, and CPU cores and
memory. A whole device given to a session holds all its memory; shares add up on one
device up to its memory. A revision keeps its request in `resources` (strings, as the
scheduler contract carries them).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any


class PlacementMode(StrEnum):
    """How a scaling group places its replicas."""

    SPREAD = "spread"  # the host with the fewest of the deployment, then the least loaded
    PACK = "pack"  # the most allocated host and device first: whole hosts stay free


@dataclass(frozen=True)
class Device:
    """One accelerator of a host, as its agent detected or was told."""

    index: int
    uuid: str
    model: str
    memory_gib: float

    def to_json(self) -> dict[str, Any]:
        return {"index": self.index, "uuid": self.uuid, "model": self.model,
                "memory_gib": self.memory_gib}  # fmt: skip

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Device:
        return cls(int(data["index"]), str(data["uuid"]), str(data["model"]),
                   float(data["memory_gib"]))  # fmt: skip

    def is_model(self, wanted: str | None) -> bool:
        """Whether the device is of the model asked for: its name contains it, case aside
        ('a100' is 'NVIDIA A100-SXM4-80GB'); any device when none is asked for."""
        return wanted is None or wanted.casefold() in self.model.casefold()


@dataclass(frozen=True)
class ResourceRequest:
    """What one replica needs where it runs (nothing: it runs anywhere with a slot)."""

    gpus: int = 0  # whole devices
    gpu_memory_gib: float | None = None  # a share of one device, instead of whole ones
    gpu_model: str | None = None  # only devices of this model
    cpus: float = 0.0
    memory_gib: float = 0.0

    @property
    def wants_gpu(self) -> bool:
        return self.gpus > 0 or self.gpu_memory_gib is not None

    def to_resources(self) -> dict[str, str]:
        """As a revision and a session spec carry it (only what is asked for)."""
        fields = {"gpus": self.gpus or None, "gpu_memory_gib": self.gpu_memory_gib,
                  "gpu_model": self.gpu_model, "cpus": self.cpus or None,
                  "memory_gib": self.memory_gib or None}  # fmt: skip
        return {name: _text(value) for name, value in fields.items() if value is not None}

    @classmethod
    def from_resources(cls, resources: Mapping[str, str]) -> ResourceRequest:
        """Read back what `to_resources` wrote; keys it does not know are passed over."""
        share = resources.get("gpu_memory_gib")
        return cls(
            gpus=int(resources.get("gpus", "0")),
            gpu_memory_gib=None if share is None else float(share),
            gpu_model=resources.get("gpu_model"),
            cpus=float(resources.get("cpus", "0")),
            memory_gib=float(resources.get("memory_gib", "0")),
        )

    def describe(self) -> str:
        """For people: '2 GPUs (A100)', '20 GiB of one GPU', 'no GPU'."""
        model = f" ({self.gpu_model})" if self.gpu_model else ""
        if self.gpu_memory_gib is not None:
            return f"{self.gpu_memory_gib:g} GiB of one GPU{model}"
        if self.gpus:
            return f"{self.gpus} GPU{'s' if self.gpus > 1 else ''}{model}"
        return "no GPU"


@dataclass(frozen=True)
class Allocation:
    """Where a placed session runs and what it holds there: device indices and the GiB it
    holds on each (whole devices: the largest one's memory, so that none shows any free),
    cores and memory."""

    host: str
    devices: tuple[int, ...] = ()
    gib_per_device: float = 0.0
    whole: bool = False
    cpus: float = 0.0
    memory_gib: float = 0.0


def _text(value: object) -> str:
    if isinstance(value, float):
        return f"{value:g}" if math.isfinite(value) else str(value)
    return str(value)

"""What the probers say of the hosts beside each route's readiness: when a probe of a replica
on a host last passed, and when one last got no answer at all from it (the machine did not
even refuse the connection), with what the probe saw. Probers write, the controller reads.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass


@dataclass(frozen=True)
class Unreached:
    at_s: float  # unix s, by the Redis clock
    detail: str  # what the probe saw: "/health: no connection within 15 s"


def unreached_field(at_s: float, detail: str) -> str:
    return json.dumps({"at": round(at_s, 3), "detail": detail[:200]})


def unreached_from_field(raw: str) -> Unreached | None:
    """The record, or None when it is not one."""
    try:
        found = json.loads(raw)
        at_s = float(found["at"])
    except (ValueError, TypeError, KeyError):
        return None
    if not math.isfinite(at_s):
        return None
    return Unreached(at_s, str(found.get("detail", "")))


def time_from_field(raw: str) -> float | None:
    """A stored unix time, or None when it is not one."""
    try:
        at_s = float(raw)
    except (ValueError, TypeError):
        return None
    return at_s if math.isfinite(at_s) else None

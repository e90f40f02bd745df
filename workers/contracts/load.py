"""The proxies' load per second: one Redis hash per second (unix s, the proxy's clock),
added to by every proxy process each second, read by the traffic autoscaler.

Fields, per endpoint:
- `{endpoint}|busy`: requests in flight there integrated over that second, in seconds
  (the mean number in flight, summed over proxies; held ones included);
- `{endpoint}|started`: requests that arrived in that second.
"""

from __future__ import annotations

from collections.abc import Mapping

SEPARATOR = "|"
BUSY = "busy"
STARTED = "started"


def busy_field(endpoint: str) -> str:
    return f"{endpoint}{SEPARATOR}{BUSY}"


def started_field(endpoint: str) -> str:
    return f"{endpoint}{SEPARATOR}{STARTED}"


def read_second(fields: Mapping[str, str], endpoint: str) -> tuple[float, float]:
    """(busy seconds, requests started) of `endpoint` in one second's hash (0 when absent)."""
    busy = fields.get(busy_field(endpoint)) or 0.0
    started = fields.get(started_field(endpoint)) or 0.0
    return float(busy), float(started)

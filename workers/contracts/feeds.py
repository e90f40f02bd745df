"""The change feeds: Redis streams whose entries name ids in one comma-separated field.

Each feed is declared once (`FeedSpec`: its field); writers make entries with
`entry`, readers (the controller's phases, the proxies' event loops) take ids out with
`ids_in`.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

SEPARATOR = ","


@dataclass(frozen=True)
class FeedSpec:
    field: str  # the entries' field that names ids

    def entry(self, ids: Iterable[str]) -> dict[Any, Any]:
        """An entry naming `ids` (typed as the Redis clients take a stream entry)."""
        return {self.field: SEPARATOR.join(ids)}

    def ids_in(self, fields: Mapping[Any, Any]) -> list[str]:
        """The ids an entry names, in order, empty ones left out."""
        return [i for i in str(fields.get(self.field, "")).split(SEPARATOR) if i]


# Routes whose readiness changed (written by a prober, beside the health hashes).
READINESS_CHANGES = FeedSpec("routes")
# Routes a service-discovery sync added, changed or removed (read by the proxies).
TRAFFIC_SET_CHANGES = FeedSpec("routes")
# Deployments a proxy holds requests for (read by `deployments.wake`).
WAKES = FeedSpec("deployments")

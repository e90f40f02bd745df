"""The published traffic set, as its Redis hashes hold it: one scrape target per route, the
generation that stamps every sync, and what proxies do for endpoints without a replica.

The generation is how a reader tells an instruction from an accident: a route absent
from a set stamped with a generation newer than the one a proxy last applied was
withdrawn by the controller; a set without a generation (Redis restarted empty, a
writer that stamps none) says nothing about what to remove.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any
from uuid import UUID

from workers.domain import EndpointMode, EndpointState, ModelServiceMetadata

# A field of the endpoint-modes hash beside the deployment ids (never a UUID): the hash
# always exists once a sync ran, so a missing one means a store that lost it.
GENERATION_FIELD = "generation"


def next_generation(previous: int | None, now_us: int) -> int:
    """A generation newer than `previous`, from the store's clock in microseconds: newer
    than any before a restart emptied the store, as long as the clock moves forward."""
    return max((previous or 0) + 1, now_us)


def target_fields(route: ModelServiceMetadata) -> dict[str, str]:
    """A route's scrape-target hash."""
    return {
        "name": route.model_service_name,
        "host": route.host,
        "port": str(route.port),
        "metrics_path": route.metrics_path,
        "labels": json.dumps(dict(route.labels), sort_keys=True),
    }


def target_from_fields(route_id: str, fields: Mapping[str, str]) -> ModelServiceMetadata | None:
    """The target a hash holds; None when it is malformed in any way."""
    try:
        labels = json.loads(fields["labels"])
        if not isinstance(labels, dict):
            return None
        return ModelServiceMetadata(
            route_id=UUID(route_id),
            model_service_name=fields["name"],
            host=fields["host"],
            port=int(fields["port"]),
            metrics_path=fields["metrics_path"],
            labels={str(k): str(v) for k, v in labels.items()},
        )
    except (KeyError, ValueError):
        return None


def modes_fields(modes: Mapping[UUID, EndpointState], generation: int) -> dict[str, str]:
    """The endpoint-modes hash: deployment id -> its mode (`wakes`, `operator-zero`), or a
    JSON object with the mode and why (`unavailable`); and the sync's generation."""
    fields = {str(i): _mode_field(state) for i, state in modes.items()}
    return {**fields, GENERATION_FIELD: str(generation)}


def modes_from_fields(fields: Mapping[str, Any]) -> dict[str, EndpointState]:
    """Deployment id -> its state, from the hash (its generation, and any value that is
    not a mode, left out)."""
    found = ((str(k), _mode_from_field(str(v))) for k, v in fields.items() if k != GENERATION_FIELD)
    return {endpoint: state for endpoint, state in found if state is not None}


def _mode_field(state: EndpointState) -> str:
    if not state.reason:
        return state.mode.value
    return json.dumps({"mode": state.mode.value, "reason": state.reason})


def _mode_from_field(raw: str) -> EndpointState | None:
    try:
        if not raw.startswith("{"):
            return EndpointState(EndpointMode(raw))
        found = json.loads(raw)
        return EndpointState(EndpointMode(found["mode"]), str(found.get("reason", "")))
    except (ValueError, KeyError, TypeError):
        return None


def generation_of(value: Any) -> int | None:
    """A stored generation, or None when there is none (or it is not a number)."""
    try:
        return None if value is None else int(value)
    except (TypeError, ValueError):
        return None

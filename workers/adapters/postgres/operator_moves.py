"""Changes an operator asked for, as guarded transitions with their history rows."""

from __future__ import annotations

from collections.abc import Set as AbstractSet
from uuid import UUID

from workers.domain import DeploymentLifecycle, DeploymentTransition, OutcomeBucket
from workers.phase_names import OPERATOR

OPERATOR_PHASE = OPERATOR  # the `phase` of history rows written for a CLI command


def operator_move(
    deployment_id: UUID,
    expected: AbstractSet[DeploymentLifecycle],
    to: DeploymentLifecycle | None,
    what: str,
) -> DeploymentTransition:
    """An operator's change with its history row (`to` None: the lifecycle stays)."""
    return DeploymentTransition(
        entity_id=deployment_id,
        expected=frozenset(expected),
        to_status=to,
        phase=OPERATOR_PHASE,
        result=OutcomeBucket.SUCCESS,
        message=f"operator asked: {what}",
    )

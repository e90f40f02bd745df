"""A host whose replicas' probes get no answer at all takes no new session, as a table."""

from __future__ import annotations

import pytest

from workers.domain import ProbeReach
from workers.policies.probe_reach import unreachable_by_probes


@pytest.mark.parametrize(
    ("passed_s_ago", "unreached_s_ago", "failing"),
    [
        (None, None, False),  # never probed: nothing known
        (30.0, None, False),  # probes pass
        (30.0, 2.0, True),  # the last probe went unanswered, none passed since
        (None, 2.0, True),
        (1.0, 2.0, False),  # one passed since: reachable again
        (300.0, 61.0, False),  # nothing probed for the hold: one replica may try again
    ],
)
def test_failing_until_a_probe_passes_or_the_hold_is_over(
    passed_s_ago: float | None, unreached_s_ago: float | None, failing: bool
) -> None:
    assert unreachable_by_probes(ProbeReach(passed_s_ago, unreached_s_ago), hold_s=60) is failing

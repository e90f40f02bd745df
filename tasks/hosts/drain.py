"""hosts.drain: move a draining host's replicas off it, surge first, with no failed request.

Routes on a draining host no longer count as replicas, so each deployment starts
replacements elsewhere (deployments.reconcile, then scale and provision); once a
deployment has as many healthy replicas on other hosts as it asks for, its routes
on the host leave service (traffic first, then drain_s, then stop). A host with
no live session left is drained; it stays `draining` (taking no work) until an
operator uncordons it. While replicas wait, the history says why.
"""

from tasks.phase import HOSTS, LEAVING_SERVICE, Phase, Stay
from tasks.runs import phase_task
from workers.domain import HostStatus, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.DRAIN_HOSTS,
    kind=HOSTS,
    targets=frozenset({HostStatus.DRAINING}),
    execute=lambda adapters, items: adapters.host_executor().drain_hosts(items),
    on={OutcomeBucket.WAITING: Stay()},
    explains=False,
    follow_ups_on_outcome={OutcomeBucket.WAITING: (*LEAVING_SERVICE, PhaseName.RECONCILE)},
)

task = phase_task(PHASE)

"""hosts.rebalance: move one replica at a time, surge first, to make room or to restore
spread.

A replica that fits on no host, though it would once one replica elsewhere moved
(fragmentation), gets that move; under `spread`, a deployment two replicas heavier on one
host than on another where one more fits (a host joined or came back) moves one from the
fullest (`workers.policies.moves`). The moving route stops counting as a replica, so
its replacement starts elsewhere (deployments.reconcile, then scale and provision,
kept off the host it leaves); once its deployment is served without it, it leaves
service (traffic first, then drain_s). One move at a time, never of a deployment being
rolled out, never in a scaling group with `--no-rebalance`; each start and end is a
history row on the host it leaves.
"""

from tasks.phase import HOSTS, LEAVING_SERVICE, Phase, Stay
from tasks.runs import phase_task
from workers.domain import HostStatus, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.REBALANCE,
    kind=HOSTS,
    targets=frozenset({HostStatus.READY}),
    execute=lambda adapters, items: adapters.host_executor().rebalance(items),
    on={OutcomeBucket.WAITING: Stay()},  # a move started or ended there: its history row
    whole_set=True,
    explains=False,
    follow_ups_on_outcome={OutcomeBucket.WAITING: (*LEAVING_SERVICE, PhaseName.RECONCILE)},
)

task = phase_task(PHASE)

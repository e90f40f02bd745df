"""hosts.check: which silent hosts to give up, and which to leave alone.

Every host not lost yet is judged (`workers.policies.host_liveness`): one heard in
neither PostgreSQL nor Redis for MODELFLEET_HOST_LOST_AFTER_S, while the controller
itself could see, is given up: its sessions LOST, its routes out of service at once
(no drain wait: nothing on a lost host can be trusted) and its row `lost`, in one
transaction (by the registry, not by this run's close: a failure between the two
once left given-up processes on a host the placer filled again). The follow-ups
publish the traffic set without those routes and start their replacements.

Hosts silent together (more than MODELFLEET_HOST_DISRUPTION_THRESHOLD of them),
waiting their turn (one given up per MODELFLEET_HOST_GIVE_UP_INTERVAL_S), or heard in
Redis only, are `unreachable`: no new session, nothing stopped, the reason kept as the
host's condition. Heard again, they go back to what their operator asked.
"""

from tasks.phase import HOSTS, Move, Phase
from tasks.runs import phase_task
from workers.domain import HostStatus, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_HOSTS,
    kind=HOSTS,
    targets=frozenset(
        {HostStatus.READY, HostStatus.CORDONED, HostStatus.DRAINING, HostStatus.UNREACHABLE}
    ),
    execute=lambda adapters, items: adapters.host_executor().check_hosts(items),
    on={OutcomeBucket.WAITING: Move(HostStatus.UNREACHABLE)},
    whole_set=True,
    follow_ups_on_outcome={
        OutcomeBucket.ERROR: (
            PhaseName.SYNC_SERVICE_DISCOVERY,
            PhaseName.RECONCILE,
            PhaseName.ROLLOUT,
        )
    },
)

task = phase_task(PHASE)

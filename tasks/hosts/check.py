"""hosts.check: a host whose agent has been silent for MODELFLEET_HOST_LOST_AFTER_S is lost.

At once, in this run: its sessions are given up (LOST) and its routes leave
service (no drain wait: nothing on a lost host can be trusted), with a history row
"host X lost (no heartbeat for 10 s)"; the follow-ups publish the traffic set
without them and start their replacements on live hosts. If the host comes back,
its agent stops those sessions before it takes new work.
"""

from tasks.phase import HOSTS, Move, Phase
from tasks.runs import phase_task
from workers.domain import HostStatus, OutcomeBucket
from workers.phase_names import PhaseName

PHASE = Phase(
    name=PhaseName.CHECK_HOSTS,
    kind=HOSTS,
    targets=frozenset({HostStatus.READY, HostStatus.CORDONED, HostStatus.DRAINING}),
    execute=lambda adapters, items: adapters.host_executor().check_hosts(items),
    load_targets=lambda adapters: adapters.phase_store.load_silent_hosts(
        adapters.settings.hosts.lost_after_s
    ),
    on={OutcomeBucket.ERROR: Move(HostStatus.LOST)},
    explains=False,
    follow_ups={
        OutcomeBucket.ERROR: (
            PhaseName.SYNC_SERVICE_DISCOVERY,
            PhaseName.RECONCILE,
            PhaseName.ROLLOUT,
        )
    },
)

task = phase_task(PHASE)

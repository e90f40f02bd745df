"""Every Redis key modelfleet reads or writes, with its lifetime.

The health and service-discovery layouts are the app proxy's and Backend.AI's
wire format, so the default prefix is empty; a non-empty prefix (tests, or
several installations sharing one Redis) is put in front of every key.
"""

from __future__ import annotations

from dataclasses import dataclass
from uuid import UUID

HEALTH_TTL_S = 120  # a route's health hash expires unless the prober refreshes it
HEALTH_STALE_AFTER_S = 300  # readiness older than this (by the Redis clock) is STALE
METRICS_TTL_S = 60  # a collector that stops writing leaves no metric behind for long
REQUEST_WINDOW_S = 10  # the proxies count requests in windows this long
REQUEST_WINDOWS_KEPT_S = 3600  # and keep each this long (a canary step is judged that far back)
HELD_KEPT_S = 3  # a process's held count outlives its announcements (every second) this long
LOAD_KEPT_S = 900  # the proxies' load per second is kept this long (the longest stable window)
CHANGES_KEPT = 10_000  # entries a change feed (stream) keeps, approximately
OUTCOMES_KEPT_AFTER_CLOSE_S = 120  # a closed run's outcomes stay this long, for `phase run`
WORKER_ALIVE_TTL_S = 6  # a worker process that stops refreshing its key is taken for gone
WORKER_ALIVE_EVERY_S = 2  # how often each worker process refreshes it


@dataclass(frozen=True)
class RedisKeys:
    prefix: str = ""

    def route_health(self, route_id: UUID | str) -> str:
        """Hash: readiness ("1"/"0"), last_readiness (unix s), created_at (unix s)."""
        return f"{self.prefix}route:health:{route_id}"

    @property
    def route_health_changes(self) -> str:
        """Stream, beside the health hashes: entries {"routes": "id,id,..."} a writer adds
        when routes' readiness changed. Optional for writers: the hashes stay the contract,
        and a writer that adds nothing here is acted on at `routes.health_check`'s pace."""
        return f"{self.prefix}route:health:changes"

    @property
    def route_health_changes_cursor(self) -> str:
        """String: the id of the last change-feed entry the controller took."""
        return f"{self.prefix}modelfleet:health-changes-cursor"

    @property
    def wakes(self) -> str:
        """Stream: entries {"deployments": "id,id"} a proxy adds while it holds requests for
        deployments at zero; beat's watcher starts `deployments.wake` at once."""
        return f"{self.prefix}modelfleet:wakes"

    @property
    def wakes_cursor(self) -> str:
        """String: the id of the last wake entry the controller took."""
        return f"{self.prefix}modelfleet:wakes-cursor"

    @property
    def endpoint_modes(self) -> str:
        """Hash: deployment id -> what a proxy does with a request it has no replica for
        (`EndpointMode`: "wakes" holds it and announces a wake, "operator-zero" answers 503
        at once), and `generation`; replaced whole by each service-discovery sync."""
        return f"{self.prefix}modelfleet:endpoint-modes"

    def scrape_target(self, route_id: UUID | str) -> str:
        """Hash: name, host, port, metrics_path, labels (JSON object)."""
        return f"{self.prefix}service_discovery.model-services.{route_id}"

    @property
    def scrape_target_index(self) -> str:
        """Set of the route ids whose scrape target hash was last published."""
        return f"{self.prefix}service_discovery.model-services"

    @property
    def scrape_target_generation(self) -> str:
        """String: the generation of the last sync (`workers.contracts.service_discovery`);
        only a set so stamped, newer than what a proxy applied, withdraws routes."""
        return f"{self.prefix}service_discovery.generation"

    @property
    def scrape_target_changes(self) -> str:
        """Stream, beside the scrape targets: entries {"routes": "id,id"} a sync adds for the
        routes it added, changed or removed (the proxy reloads only those)."""
        return f"{self.prefix}service_discovery.changes"

    @property
    def host_heartbeats(self) -> str:
        """Hash: host name -> Redis time (unix s) its agent last said it lives; the proxy
        sends no new request to a replica on a host silent for two heartbeats."""
        return f"{self.prefix}modelfleet:host-heartbeats"

    @property
    def prober_heartbeats(self) -> str:
        """Hash: prober name -> Redis time (unix s) it last finished a pass (`modelfleet status`
        shows a silent one)."""
        return f"{self.prefix}modelfleet:prober-heartbeats"

    @property
    def host_probes_passed(self) -> str:
        """Hash: host name -> Redis time a probe of one of its replicas last passed."""
        return f"{self.prefix}modelfleet:host-probes-passed"

    @property
    def host_probes_unreached(self) -> str:
        """Hash: host name -> JSON {"at", "detail"}: when a probe of one of its replicas last
        got no answer at all (not even a refusal), and what it saw."""
        return f"{self.prefix}modelfleet:host-probes-unreached"

    @property
    def proxy_endpoints(self) -> str:
        """Hash: endpoint id -> registration (JSON), what the proxy's registration API was told
        (every proxy process reads it: an endpoint not in it is unknown, 404)."""
        return f"{self.prefix}modelfleet:proxy-endpoints"

    def request_window(self, endpoint_id: UUID | str, window_s: int) -> str:
        """Hash: what the proxies counted of one endpoint in the 10 s window starting at
        `window_s` (unix s): `{revision}|{class}` -> requests, `{revision}|le|{bound}` ->
        requests answered within `bound` s, `{revision}|sum_ms` -> milliseconds in all
        (expires after an hour)."""
        return f"{self.prefix}modelfleet:requests:{endpoint_id}:{window_s}"

    def held(self, endpoint_id: UUID | str) -> str:
        """Hash: proxy process -> requests it holds for a deployment at zero, written with
        each wake it announces (expires after HELD_KEPT_S: a wake's count, not a record)."""
        return f"{self.prefix}modelfleet:held:{endpoint_id}"

    def load_second(self, second: int) -> str:
        """Hash: the proxies' load in one second (unix s): `{endpoint}|busy` -> requests in
        flight integrated over it (s), `{endpoint}|started` -> requests that arrived in it
        (expires after LOAD_KEPT_S)."""
        return f"{self.prefix}modelfleet:load:{second}"

    @property
    def last_requests(self) -> str:
        """Sorted set: endpoint id scored by the unix s the proxies last saw a request for
        it (each proxy's clock; a score only moves forward)."""
        return f"{self.prefix}modelfleet:last-request"

    def deployment_metrics(self, deployment_id: UUID | str) -> str:
        """Hash: metric name -> number, exported by the model servers of one deployment."""
        return f"{self.prefix}autoscaling:metrics:deployment:{deployment_id}"

    def session_metrics(self, session_id: UUID | str) -> str:
        """Hash: metric name -> number, resource usage of one session."""
        return f"{self.prefix}autoscaling:metrics:session:{session_id}"

    def phase_lock(self, phase: str) -> str:
        """String: the token of the run holding a phase (TTL = the run's deadline)."""
        return f"{self.prefix}modelfleet:phase-lock:{phase}"

    def phase_tick(self, phase: str) -> str:
        """String: set, for half an interval, by the tick that started a run of the phase;
        a tick that finds it is a backlog's, and does nothing."""
        return f"{self.prefix}modelfleet:phase-tick:{phase}"

    def phase_rerun(self, phase: str) -> str:
        """String: set when a run was asked for while one held the lock (TTL = a deadline)."""
        return f"{self.prefix}modelfleet:phase-rerun:{phase}"

    def phase_claims(self, run_id: UUID | str) -> str:
        """Hash: header task id -> the worker process running it (deleted when it ends)."""
        return f"{self.prefix}modelfleet:phase-run:{run_id}:claims"

    def phase_progress(self, run_id: UUID | str) -> str:
        """String: Redis time (unix s) a header task of the run last started or ended."""
        return f"{self.prefix}modelfleet:phase-run:{run_id}:progress"

    def worker_alive(self, worker_id: str) -> str:
        """String: present while the worker process `host:pid` is alive (short TTL)."""
        return f"{self.prefix}modelfleet:worker-alive:{worker_id}"

    def controller_metric(self, family: str) -> str:
        """Hash: label values joined by a unit separator -> number, for one metric family
        of the controller's own metrics (no TTL: counters live as long as Redis does)."""
        return f"{self.prefix}modelfleet:metrics:{family}"

    def phase_outcomes(self, run_id: UUID | str) -> str:
        """Hash: header task id -> its outcomes, a line each ("<item id in hex> <bucket
        name or JSON record>"), written by the run's header tasks."""
        return f"{self.prefix}modelfleet:phase-run:{run_id}:outcomes"

"""The standalone components: what a user without Backend.AI runs in production beside
the controller.

- `runner`: the host agent on each machine (starts the sessions placed on it),
- `prober`: the health checker (readiness into Redis),
- `collector`: the metrics pipeline (model servers' metrics into Redis),
- `proxy`: the request path (app-proxy registration API, forwarding to replicas).

Each is its own process and talks to the controller only through the contracts a
Backend.AI component would use: the `sessions` table, the Redis health, metrics and
service-discovery keys, the app-proxy HTTP API. They import the controller's
adapters for those contracts, never the dev tooling.
"""

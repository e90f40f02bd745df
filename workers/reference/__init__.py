"""Reference implementations of the world around the controller, for `modelfleet dev`.

Each is its own process and talks to modelfleet only through the contracts a
production replacement would use: the `sessions` table (runner), the Redis
health keys (prober), the Redis metrics keys (collector) and the app-proxy
HTTP API (proxy). The sample model server is what the demo deployment runs.
"""

"""The modelfleet proxy: `modelfleet proxy`, the request path in front of the replicas.

It speaks the app-proxy v2 registration API the controller calls (so Backend.AI's
app proxy stays a drop-in alternative) and forwards `/e/{endpoint}/...` to the
endpoint's published replicas:

- `routing`: the routing table in memory (no Redis read per request), spread by
  each replica's weight (smooth weighted round robin);
- `feed`: keeps the table current from the service-discovery change feed, with a
  full read every few seconds as the safety net, and knows which hosts went silent;
- `counting`: every request counted (per endpoint, revision, status class,
  latency) on `/metrics` and in 10 s windows in Redis, which the controller reads;
- `forwarding`: the HTTP handlers: registration, forwarding with one retry on
  another host, streamed answers, the body limit;
- `server`: one or several processes on one port (SO_REUSEPORT).
"""

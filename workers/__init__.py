"""modelfleet's worker code: domain, ports, executors and (later) adapters and the Celery app."""

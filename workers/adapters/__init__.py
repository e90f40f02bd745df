"""Real implementations of `workers.ports`: PostgreSQL, Redis and the app proxy over HTTP."""

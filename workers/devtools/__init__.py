"""Development tooling: `modelfleet dev` (the whole system on one machine), the sample
model server, throwaway PostgreSQL and Redis from PyPI wheels, child processes as an
operator starts them, and the load loop that proves "no request failed".

Nothing in the controller or the standalone components imports it.
"""

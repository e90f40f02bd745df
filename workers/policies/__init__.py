"""The controller's decisions, pure: given what it sees, what to do. No I/O, no clock.

The executors and the proxy call these; each is tested alone, as a table.
"""

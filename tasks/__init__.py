"""Celery tasks, one module per phase (arrives with the orchestration work; empty so far)."""

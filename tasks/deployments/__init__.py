"""Deployment phases: register endpoints, scale, reconcile, destroy."""

"""Housekeeping of phase runs themselves."""

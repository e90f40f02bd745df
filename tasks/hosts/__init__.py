"""Host phases: declare silent hosts lost, move replicas off draining ones."""

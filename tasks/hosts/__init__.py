"""Host phases: declare silent hosts lost, move replicas off draining ones, move one
replica at a time to make room or restore spread."""

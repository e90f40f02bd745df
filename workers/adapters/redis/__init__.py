"""Redis: the health store and service discovery (the app proxy's and Backend.AI's wire
format), autoscaling metrics, the controller's counters, phase locks and outcomes.
Every key is named in `keys`."""

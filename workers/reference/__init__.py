"""Kept for commands written before the split: `python -m workers.reference.model_server`
(the sample model, now `workers.devtools.model_server`) still runs, so do deployments
that stored that command."""

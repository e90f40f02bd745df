"""`python -m workers.reference.model_server`: the sample model server, now
`workers.devtools.model_server` (kept so stored commands and old scripts still work)."""

import runpy

runpy.run_module("workers.devtools.model_server", run_name="__main__", alter_sys=True)

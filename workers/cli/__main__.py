"""`python -m workers.cli ...`: kept for scripts written before the controller's CLI and the
other parts were separated; runs the whole `modelfleet` program."""

import runpy

runpy.run_module("workers", run_name="__main__", alter_sys=True)

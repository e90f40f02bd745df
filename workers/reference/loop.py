"""The loop every reference daemon runs: a pass, a pause, and a failed pass is logged, not fatal."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

log = logging.getLogger(__name__)


def repeat(name: str, one_pass: Callable[[], object], interval_s: float) -> None:
    """Run `one_pass` every `interval_s` until interrupted."""
    log.info("%s: started", name)
    while True:
        try:
            one_pass()
        except Exception:
            log.exception("%s: pass failed; trying again", name)
        time.sleep(interval_s)

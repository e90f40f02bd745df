"""The loop every reference daemon runs: a pass, a pause; a failed pass is logged, not fatal.

A store that is down (`InfrastructureUnavailable`: PostgreSQL or Redis) is an
outage, not a bug: one line when it starts, one when it ends, and passes back
off meanwhile (doubling up to `MAX_BACKOFF_S`) instead of a traceback per pass.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from workers.errors import InfrastructureUnavailable

log = logging.getLogger(__name__)

MAX_BACKOFF_S = 10.0


def repeat(
    name: str,
    one_pass: Callable[[], object],
    interval_s: float,
    *,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> None:
    """Run `one_pass` every `interval_s` until interrupted."""
    log.info("%s: started", name)
    failures, down_since = 0, 0.0
    while True:
        try:
            one_pass()
        except InfrastructureUnavailable as error:
            if failures == 0:
                down_since = clock()
                log.warning("%s: %s; retrying with back-off until it is back", name, error)
            failures += 1
            sleep(min(interval_s * 2**failures, max(MAX_BACKOFF_S, interval_s)))
            continue
        except Exception:
            log.exception("%s: pass failed; trying again", name)
        if failures:
            log.warning(
                "%s: back after %.1fs (%d passes failed)", name, clock() - down_since, failures
            )
            failures = 0
        sleep(interval_s)

"""Rollout specs: the checks that refuse one that cannot work (each names its option),
and the arithmetic of surge and unavailable (pure)."""

from __future__ import annotations

import math
import re

from workers.domain import RolloutSpec

_PERCENT = re.compile(r"(\d{1,3})%")
_COUNT = re.compile(r"\d{1,6}")


class SpecError(ValueError):
    """A rollout spec that cannot work (the message names the field)."""


def surge_and_unavailable(spec: RolloutSpec, desired: int) -> tuple[int, int]:
    """Max surge rounded up and max unavailable rounded down, as counts of routes."""
    surge = _amount(spec.max_surge, desired, math.ceil, "--max-surge")
    unavailable = _amount(spec.max_unavailable, desired, math.floor, "--max-unavailable")
    if surge == 0 and unavailable == 0:
        raise SpecError("--max-surge and --max-unavailable: both are 0; nothing could move")
    return surge, unavailable


def check_spec(spec: RolloutSpec) -> None:
    """Refuse a spec that cannot work, whatever the replica count."""
    surge_and_unavailable(spec, 100)
    if spec.failure_threshold < 1:
        raise SpecError("--failure-threshold: must be at least 1")
    if not 0 < spec.progress_deadline_s <= 86_400:
        raise SpecError("--progress-deadline-s: must be in (0, 86400]")
    if not 0 <= spec.promote_delay_s <= 86_400:
        raise SpecError("--promote-delay-s: must be in [0, 86400]")
    _check_analysis(spec)
    steps = spec.canary_steps
    if not steps or any(not 1 <= s <= 99 for s in steps) or list(steps) != sorted(set(steps)):
        raise SpecError("--canary-steps: percentages of traffic, ascending, each 1-99 (10,50)")
    if not 0 < spec.canary_interval_s <= 86_400:
        raise SpecError("--canary-interval-s: must be in (0, 86400]")


def _check_analysis(spec: RolloutSpec) -> None:
    if not 0 <= spec.max_error_rate <= 1:
        raise SpecError("--max-error-rate: a fraction of requests, in [0, 1]")
    if spec.min_requests < 1:
        raise SpecError("--min-requests: must be at least 1")
    ratio = spec.max_p95_latency_ratio
    if ratio is not None and not 1 <= ratio <= 1000:
        raise SpecError("--max-p95-latency-ratio: must be in [1, 1000]")


def parse_steps(text: str) -> tuple[int, ...]:
    """'10,50' -> (10, 50); anything else is a SpecError naming --canary-steps."""
    try:
        return tuple(int(part) for part in text.split(","))
    except ValueError:
        raise SpecError(f"--canary-steps: {text!r} is not percentages like 10,50") from None


def _amount(text: str, desired: int, rounding: object, option: str) -> int:
    text = text.strip()
    if (match := _PERCENT.fullmatch(text)) is not None:
        percent = int(match.group(1))
        if percent > 100:
            raise SpecError(f"{option}: {text!r} is over 100%")
        return int(rounding(desired * percent / 100))  # type: ignore[operator]
    if _COUNT.fullmatch(text) is not None:
        return int(text)
    raise SpecError(f"{option}: {text!r} is neither a count nor a percentage like 25%")

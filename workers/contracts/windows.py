"""The proxies' request counts in 10 s windows: one Redis hash per endpoint and window,
added to by every proxy process (HINCRBY), read by the controller (a rollout's judgment).

Fields, per revision ("" when a route has none):
- `{revision}|{class}`: requests by class (`2xx` ... `5xx`, or `error`: no answer);
- `{revision}|le|{bound}`: requests answered within `bound` seconds;
- `{revision}|sum_ms`: milliseconds spent in all.
"""

from __future__ import annotations

from dataclasses import dataclass

SEPARATOR = "|"
ERROR = "error"  # no answer at all: refused, reset, timed out
CODE_CLASSES = frozenset({"2xx", "3xx", "4xx", "5xx", ERROR})
FAILED_CLASSES = frozenset({"5xx", ERROR})
WITHIN = "le"
SUM_MS = "sum_ms"


def code_class(status: int | None) -> str:
    return ERROR if status is None else f"{status // 100}xx"


def class_field(revision: str, klass: str) -> str:
    return f"{revision}{SEPARATOR}{klass}"


def within_field(revision: str, bound: str) -> str:
    return f"{revision}{SEPARATOR}{WITHIN}{SEPARATOR}{bound}"


def sum_field(revision: str) -> str:
    return f"{revision}{SEPARATOR}{SUM_MS}"


@dataclass(frozen=True)
class WindowField:
    revision: int
    klass: str | None = None  # a code class: requests so answered
    within_s: float | None = None  # a bucket bound: requests answered within it


def parse_field(name: str) -> WindowField | None:
    """What a field counts; None for one without a revision, or not one of these."""
    parts = name.split(SEPARATOR)
    if not parts[0].isdigit():
        return None
    revision = int(parts[0])
    if len(parts) == 2 and parts[1] in CODE_CLASSES:
        return WindowField(revision, klass=parts[1])
    if len(parts) == 3 and parts[1] == WITHIN:
        try:
            return WindowField(revision, within_s=float(parts[2]))
        except ValueError:
            return None
    return None

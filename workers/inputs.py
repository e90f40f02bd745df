"""What an operator may type: the rules every entry point checks before writing.

Pure functions: each returns None when the value is allowed, else a short
sentence saying what is allowed (never quoting a secret).
"""

from __future__ import annotations

import math
import re
import uuid
from urllib.parse import urlsplit

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_DNS_LABEL = re.compile(r"[a-z]([-a-z0-9]{0,61}[a-z0-9])?")
NAME_RULE = (
    "a DNS-1123 label: 1-63 lower-case letters, digits or '-', starting with a letter "
    "and ending with a letter or digit, not shaped like a UUID"
)


def name_problem(name: str) -> str | None:
    """A deployment or scaling-group name: a DNS-1123 label that is not UUID-shaped
    (an id always wins over a name, so such a name could never be looked up)."""
    if _DNS_LABEL.fullmatch(name) is None or is_uuid_shaped(name):
        return f"must be {NAME_RULE}"
    return None


HOST_NAME_RULE = "1-253 lower-case letters, digits, '-' or '.', starting and ending alphanumeric"
_HOST_NAME = re.compile(r"[a-z0-9]([a-z0-9.-]{0,251}[a-z0-9])?")


def host_name_problem(name: str) -> str | None:
    """A host's name (what its agent registers it as): a DNS-1123 subdomain."""
    if _HOST_NAME.fullmatch(name) is None:
        return f"must be {HOST_NAME_RULE}"
    return None


def token_problem(token: str) -> str | None:
    """An API token: non-empty, no whitespace, no control characters."""
    if not token:
        return "must not be empty"
    if any(c.isspace() for c in token) or _CONTROL.search(token):
        return "must not contain whitespace or control characters"
    return None


def http_url_problem(url: str) -> str | None:
    """A base URL to call: http(s), a host, a port in range if any, no spaces."""
    parts = urlsplit(url)
    if parts.scheme not in {"http", "https"} or not parts.hostname:
        return f"{url!r} is not an http(s) URL with a host"
    if any(c.isspace() for c in url) or _CONTROL.search(url):
        return f"{url!r} has spaces or control characters"
    try:
        parts.port  # noqa: B018  # raises for a port out of range or not a number
    except ValueError:
        return f"{url!r} has no valid port (1-65535)"
    return None


_METRIC_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,199}")


def metric_name_problem(name: str) -> str | None:
    """A Prometheus metric name: letters, digits, '_' and ':', not starting with a digit."""
    if _METRIC_NAME.fullmatch(name) is None:
        return f"{name!r} is not a metric name (letters, digits, _ and :, up to 200)"
    return None


def number_problem(value: float) -> str | None:
    """Any number an operator gives: finite (no NaN, no infinity)."""
    if not math.isfinite(value):
        return f"must be a finite number, not {value}"
    return None


def is_uuid_shaped(text: str) -> bool:
    try:
        uuid.UUID(text)
    except ValueError:
        return False
    return True

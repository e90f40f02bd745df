"""Settings: every environment variable modelfleet reads, read once into a frozen tree.

`Settings.from_environ()` is called by the composition root and the CLI, never at
import. Each field has a default and a line in the README's configuration table;
`repr` masks passwords in URLs so a logged settings object leaks nothing.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from urllib.parse import urlsplit, urlunsplit


class SettingsError(ValueError):
    """An environment variable holds a value modelfleet cannot use."""


@dataclass(frozen=True)
class AppProxySettings:
    connect_timeout_s: float = 3.0
    read_timeout_s: float = 10.0
    retries: int = 3  # on connection errors and 502/503/504 only
    backoff_s: float = 0.2


@dataclass(frozen=True)
class ServiceDiscoveryHttpSettings:
    host: str = "127.0.0.1"
    port: int = 9091


@dataclass(frozen=True)
class Settings:
    database_url: str = field(
        default="postgresql+psycopg://postgres@127.0.0.1:5432/modelfleet", repr=False
    )
    redis_url: str = field(default="redis://127.0.0.1:6379/0", repr=False)
    redis_key_prefix: str = ""
    app_proxy: AppProxySettings = field(default_factory=AppProxySettings)
    service_discovery_http: ServiceDiscoveryHttpSettings = field(
        default_factory=ServiceDiscoveryHttpSettings
    )

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] = os.environ) -> Settings:
        """Read `MODELFLEET_*` variables; unset ones keep their defaults."""
        reader = _Reader(environ)
        proxy, sd = AppProxySettings(), ServiceDiscoveryHttpSettings()
        return cls(
            database_url=reader.text("MODELFLEET_DATABASE_URL", cls.database_url),
            redis_url=reader.text("MODELFLEET_REDIS_URL", cls.redis_url),
            redis_key_prefix=reader.text("MODELFLEET_REDIS_KEY_PREFIX", cls.redis_key_prefix),
            app_proxy=AppProxySettings(
                connect_timeout_s=reader.number(
                    "MODELFLEET_APP_PROXY_CONNECT_TIMEOUT_S", proxy.connect_timeout_s
                ),
                read_timeout_s=reader.number(
                    "MODELFLEET_APP_PROXY_READ_TIMEOUT_S", proxy.read_timeout_s
                ),
                retries=int(reader.number("MODELFLEET_APP_PROXY_RETRIES", proxy.retries)),
                backoff_s=reader.number("MODELFLEET_APP_PROXY_BACKOFF_S", proxy.backoff_s),
            ),
            service_discovery_http=ServiceDiscoveryHttpSettings(
                host=reader.text("MODELFLEET_SD_HTTP_HOST", sd.host),
                port=int(reader.number("MODELFLEET_SD_HTTP_PORT", sd.port)),
            ),
        )

    def __repr__(self) -> str:
        shown = {f.name: getattr(self, f.name) for f in fields(self) if f.repr}
        shown["database_url"] = masked_url(self.database_url)
        shown["redis_url"] = masked_url(self.redis_url)
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"


def masked_url(url: str) -> str:
    """`url` with its password replaced by ***, fit for logs and errors."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user_info, _, host = parts.netloc.rpartition("@")
        user = user_info.split(":", 1)[0]
        return urlunsplit(parts._replace(netloc=f"{user}:***@{host}"))
    except ValueError:  # not a URL at all: show nothing of it
        return "<unparsable url>"


class _Reader:
    def __init__(self, environ: Mapping[str, str]) -> None:
        self._environ = environ

    def text(self, name: str, default: str) -> str:
        value = self._environ.get(name, "").strip()
        return value or default

    def number(self, name: str, default: float) -> float:
        raw = self._environ.get(name, "").strip()
        if not raw:
            return default
        try:
            value = float(raw)
        except ValueError:
            raise SettingsError(f"{name}: {raw!r} is not a number") from None
        if value < 0:
            raise SettingsError(f"{name}: must be >= 0, got {raw!r}")
        return value

"""Settings: defaults, overrides, one-line errors naming the variable, secrets masked."""

from __future__ import annotations

import pytest

from workers.config import Settings, SettingsError


def test_defaults_without_environment() -> None:
    settings = Settings.from_environ({})
    assert settings.database_url == "postgresql+psycopg://postgres@127.0.0.1:5432/modelfleet"
    assert settings.redis_url == "redis://127.0.0.1:6379/0"
    assert settings.redis_key_prefix == ""
    assert settings.app_proxy.retries == 3
    assert settings.service_discovery_http.port == 9091


def test_every_variable_overrides_its_field() -> None:
    settings = Settings.from_environ(
        {
            "MODELFLEET_DATABASE_URL": "postgresql+psycopg://u@db/x",
            "MODELFLEET_REDIS_URL": "redis://cache:6379/2",
            "MODELFLEET_REDIS_KEY_PREFIX": "staging:",
            "MODELFLEET_APP_PROXY_CONNECT_TIMEOUT_S": "1.5",
            "MODELFLEET_APP_PROXY_READ_TIMEOUT_S": "4",
            "MODELFLEET_APP_PROXY_RETRIES": "0",
            "MODELFLEET_APP_PROXY_BACKOFF_S": "0.5",
            "MODELFLEET_SD_HTTP_HOST": "0.0.0.0",
            "MODELFLEET_SD_HTTP_PORT": "9999",
        }
    )
    assert settings.database_url == "postgresql+psycopg://u@db/x"
    assert settings.redis_url == "redis://cache:6379/2"
    assert settings.redis_key_prefix == "staging:"
    assert (settings.app_proxy.connect_timeout_s, settings.app_proxy.read_timeout_s) == (1.5, 4.0)
    assert (settings.app_proxy.retries, settings.app_proxy.backoff_s) == (0, 0.5)
    assert (settings.service_discovery_http.host, settings.service_discovery_http.port) == (
        "0.0.0.0",
        9999,
    )


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        (
            "MODELFLEET_APP_PROXY_RETRIES",
            "many",
            "MODELFLEET_APP_PROXY_RETRIES: 'many' is not a number",
        ),
        ("MODELFLEET_SD_HTTP_PORT", "-1", "MODELFLEET_SD_HTTP_PORT: must be >= 0, got '-1'"),
    ],
)
def test_bad_values_name_the_variable(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_environ({name: value})
    assert str(error.value) == message


def test_repr_masks_passwords() -> None:
    settings = Settings.from_environ(
        {
            "MODELFLEET_DATABASE_URL": "postgresql+psycopg://app:db-pass@db/x",
            "MODELFLEET_REDIS_URL": "redis://:redis-pass@cache:6379/0",
        }
    )
    shown = repr(settings)
    assert "db-pass" not in shown
    assert "redis-pass" not in shown
    assert "app:***@db" in shown

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
        # 99999 once listened on a random port
        (
            "MODELFLEET_SD_HTTP_PORT",
            "99999",
            "MODELFLEET_SD_HTTP_PORT: must be a port, 1..65535, got 99999",
        ),
        # inf once gave an OverflowError traceback, nan was silently accepted
        (
            "MODELFLEET_APP_PROXY_RETRIES",
            "inf",
            "MODELFLEET_APP_PROXY_RETRIES: must be a finite number, got 'inf'",
        ),
        (
            "MODELFLEET_PHASE_DEADLINE_S",
            "nan",
            "MODELFLEET_PHASE_DEADLINE_S: must be a finite number, got 'nan'",
        ),
        (
            "MODELFLEET_FANOUT_MAX_TASKS",
            "1e400",
            "MODELFLEET_FANOUT_MAX_TASKS: must be a finite number, got '1e400'",
        ),
        # mysql:// once ended in ModuleNotFoundError, notaurl in exit 1 without the name
        (
            "MODELFLEET_DATABASE_URL",
            "mysql://root:pw@db/x",
            "MODELFLEET_DATABASE_URL: scheme 'mysql' is not one of postgresql+psycopg, postgresql",
        ),
        (
            "MODELFLEET_DATABASE_URL",
            "notaurl",
            "MODELFLEET_DATABASE_URL: not a URL; expected postgresql+psycopg://...",
        ),
        (
            "MODELFLEET_BROKER_URL",
            "kafka://broker:9092",
            "MODELFLEET_BROKER_URL: scheme 'kafka' is not one of redis, rediss, unix, "
            "redis+socket, amqp, amqps, pyamqp",
        ),
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


def test_phase_settings_and_interval_overrides() -> None:
    settings = Settings.from_environ(
        {
            "MODELFLEET_BROKER_URL": "redis://:pw@broker:6379/1",
            "MODELFLEET_FANOUT_MAX_TASKS": "16",
            "MODELFLEET_PHASE_DEADLINE_S": "30",
            "MODELFLEET_INTERVAL_ROUTES_HEALTH_CHECK_S": "0.5",
        }
    )
    assert settings.broker_url == "redis://:pw@broker:6379/1"
    assert settings.result_backend == "redis://127.0.0.1:6379/0"
    assert settings.phases.fanout_max_tasks == 16
    assert settings.phases.deadline_s == 30
    assert settings.phases.intervals_s["routes.health_check"] == 0.5
    assert settings.phases.intervals_s["routes.provision"] == 2.0
    assert "pw" not in repr(settings)


@pytest.mark.parametrize(
    ("environ", "message"),
    [
        (
            {"MODELFLEET_INTERVAL_ROUTES_HEALTHCHECK_S": "1"},
            "MODELFLEET_INTERVAL_ROUTES_HEALTHCHECK_S: no such phase; allowed: ",
        ),
        ({"MODELFLEET_INTERVAL_ROUTES_PROVISION_S": "0"}, "must be > 0"),
        ({"MODELFLEET_FANOUT_MAX_TASKS": "0"}, "MODELFLEET_FANOUT_MAX_TASKS: must be >= 1"),
        (
            {"MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S": "10"},
            "MODELFLEET_BROKER_VISIBILITY_TIMEOUT_S: must exceed MODELFLEET_TASK_TIME_LIMIT_S",
        ),
    ],
)
def test_bad_phase_settings_name_the_variable(environ: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_environ(environ)

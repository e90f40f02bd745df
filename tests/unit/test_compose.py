"""compose.yaml runs the commands the README and the e2e tests run, in the right order.

No container engine runs here; `.ci/run` also validates the file with
`docker-compose config` when that tool is installed.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
REFERENCE = ("runner", "prober", "collector", "proxy")


def _services() -> dict[str, Any]:
    document = yaml.safe_load((ROOT / "compose.yaml").read_text())
    services: dict[str, Any] = document["services"]
    return services


def test_every_process_is_a_service_built_from_the_repository_dockerfile() -> None:
    services = _services()
    assert set(services) == {
        "postgres",
        "redis",
        "migrate",
        "worker",
        "beat",
        "flower",
        "service-discovery",
        *REFERENCE,
    }
    assert (ROOT / "Dockerfile").is_file()
    for name in ("migrate", "worker", "beat", "flower", "service-discovery", *REFERENCE):
        assert services[name]["build"] == "."


def test_commands_are_the_documented_ones() -> None:
    services = _services()
    assert services["migrate"]["command"] == ["modelfleet", "db", "upgrade"]
    for name in ("worker", "beat", "flower"):
        assert services[name]["command"][:4] == ["celery", "-A", "workers", name]
    assert services["service-discovery"]["command"][:3] == [
        "modelfleet",
        "service-discovery",
        "serve",
    ]


def test_start_order_waits_for_health_and_for_the_migration() -> None:
    services = _services()
    assert services["migrate"]["depends_on"] == {"postgres": {"condition": "service_healthy"}}
    assert services["migrate"]["restart"] == "no"
    assert services["worker"]["depends_on"]["migrate"] == {
        "condition": "service_completed_successfully"
    }
    assert services["beat"]["depends_on"] == {"worker": {"condition": "service_healthy"}}
    for name in ("postgres", "redis", "worker", "flower", "service-discovery"):
        assert "healthcheck" in services[name], name


def test_the_broker_never_evicts_and_flower_asks_for_a_password() -> None:
    services = _services()
    assert "noeviction" in services["redis"]["command"]
    assert "FLOWER_BASIC_AUTH" in services["flower"]["environment"]


def test_the_reference_world_is_a_profile_of_modelfleet_commands() -> None:
    services = _services()
    for name in REFERENCE:
        assert services[name]["profiles"] == ["reference"]
        assert services[name]["command"][:2] == ["modelfleet", name]

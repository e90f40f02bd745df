"""Executors wired to autospecced ports: a misspelt method or a wrong signature fails."""

from __future__ import annotations

from unittest.mock import MagicMock, create_autospec

import pytest

from workers.executors import DeploymentExecutor, RouteExecutor
from workers.ports import (
    AppProxy,
    AppProxyClient,
    DeploymentRepository,
    HealthStore,
    SchedulingController,
    ServiceDiscovery,
)


def _autospec(port: type) -> MagicMock:
    mock: MagicMock = create_autospec(port, instance=True)
    return mock


@pytest.fixture
def repo() -> MagicMock:
    mock = _autospec(DeploymentRepository)
    mock.fetch_overdue_starts.return_value = {}  # every session started in time
    return mock


@pytest.fixture
def scheduler() -> MagicMock:
    return _autospec(SchedulingController)


@pytest.fixture
def health_store() -> MagicMock:
    return _autospec(HealthStore)


@pytest.fixture
def service_discovery() -> MagicMock:
    return _autospec(ServiceDiscovery)


@pytest.fixture
def proxy_client() -> MagicMock:
    return _autospec(AppProxyClient)


@pytest.fixture
def app_proxy(proxy_client: MagicMock) -> MagicMock:
    proxy = _autospec(AppProxy)
    proxy.client_for.return_value = proxy_client
    return proxy


@pytest.fixture
def route_executor(
    repo: MagicMock, scheduler: MagicMock, health_store: MagicMock, service_discovery: MagicMock
) -> RouteExecutor:
    return RouteExecutor(
        deployment_repo=repo,
        scheduling_controller=scheduler,
        health_store=health_store,
        service_discovery=service_discovery,
    )


@pytest.fixture
def deployment_executor(repo: MagicMock, app_proxy: MagicMock) -> DeploymentExecutor:
    return DeploymentExecutor(deployment_repo=repo, app_proxy=app_proxy)

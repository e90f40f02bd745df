"""The payloads executors send out: app-proxy registrations, session specs, scrape targets."""

from __future__ import annotations

from typing import Any

from workers.contracts.labels import RouteLabels, to_labels
from workers.domain import (
    REVISION_VARIABLE,
    DeploymentContext,
    DeploymentInfo,
    HealthCheckConfig,
    ModelRevision,
    ModelServiceMetadata,
    RouteData,
    RouteDiscoveryData,
    SessionSpec,
)

METRICS_PATH = "/metrics"


def endpoint_registration_body(
    deployment: DeploymentInfo, revision: ModelRevision
) -> dict[str, Any]:
    """The app proxy's `POST /v2/endpoints/{id}` body, in Backend.AI's wire names.

    `existing_url` lets a re-registration keep the URL the endpoint already has.
    """
    return {
        "version": "v2",
        "service_name": deployment.name,
        "tags": {
            "session": {
                "user_uuid": deployment.owner,
                "group_id": deployment.project,
                "domain_name": deployment.domain,
            },
            "endpoint": {
                "id": str(deployment.id),
                "runtime_variant": revision.runtime_variant,
                "existing_url": deployment.url,
            },
        },
        "apps": {},
        "open_to_public": deployment.open_to_public,
        "health_check": _health_check_body(revision.health_check),
    }


def _health_check_body(config: HealthCheckConfig | None) -> dict[str, Any] | None:
    if config is None:
        return None
    return {
        "path": config.path,
        "interval": config.interval_s,
        "max_retries": config.max_retries,
        "max_wait_time": config.timeout_s,
        "expected_status_code": config.expected_status,
        "initial_delay": config.initial_delay_s,
    }


def session_spec(route: RouteData, context: DeploymentContext) -> SessionSpec:
    """What the scheduler starts for `route`; the revision's environment wins over the group's."""
    deployment, revision = context.deployment, context.revision
    return SessionSpec(
        route_id=route.id,
        deployment_id=deployment.id,
        name=f"{deployment.name}-{route.id.hex[:8]}",
        resource_group=deployment.resource_group,
        image=revision.image,
        runtime_variant=revision.runtime_variant,
        model_path=revision.model_path,
        startup_command=revision.startup_command,
        resources=dict(revision.resources),
        environ={**context.environ, **revision.environ, **_revision_variable(context)},
        owner=deployment.owner,
        project=deployment.project,
        domain=deployment.domain,
    )


def _revision_variable(context: DeploymentContext) -> dict[str, str]:
    """Every session learns which revision it runs (the sample model reports it)."""
    if context.revision_number is None:
        return {}
    return {REVISION_VARIABLE: str(context.revision_number)}


def scrape_target(data: RouteDiscoveryData) -> ModelServiceMetadata:
    labels = RouteLabels(
        route_id=data.route_id,
        endpoint_id=data.endpoint_id,
        model_service_name=data.endpoint_name,
        runtime_variant=data.runtime_variant,
        revision=data.revision,
        host=data.host_name,
        traffic_ratio=data.traffic_ratio,
        routing=data.routing,
    )
    return ModelServiceMetadata(
        route_id=data.route_id,
        model_service_name=data.endpoint_name,
        host=data.host,
        port=data.port,
        metrics_path=METRICS_PATH,
        labels=to_labels(labels),
    )

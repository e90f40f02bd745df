"""The composition root builds working adapters from settings alone."""

from __future__ import annotations

from uuid import uuid4

import sqlalchemy as sa

from workers.adapters.redis.keys import RedisKeys
from workers.composition import build_adapters
from workers.config import Settings
from workers.domain import DeploymentLifecycle, EntityKind


def test_adapters_built_from_settings_reach_the_real_stores(
    engine: sa.Engine, redis_url: str, redis_keys: RedisKeys
) -> None:
    settings = Settings(
        database_url=engine.url.render_as_string(hide_password=False),
        redis_url=redis_url,
        redis_key_prefix=redis_keys.prefix,
    )
    adapters = build_adapters(settings)
    try:
        route_id = str(uuid4())
        adapters.health_store.update_readiness({route_id: True})
        assert route_id in adapters.health_store.check_route_health_status([route_id])
        assert adapters.route_executor().check_route_health([]).successes == []
        assert adapters.phase_store.load(EntityKind.DEPLOYMENT, {DeploymentLifecycle.READY}) == []
        assert adapters.deployment_executor().check_pending_deployments([]).successes == []
    finally:
        adapters.close()

"""Sample model servers on 127.0.0.1 for the tests of the standalone components and the
sample model itself (the `sample_server` fixture, registered by the integration conftest)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from uuid import uuid4

import pytest
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.schema import routes, sessions
from workers.devtools.model_server import ModelState, make_server
from workers.domain import DeploymentInfo, RouteData, SessionId


class SampleServer:
    def __init__(self, name: str) -> None:
        self.state = ModelState(name)
        self._server = make_server("127.0.0.1", 0, self.state)
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()


@pytest.fixture
def sample_server() -> Iterator[Callable[[str], SampleServer]]:
    started: list[SampleServer] = []

    def start(name: str = "echo") -> SampleServer:
        started.append(server := SampleServer(name))
        return server

    yield start
    for server in started:
        server.stop()


def run_route_on(
    engine: sa.Engine, catalog: Catalog, deployment: DeploymentInfo, route: RouteData, port: int
) -> SessionId:
    """Store `route` with a RUNNING session on 127.0.0.1:`port`, started a second ago."""
    catalog.add_routes([route])
    session_id = SessionId(uuid4())
    with engine.begin() as conn:
        conn.execute(
            sessions.insert().values(
                id=session_id,
                route_id=route.id,
                name=f"session-of-{deployment.name}",
                spec={},
                status="RUNNING",
                host="127.0.0.1",
                port=port,
                started_at=datetime.now(UTC) - timedelta(seconds=1),
            )
        )
        conn.execute(routes.update().where(routes.c.id == route.id).values(session_id=session_id))
    return session_id

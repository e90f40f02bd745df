"""The schema exists only through Alembic, and `modelfleet db upgrade` applies it."""

from __future__ import annotations

import uuid
from collections.abc import Callable

import pytest
import sqlalchemy as sa
from alembic import command
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext
from click.testing import CliRunner
from sqlalchemy.dialects.postgresql import insert

from workers.adapters.postgres.migrate import (
    alembic_config,
    current_revision,
    head_revision,
    upgrade_to_head,
)
from workers.adapters.postgres.schema import metadata, routes, scaling_groups, sessions
from workers.program import main


def test_fresh_database_reaches_head_and_matches_the_metadata(
    create_database: Callable[[], str],
) -> None:
    engine = sa.create_engine(create_database())
    try:
        assert current_revision(engine) is None
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(
                MigrationContext.configure(conn, opts={"compare_type": True}), metadata
            )
        assert diff == []
    finally:
        engine.dispose()


def test_upgrading_an_up_to_date_database_changes_nothing(migrated_engine: sa.Engine) -> None:
    upgrade_to_head(migrated_engine)
    assert current_revision(migrated_engine) == head_revision()


def test_one_live_session_per_route_is_enforced_by_the_schema(engine: sa.Engine) -> None:
    with engine.begin() as conn:
        conn.execute(scaling_groups.insert().values(name="rg"))
        conn.execute(
            sa.text(
                "INSERT INTO deployments (id, name, resource_group, replica_count)"
                " VALUES (:id, 'd', 'rg', 1)"
            ),
            {"id": (deployment_id := uuid.uuid4())},
        )
        conn.execute(
            routes.insert().values(id=(route_id := uuid.uuid4()), deployment_id=deployment_id)
        )
        row = {"route_id": route_id, "name": "s", "spec": {}}
        conn.execute(sessions.insert().values(id=uuid.uuid4(), status="TERMINATED", **row))
        conn.execute(sessions.insert().values(id=uuid.uuid4(), status="RUNNING", **row))
    with (
        pytest.raises(sa.exc.IntegrityError, match="uq_sessions_route_id_live"),
        engine.begin() as conn,
    ):
        conn.execute(insert(sessions).values(id=uuid.uuid4(), status="PENDING", **row))


def test_cli_db_upgrade_migrates_a_fresh_database_and_is_repeatable(
    create_database: Callable[[], str],
) -> None:
    url = create_database()
    runner = CliRunner()
    first = runner.invoke(main, ["db", "upgrade"], env={"MODELFLEET_DATABASE_URL": url})
    second = runner.invoke(main, ["db", "upgrade"], env={"MODELFLEET_DATABASE_URL": url})
    assert first.exit_code == 0, first.output
    assert second.exit_code == 0, second.output
    assert f"at revision {head_revision()}" in second.output
    engine = sa.create_engine(url)
    try:
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()


def test_cli_db_upgrade_against_an_unreachable_server_fails_in_one_line() -> None:
    url = "postgresql+psycopg://postgres:secret@127.0.0.1:1/nowhere"
    result = CliRunner().invoke(main, ["db", "upgrade"], env={"MODELFLEET_DATABASE_URL": url})
    assert result.exit_code == 1
    assert result.output.startswith("Error: db upgrade failed: database unavailable:")
    assert result.output.count("\n") == 1
    assert "secret" not in result.output


def test_cli_rejects_a_bad_setting_naming_the_variable() -> None:
    result = CliRunner().invoke(
        main, ["db", "upgrade"], env={"MODELFLEET_APP_PROXY_READ_TIMEOUT_S": "soon"}
    )
    assert result.exit_code == 2
    assert "MODELFLEET_APP_PROXY_READ_TIMEOUT_S: 'soon' is not a number" in result.output


def test_downgrade_to_base_and_back(create_database: Callable[[], str]) -> None:
    engine = sa.create_engine(create_database())
    try:
        upgrade_to_head(engine)
        with engine.begin() as conn:
            config = alembic_config(engine)
            config.attributes["connection"] = conn
            command.downgrade(config, "base")
        assert sa.inspect(engine).get_table_names() == ["alembic_version"]
        upgrade_to_head(engine)
        assert current_revision(engine) == head_revision()
    finally:
        engine.dispose()

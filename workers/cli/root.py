"""The `modelfleet` group, its shared context, and how errors reach the operator.

Bad input exits 2 with one line naming the field (and the allowed values);
a store that cannot be reached exits 1 with one line saying which.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any, NoReturn
from uuid import UUID

import click
import redis
import sqlalchemy as sa

from workers.adapters.postgres.catalog import Catalog
from workers.adapters.postgres.engine import create_database_engine
from workers.adapters.postgres.phase_store import PostgresPhaseStore
from workers.adapters.postgres.reports import Reports
from workers.adapters.redis.client import create_redis_client
from workers.adapters.redis.keys import RedisKeys
from workers.config import LOG_LEVELS, Settings, SettingsError
from workers.errors import InfrastructureUnavailable

log = logging.getLogger("workers.cli")

UNDEFINED_TABLE = "42P01"  # PostgreSQL's SQLSTATE for a table that does not exist


def one_line(message: str) -> str:
    """Errors reach the operator as a single line (drivers' messages span several)."""
    return " ".join(message.split())


class OneLineErrors(click.Group):
    """A group whose usage errors print one `Error: ...` line, not the usage block."""

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        standalone = standalone_mode
        try:
            return super().main(args, prog_name, complete_var, standalone_mode=False, **extra)
        except click.exceptions.NoArgsIsHelpError as error:  # a group alone: its help, as is
            if not standalone:
                raise
            click.echo(error.format_message())
            sys.exit(0)
        except click.ClickException as error:
            if not standalone:
                raise
            click.echo(f"Error: {one_line(error.format_message())}", err=True)
            sys.exit(error.exit_code)
        except click.Abort:
            if not standalone:
                raise
            click.echo("Aborted!", err=True)
            sys.exit(1)


class CliContext:
    """Settings, and the one engine a command uses (made on first use, closed at exit)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = create_database_engine(self.settings.database_url, pool_size=1)
        return self._engine

    @property
    def catalog(self) -> Catalog:
        return Catalog(engine=self.engine)

    @property
    def reports(self) -> Reports:
        return Reports(engine=self.engine)

    @property
    def phase_store(self) -> PostgresPhaseStore:
        return PostgresPhaseStore(engine=self.engine)

    @contextmanager
    def redis(self) -> Iterator[tuple[redis.Redis, RedisKeys]]:
        """A Redis client for one read, and this deployment's key names."""
        client = create_redis_client(self.settings.redis_url)
        try:
            yield client, RedisKeys(self.settings.redis_key_prefix)
        finally:
            client.close()

    def close(self) -> None:
        if self._engine is not None:
            self._engine.dispose()


def log_level_option(command: Any) -> Any:
    """--log-level for a long-running process: what it logs (MODELFLEET_LOG_LEVEL, INFO by
    default, a line per notable event); the short commands stay at WARNING."""

    def configure(ctx: click.Context, _: click.Parameter, level: str | None) -> str:
        context = ctx.find_object(CliContext)
        chosen = (level or (context.settings.log_level if context else "INFO")).upper()
        logging.getLogger().setLevel(chosen)
        return chosen

    return click.option(
        "--log-level",
        type=click.Choice(LOG_LEVELS, case_sensitive=False),
        callback=configure,
        expose_value=False,
        help="What to log [MODELFLEET_LOG_LEVEL, default INFO].",
    )(command)


def bad_input(field: str, message: str) -> NoReturn:
    raise click.UsageError(f"{field}: {message}")


def find_deployment(cli: CliContext, ref: str, field: str = "DEPLOYMENT") -> dict[str, Any]:
    """The deployment named (or with the id) `ref`; bad input naming `field` if there is none."""
    found = cli.reports.find_deployment(ref)
    if found is None:
        bad_input(field, f"no deployment named or with id {ref!r}")
    return found


def deployment_filter(cli: CliContext, ref: str | None) -> UUID | None:
    """The id a `--deployment` option names, or None when it was not given."""
    return None if ref is None else find_deployment(cli, ref, "--deployment")["id"]


@contextmanager
def reported_failures(what: str) -> Iterator[None]:
    """A dead store or a driver error becomes one line and exit 1; the traceback goes to debug."""
    try:
        yield
    except click.ClickException:
        raise
    except sa.exc.ProgrammingError as error:
        if getattr(error.orig, "sqlstate", None) != UNDEFINED_TABLE:
            raise click.ClickException(one_line(f"{what} failed: {error.orig}")) from None
        log.debug("%s failed", what, exc_info=True)
        raise click.ClickException(
            f"{what} failed: the database has no modelfleet tables; run `modelfleet db upgrade`"
        ) from None
    except (InfrastructureUnavailable, sa.exc.SQLAlchemyError, OSError) as error:
        log.debug("%s failed", what, exc_info=True)
        raise click.ClickException(one_line(f"{what} failed: {error}")) from None


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="modelfleet", prog_name="modelfleet")
@click.pass_context
def main(ctx: click.Context) -> None:
    """modelfleet: keep model-serving deployments at the right number of healthy replicas."""
    logging.basicConfig(
        level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        context = CliContext(Settings.from_environ())
    except SettingsError as error:
        raise click.UsageError(str(error)) from None
    ctx.obj = context
    ctx.call_on_close(context.close)

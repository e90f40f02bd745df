"""Tables for people (rich), JSON for scripts (`--json`)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")


def _plain(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat(timespec="seconds")
    return (
        value
        if isinstance(value, int | float | bool | str | list | dict) or value is None
        else str(value)
    )


def emit_json(document: Any) -> None:
    click.echo(json.dumps(document, default=_plain, indent=2, sort_keys=True))


def emit_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    table = Table(title=title, title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*("" if row.get(c) is None else str(_plain(row.get(c))) for c in columns))
    Console(width=200).print(table)


def emit(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool
) -> None:
    if as_json:
        emit_json(list(rows))
    else:
        emit_table(title, rows, columns)

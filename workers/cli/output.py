"""Tables for people (rich), JSON for scripts (`--json`)."""

from __future__ import annotations

import json
import re
from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import click
from rich.console import Console
from rich.table import Table
from rich.text import Text

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


def done(message: str, document: Mapping[str, Any], *, as_json: bool) -> None:
    """What a write command did: one line for a person, or JSON carrying the ids."""
    if as_json:
        emit_json(dict(document))
    else:
        click.echo(message)


def emit_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    table = Table(title=as_text(title), title_justify="left")
    for column in columns:
        table.add_column(column)
    for row in rows:
        table.add_row(*(as_text(row.get(c)) for c in columns))
    Console(width=200).print(table)


def as_text(value: Any) -> Text:
    """A value as plain text for rich: never read as markup, control characters shown escaped."""
    if value is None:
        return Text("")
    return Text(_CONTROL.sub(_escaped, str(_plain(value))))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]


def emit(
    title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str], *, as_json: bool
) -> None:
    if as_json:
        emit_json(list(rows))
    else:
        emit_table(title, rows, columns)

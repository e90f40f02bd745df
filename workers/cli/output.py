"""Tables for people (rich), JSON for scripts (`--json`).

Tables fit the terminal (its width, else $COLUMNS, else 80). Ids, URLs, names and
times are never cut: a table that cannot show them whole at this width is printed
as records instead, one `field: value` line each. Commands show the columns that
answer the usual question; `--wide` adds the rest.
"""

from __future__ import annotations

import io
import json
import re
import textwrap
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from typing import Any

import click
from rich import box
from rich.console import Console
from rich.table import Table
from rich.text import Text

json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead.")
wide_option = click.option("--wide", is_flag=True, help="Show every column.")

# Shorter headers for long field names (JSON keeps the field names).
HEADERS = {
    "current_revision": "revision",
    "desired_replica_count": "desired",
    "replica_count": "replicas",
    "duration_s": "secs",
    "item_count": "items",
    "transition_count": "moves",
    "session_status": "session",
    "status_changed_at": "since",
    "health_age_s": "age_s",
}
# Inside free text (reasons, messages): URLs and ids, which must not be split either.
_UNBREAKABLE = re.compile(r"\S+://\S+|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
_WHOLE = {"id", "name", "deployment", "phase", "image", "url", "host"}


def is_whole(column: str) -> bool:
    """Values a person copies or compares: never cut or wrapped."""
    return column in _WHOLE or column.endswith(("_id", "_at", "_url", "_addr"))


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


def emit(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    as_json: bool,
    wide: Sequence[str] | None = None,
) -> None:
    """Rows as JSON, or as a table of `columns` (plus the `wide` ones when given)."""
    if as_json:
        emit_json(list(rows))
    else:
        emit_table(title, rows, [*columns, *(wide or ())])


def emit_table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> None:
    console = Console(highlight=False)
    if not rows:
        click.echo(f"{cell_text(title)}: (none)")
        return
    table = _table(title, rows, columns)
    if _shows_whole(table, console.width, rows, columns):
        console.print(table)
        console.line()
    else:
        emit_records(title, rows, columns, width=console.width)


def emit_records(
    title: str,
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[str],
    *,
    width: int | None = None,
) -> None:
    """Rows as `field: value` lines, for a row too wide for a table (or a single record)."""
    width = width or Console().width
    label_width = max((len(c) for c in columns), default=0) + 2
    lines = [cell_text(title)]
    for index, row in enumerate(rows):
        if index:
            lines.append("")
        for column in columns:
            label = f"  {column}:".ljust(label_width + 2)
            lines.extend(_field_lines(label, cell_text(row.get(column)), width, is_whole(column)))
    if not rows:
        lines.append("  (none)")
    click.echo("\n".join(lines) + "\n")


def _field_lines(label: str, value: str, width: int, whole: bool) -> list[str]:
    """One field of a record: after its label, or on the next line when a whole value does
    not fit beside it; other long values wrap under themselves."""
    if len(label) + len(value) <= width:
        return [f"{label}{value}".rstrip()]
    if whole:
        return [label.rstrip(), f"    {value}"]
    return [label.rstrip(), *(f"    {line}" for line in wrap_text(value, width - 4))]


def wrap_text(text: str, width: int) -> list[str]:
    """Text in lines of at most `width`, its own line breaks kept. It wraps at spaces; a URL
    or an id is never split (it may overrun a narrow screen), other overlong words are."""
    lines: list[str] = []
    for paragraph in text.splitlines() or [""]:
        words: list[str] = []
        for word in paragraph.split():
            if len(word) > width and not _UNBREAKABLE.fullmatch(word):
                words.extend(word[i : i + width] for i in range(0, len(word), width))
            else:
                words.append(word)
        joined = " ".join(words)
        lines.extend(textwrap.wrap(joined, width, break_long_words=False, break_on_hyphens=False)
                     or [""])  # fmt: skip
    return lines


def _table(title: str, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> Table:
    table = Table(
        title=as_text(title),
        title_justify="left",
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        collapse_padding=True,  # columns two spaces apart, like `kubectl get`
    )
    for column in columns:
        table.add_column(HEADERS.get(column, column), no_wrap=is_whole(column), overflow="fold")
    for row in rows:
        table.add_row(*(as_text(row.get(c)) for c in columns))
    return table


def _shows_whole(
    table: Table, width: int, rows: Sequence[Mapping[str, Any]], columns: Sequence[str]
) -> bool:
    """Whether the table, drawn `width` wide, shows every id, URL, name and time whole, and
    every header unbroken (a broken header means a column squeezed too narrow to read)."""
    drawn = io.StringIO()
    Console(file=drawn, width=width, color_system=None, highlight=False).print(table)
    lines = drawn.getvalue().splitlines()
    headers = [HEADERS.get(c, c) for c in columns]
    wanted = [*_kept_whole(rows, columns), *headers]
    return all(any(value in line for line in lines) for value in wanted if value)


def _kept_whole(rows: Sequence[Mapping[str, Any]], columns: Sequence[str]) -> list[str]:
    """Whole-column values, and the URLs and ids inside the other columns' text."""
    kept: list[str] = []
    for row in rows:
        for column in columns:
            text = cell_text(row.get(column))
            kept.extend([text] if is_whole(column) else _UNBREAKABLE.findall(text))
    return kept


def cell_text(value: Any) -> str:
    """A value as a table shows it: times as UTC to the second, control characters escaped."""
    if value is None:
        return ""
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S")
    return _CONTROL.sub(_escaped, str(_plain(value)))


def as_text(value: Any) -> Text:
    """A value as plain text for rich: never read as markup, control characters shown escaped."""
    return Text(cell_text(value))


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")


def _escaped(match: re.Match[str]) -> str:
    return repr(match.group())[1:-1]

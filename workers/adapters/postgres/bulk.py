"""Bulk statements: a whole batch travels as a few arrays in one statement."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeEngine


def unnest_rows(
    name: str, columns: dict[str, tuple[TypeEngine[Any], Sequence[Any]]]
) -> TableValuedAlias:
    """`unnest(:a, :b, ...) AS name(a, b, ...)`: rows built from equal-length arrays.

    One bound array per column, whatever the batch size, so 10,000 rows cost
    the same single round trip as ten.
    """
    lengths = {len(values) for _, values in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"unnest_rows({name}): columns differ in length: {sorted(lengths)}")
    arrays = [
        sa.bindparam(f"{name}_{column}", list(values), type_=ARRAY(type_))
        for column, (type_, values) in columns.items()
    ]
    typed_columns = [sa.column(column, type_) for column, (type_, _) in columns.items()]
    return sa.func.unnest(*arrays).table_valued(*typed_columns).render_derived(name=name)


def any_of(column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """`column = ANY(:array)`: one bound array instead of one parameter per value."""
    return column == sa.any_(sa.literal(list(values), ARRAY(column.type)))

"""Bulk statements: a whole batch travels as a few arrays in one statement.

Arrays of ids, text, booleans and integers travel in PostgreSQL's binary format:
psycopg dumps a list as text by default, element by element in Python, and that
was most of the cost of applying 10,000 transitions (two 10,000-element arrays:
about 90 ms as text, 17 ms binary). Floats (a list may mix 1 and 0.5, which the
binary dumper refuses) and JSON stay text.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from typing import Any

import psycopg
import sqlalchemy as sa
from psycopg.types.array import ListBinaryDumper
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.sql.selectable import TableValuedAlias
from sqlalchemy.types import TypeDecorator, TypeEngine


class _BinaryList(list[Any]):
    """A list psycopg dumps as a binary array (registered below, for this class only)."""


psycopg.adapters.register_dumper(_BinaryList, ListBinaryDumper)

_BINARY_SAFE = (sa.Uuid, sa.String, sa.Boolean, sa.Integer)  # Text and BigInteger included


class _BinaryArray(TypeDecorator[Any]):
    """ARRAY(item) whose bound value psycopg sends in binary."""

    impl = ARRAY
    cache_ok = True

    def bind_processor(self, dialect: sa.Dialect) -> Callable[[Any], Any] | None:
        inner = self.impl_instance.bind_processor(dialect)

        def process(value: Any) -> Any:
            if value is None:
                return None
            return _BinaryList(inner(value) if inner is not None else value)

        return process


def array_of(item: TypeEngine[Any]) -> TypeEngine[Any]:
    """The array type a bound list of `item` values is sent as (binary where it can)."""
    binary = isinstance(item, _BINARY_SAFE) and not isinstance(item, sa.Enum)  # an Enum is a String
    return _BinaryArray(item) if binary else ARRAY(item)


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
        sa.bindparam(f"{name}_{column}", list(values), type_=array_of(type_))
        for column, (type_, values) in columns.items()
    ]
    typed_columns = [sa.column(column, type_) for column, (type_, _) in columns.items()]
    return sa.func.unnest(*arrays).table_valued(*typed_columns).render_derived(name=name)


def any_of(column: sa.ColumnElement[Any], values: Iterable[Any]) -> sa.ColumnElement[bool]:
    """`column = ANY(:array)`: one bound array instead of one parameter per value."""
    return column == sa.any_(sa.literal(list(values), array_of(column.type)))

"""How both executors turn per-item work into values: one place for the try/except."""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Protocol, TypeVar
from uuid import UUID

from workers.errors import InfrastructureUnavailable


class _Identified(Protocol):
    @property
    def id(self) -> UUID: ...


ItemT = TypeVar("ItemT", bound=_Identified)
ResultT = TypeVar("ResultT")


def unique_by_id(items: Iterable[ItemT]) -> list[ItemT]:
    """Drop repeats of an id, keeping the first: a batch acts on each entity once."""
    seen: dict[UUID, ItemT] = {}
    for item in items:
        seen.setdefault(item.id, item)
    return list(seen.values())


def capture(call: Callable[[], ResultT]) -> ResultT | Exception:
    """Run one item's work; its failure comes back as a value.

    `InfrastructureUnavailable` still raises: when the database or Redis is gone
    every item would fail the same way, and the caller should retry the batch
    instead of recording a failure against each item.
    """
    try:
        return call()
    except InfrastructureUnavailable:
        raise
    except Exception as error:
        return error

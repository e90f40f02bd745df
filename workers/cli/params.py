"""Option types shared by the commands: numbers that must be finite."""

from __future__ import annotations

from typing import Any

import click

from workers.inputs import number_problem


class FiniteFloat(click.FloatRange):
    """click's FloatRange, refusing NaN and infinity (which pass any range check or none)."""

    name = "number"

    def _describe_range(self) -> str:
        """No range at all says nothing (click would print `x<=None`)."""
        if self.min is None and self.max is None:
            return ""
        return str(super()._describe_range())

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        number = super().convert(value, param, ctx)
        if (problem := number_problem(number)) is not None:
            self.fail(problem, param, ctx)
        return number

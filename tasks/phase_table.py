"""The phase table, printed from the phase rows themselves: `modelfleet phase list`.

What each phase does is the summary of its module's docstring (`tasks/routes/provision.py`
for routes.provision); its targets, transitions and follow-ups are its `Phase`. The
README's table is `modelfleet phase list --markdown` (a test compares the two).
"""

from __future__ import annotations

import importlib
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import click

from beat_schedule import PHASE_INTERVALS_S
from tasks.phase import Action, AnyPhase, Move, Stay, StayUntil
from tasks.runs import PHASES  # every phase module registered itself (`tasks/__init__.py`)
from workers.cli.output import emit_json, emit_table, json_option
from workers.cli.phases import phase as phase_group
from workers.domain import OutcomeBucket

COLUMNS = ["phase", "every_s", "targets", "does", "success", "error", "waiting", "otherwise",
           "then"]  # fmt: skip
_HEADINGS = ["phase", "every (s)", "targets", "what it does", "success", "error", "waiting",
             "stale / skipped", "then (after a transition of that kind)"]  # fmt: skip


def phase_rows(phases: Iterable[AnyPhase]) -> list[dict[str, Any]]:
    """One row per phase, in the order beat's schedule lists them."""
    by_name = {str(phase.name): phase for phase in phases}
    return [_row(by_name[name]) for name in PHASE_INTERVALS_S if name in by_name]


def markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    lines = [_line(_HEADINGS), _line(["---"] * len(_HEADINGS))]
    lines += [_line([_cell(row[column]) for column in COLUMNS]) for row in rows]
    return "\n".join(lines) + "\n"


def _row(phase: AnyPhase) -> dict[str, Any]:
    on = phase.on
    otherwise = {_said(on[b]) for b in (OutcomeBucket.STALE, OutcomeBucket.SKIPPED) if b in on}
    return {
        "phase": str(phase.name),
        "every_s": PHASE_INTERVALS_S[phase.name],
        "targets": _targets(phase),
        "does": _does(phase),
        "success": _said(on.get(OutcomeBucket.SUCCESS)),
        "error": _said(on.get(OutcomeBucket.ERROR)),
        "waiting": _said(on.get(OutcomeBucket.WAITING)),
        "otherwise": ", ".join(sorted(otherwise)) or "-",
        "then": _then(phase),
    }


def _targets(phase: AnyPhase) -> str:
    statuses = " ".join(s.value for s in phase.kind.all_statuses if s in phase.targets)
    said = f"{phase.kind.name.value}s {statuses}"
    return f"{said}: {phase.chosen_by}" if phase.chosen_by else said


def _does(phase: AnyPhase) -> str:
    """The first paragraph of the phase module's docstring, past its name."""
    module = importlib.import_module(f"tasks.{phase.name}")
    first = (module.__doc__ or "").strip().split("\n\n")[0]
    return " ".join(first.split()).removeprefix(f"{phase.name}: ")


def _said(action: Action[Any] | None) -> str:
    if isinstance(action, Move):
        return str(action.to.value)
    if isinstance(action, StayUntil):
        return f"stays (a try counted); {action.then.value} after {action.tries}"
    if isinstance(action, Stay):
        return "stays (saying why)"
    return "-"


def _then(phase: AnyPhase) -> str:
    said = [f"{bucket.value}: {', '.join(names)}" for bucket, names in phase.follow_ups.items()]
    said += [f"any {bucket.value}: {', '.join(names)}"
             for bucket, names in phase.follow_ups_on_outcome.items()]  # fmt: skip
    return "; ".join(said) or "-"


def _line(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(value: Any) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value).replace("|", "/")


@phase_group.command("list")
@click.option(
    "--markdown", "as_markdown", is_flag=True, help="The table as Markdown (the README's)."
)
@json_option
def list_phases(as_markdown: bool, as_json: bool) -> None:
    """Every phase: its targets, what it does, where its outcomes move them, what follows."""
    rows = phase_rows(PHASES.values())
    if as_json:
        emit_json(rows)
    elif as_markdown:
        click.echo(markdown(rows), nl=False)
    else:
        emit_table("phases", rows, COLUMNS)

"""A module says one thing: none outside tests and migrations grows past 400 lines
(the line the structure review drew; past it a module has begun to hold two)."""

from __future__ import annotations

from pathlib import Path

ROOT = Path(__file__).parents[2]
LIMIT = 400


def test_no_module_outside_tests_and_migrations_is_over_400_lines() -> None:
    sources = [*ROOT.glob("workers/**/*.py"), *ROOT.glob("tasks/**/*.py")]
    over = {
        str(path.relative_to(ROOT)): lines
        for path in sources
        if "migrations" not in path.parts
        and (lines := len(path.read_text(encoding="utf-8").splitlines())) > LIMIT
    }
    assert sources
    assert over == {}

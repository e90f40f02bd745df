"""The import contracts hold a line, not a wish: in a scratch copy of the tree, one import
across each line makes `lint-imports` fail naming that contract."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[2]
# module (relative to the root) -> an import that crosses a line, and the contract it breaks
CROSSINGS = {
    "workers/executors/outcomes.py": (
        "import workers.devtools.dev",
        "The controller imports neither the standalone components nor the dev tooling",
    ),
    "workers/standalone/prober.py": (
        "import workers.devtools.traffic",
        "The standalone components do not import the dev tooling",
    ),
    "workers/adapters/postgres/bulk.py": (
        "import workers.adapters.redis.keys",
        "Adapters do not import each other",
    ),
    "workers/policies/rollouts.py": (
        "import workers.adapters.postgres.bulk",
        "The controller's layers",
    ),
    "workers/domain/statuses.py": (
        "import redis",
        "Executors, ports, domain and settings do no I/O of their own",
    ),
}


def _lint(root: Path) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(root)}
    return subprocess.run([str(lint)], cwd=root, env=env, capture_output=True, text=True,
                          timeout=120, check=False)  # fmt: skip


def test_the_tree_keeps_every_contract() -> None:
    done = _lint(ROOT)
    assert done.returncode == 0, done.stdout
    assert "5 kept, 0 broken" in done.stdout


def test_an_import_across_each_line_breaks_its_contract(tmp_path: Path) -> None:
    for name in ("workers", "tasks"):
        shutil.copytree(ROOT / name, tmp_path / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "beat_schedule.py"):
        shutil.copy(ROOT / name, tmp_path / name)
    for module, (crossing, _) in CROSSINGS.items():
        with (tmp_path / module).open("a") as source:
            source.write(f"\n{crossing}  # a line crossed on purpose\n")
    done = _lint(tmp_path)
    assert done.returncode != 0
    broken = done.stdout.split("Broken contracts", 1)[-1]
    for module, (_, contract) in CROSSINGS.items():
        assert contract in broken, (module, done.stdout[-3000:])
    assert "0 kept, 5 broken" in done.stdout

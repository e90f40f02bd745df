"""The `modelfleet` program: the controller's commands (and `phase list`, which reads the
phase rows in `tasks`), the standalone components' (`runner`, `prober`, `collector`,
`proxy`) and the dev tooling's (`dev`).

The one place that brings the three parts together; the controller's own CLI
(`workers.cli`) knows neither of the others.
"""

from __future__ import annotations

from tasks import phase_table
from workers.cli import main
from workers.devtools import commands as devtools_commands
from workers.standalone import commands as standalone_commands

__all__ = ["devtools_commands", "main", "phase_table", "standalone_commands"]

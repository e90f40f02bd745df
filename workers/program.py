"""The `modelfleet` program: the controller's commands, the standalone components'
(`runner`, `prober`, `collector`, `proxy`) and the dev tooling's (`dev`).

The one place that brings the three parts together; the controller's own CLI
(`workers.cli`) knows neither of the others.
"""

from __future__ import annotations

from workers.cli import main
from workers.devtools import commands as devtools_commands
from workers.standalone import commands as standalone_commands

__all__ = ["devtools_commands", "main", "standalone_commands"]

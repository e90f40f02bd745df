"""`modelfleet dev`'s supervision: a child that exits is started again, and says so."""

from __future__ import annotations

import os
import sys
from pathlib import Path

from workers.devtools.processes import Process, wait_for


def test_a_child_that_exits_is_started_again_with_its_exit_code_noted(tmp_path: Path) -> None:
    marker = tmp_path / "starts"
    script = f"open({str(marker)!r}, 'a').write('x'); import sys; sys.exit(3)"
    child = Process("flaky", [sys.executable, "-c", script], dict(os.environ), tmp_path)
    try:
        wait_for(child.popen.poll, lambda code: code is not None, timeout_s=20,
                 what="the child to exit")  # fmt: skip
        assert child.restart_if_dead()
        assert (child.restarts, child.last_exit_code) == (1, 3)
        wait_for(marker.read_text, lambda text: text == "xx", timeout_s=20,
                 what="the second start")  # fmt: skip
        assert "exited with 3; restart 1" in child.log_path.read_text()
    finally:
        child.stop()

"""Help texts a newcomer reads: whole names, no `x<=None`, where a secret may come from."""

from __future__ import annotations

import json

from click.testing import CliRunner

from beat_schedule import PHASE_INTERVALS_S, SCHEDULED_INTERVALS_S
from workers.program import main


def _help(*argv: str) -> str:
    shown = CliRunner().invoke(main, [*argv, "--help"], terminal_width=80)
    assert shown.exit_code == 0, shown.output
    return shown.output


def test_a_number_option_without_bounds_shows_no_range() -> None:
    shown = _help("autoscaling-rule", "add")
    assert "None" not in shown
    assert "--threshold NUMBER" in shown


def test_phase_run_names_every_phase_whole_on_its_own_line() -> None:
    lines = [line.strip() for line in _help("phase", "run").splitlines()]
    assert lines[0].endswith("phase run [OPTIONS] NAME")
    for name in SCHEDULED_INTERVALS_S:
        assert name in lines


def test_the_app_proxy_token_option_names_its_variable() -> None:
    assert "MODELFLEET_APP_PROXY_TOKEN" in " ".join(_help("scaling-group", "create").split())


def test_every_option_of_dev_says_what_it_does() -> None:
    shown = " ".join(_help("dev").split())
    assert "--timeout-s NUMBER With --smoke: how long each step may take" in shown


def test_long_running_processes_take_a_log_level() -> None:
    for command in (
        ["runner"],
        ["prober"],
        ["collector"],
        ["proxy"],
        ["service-discovery", "serve"],
    ):
        assert "--log-level" in _help(*command), command


def test_phase_list_prints_every_phase_as_json_and_as_a_table() -> None:
    listed = CliRunner().invoke(main, ["phase", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.output)
    assert [row["phase"] for row in rows] == [str(name) for name in PHASE_INTERVALS_S]
    provision = next(row for row in rows if row["phase"] == "routes.provision")
    assert (provision["success"], provision["error"]) == ("degraded", "failed_to_start")
    shown = CliRunner().invoke(main, ["phase", "list"], terminal_width=200)
    assert shown.exit_code == 0
    assert "hosts.drain" in shown.output

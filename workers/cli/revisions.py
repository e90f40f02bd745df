"""`modelfleet deployment update | rollback | promote | revisions`: shipping a new revision.

An update makes the next revision from the current one plus the changes and
starts a rollout to it; a rollback rolls out an earlier revision. `--wait`
returns when the rollout ends: exit 0 when the revision serves, 1 when it was
rolled back (with the reason), as the README's exit codes say.
"""

from __future__ import annotations

from typing import Any

import click

from workers.adapters.postgres.revision_records import RolloutStart
from workers.cli.autoscale_options import autoscale_options
from workers.cli.deployments import (
    autoscale_settings,
    deployment,
    routing_option,
    start_deadline_option,
    with_rollout,
)
from workers.cli.output import done, emit, json_option, wide_option
from workers.cli.params import FiniteFloat
from workers.cli.revision_options import (
    HEALTH_OPTIONS,
    environ_pairs,
    health_options,
    resource_options,
    resource_request,
)
from workers.cli.root import CliContext, bad_input, find_deployment, reported_failures
from workers.cli.waiting import Deadline, wait_until
from workers.domain import ResourceRequest, RolloutSpec, RolloutStrategy
from workers.policies.rollout_specs import SpecError, check_spec, parse_steps

WAIT_POLL_S = 0.5
DEFAULTS = RolloutSpec()  # the rollout defaults, written once (workers.domain)
STRATEGIES = [s.value for s in RolloutStrategy]


def rollout_options(command: Any) -> Any:
    """The options every command that starts a rollout takes."""
    for option in reversed(
        [
            click.option(
                "--strategy", type=click.Choice(STRATEGIES), default="rolling", show_default=True
            ),
            click.option(
                "--max-surge",
                default=DEFAULTS.max_surge,
                show_default=True,
                help="Routes above the desired count: N or P%.",
            ),
            click.option(
                "--max-unavailable",
                default=DEFAULTS.max_unavailable,
                show_default=True,
                help="Serving routes below the desired count: N or P%.",
            ),
            click.option(
                "--promote-delay-s",
                type=FiniteFloat(min=0),
                default=DEFAULTS.promote_delay_s,
                show_default=True,
            ),
            click.option(
                "--no-auto-promote",
                "manual_promote",
                is_flag=True,
                help="Blue-green: wait for `deployment promote`.",
            ),
            click.option(
                "--failure-threshold",
                type=click.IntRange(min=1),
                default=DEFAULTS.failure_threshold,
                show_default=True,
            ),
            click.option(
                "--progress-deadline-s",
                type=FiniteFloat(min=1),
                default=DEFAULTS.progress_deadline_s,
                show_default=True,
            ),
            click.option(
                "--canary-steps",
                default=",".join(str(step) for step in DEFAULTS.canary_steps),
                show_default=True,
                help="Canary: percent of traffic at each step, ascending, each 1-99.",
            ),
            click.option(
                "--canary-interval-s",
                type=FiniteFloat(min=0, min_open=True),
                default=DEFAULTS.canary_interval_s,
                show_default=True,
                help="Canary: how long each step holds while its requests are judged.",
            ),
            click.option(
                "--max-error-rate",
                type=FiniteFloat(min=0, max=1),
                default=DEFAULTS.max_error_rate,
                show_default=True,
                help="The new revision fails when this share of its requests get 5xx or "
                "no answer (any strategy).",
            ),
            click.option(
                "--min-requests",
                type=click.IntRange(min=1),
                default=DEFAULTS.min_requests,
                show_default=True,
                help="Requests of the new revision before its error rate counts.",
            ),
            click.option(
                "--max-p95-latency-ratio",
                type=FiniteFloat(min=1),
                help="The new revision fails when its p95 latency is over this many times "
                "the old one's (off when not given).",
            ),
            click.option("--wait", is_flag=True, help="Return when the rollout ends."),
            click.option(
                "--timeout-s",
                type=FiniteFloat(min=1),
                default=900.0,
                show_default=True,
                help="With --wait.",
            ),
            json_option,
        ]
    ):
        command = option(command)
    return command


@deployment.command("update")
@click.argument("ref", metavar="DEPLOYMENT")
@click.option("--image", help="Container image of the model server.")
@click.option("--command", "startup_command", help="Startup command of the model server.")
@click.option("--env", "env_pairs", multiple=True, help="NAME=VALUE, added or replaced.")
@click.option("--model-path")
@click.option("--health-path", help="HTTP path the prober checks.")
@health_options(with_defaults=False)
@resource_options
@start_deadline_option
@autoscale_options
@routing_option
@rollout_options
@click.pass_obj
def update(cli: CliContext, /, ref: str, **options: Any) -> None:
    """Ship a new revision: the current one with these changes, rolled out (settings
    alone, like the autoscaler's, change at once: nothing is rolled out)."""
    spec = _spec(options)
    with reported_failures("deployment update"):
        found = _live(cli, ref)
        settings = autoscale_settings(cli, found, options)
        if options["routing"] is not None:
            settings["routing"] = options["routing"]
        changes = _changes(cli, found, options)
        if settings and not changes:
            _settings_only(cli, found, settings, options)
            return
        number = cli.catalog.create_revision(
            found["id"], changes, keep=cli.settings.revision_history_limit
        )
        if number is None:
            bad_input(
                "DEPLOYMENT", f"nothing changes: revision {found['current_revision']} runs that"
            )
        started = _start(cli, found, number, spec, f"update to revision {number}")
        if options["start_deadline_s"] is not None:
            settings["start_deadline_s"] = options["start_deadline_s"]
        if settings:
            cli.catalog.set_settings(found["id"], settings)
    _report(cli, found, number, started, options)


def _settings_only(
    cli: CliContext, found: dict[str, Any], settings: dict[str, Any], options: dict[str, Any]
) -> None:
    if options["start_deadline_s"] is not None:
        settings["start_deadline_s"] = options["start_deadline_s"]
    changed = cli.catalog.set_settings(found["id"], settings)
    said = "; ".join(changed) if changed else "nothing changed"
    done(f"deployment {found['name']}: {said} (no revision: nothing rolled out)",
         {"deployment": found["name"], "id": str(found["id"]), "changed": changed},
         as_json=options["as_json"])  # fmt: skip


@deployment.command("rollback")
@click.argument("ref", metavar="DEPLOYMENT")
@click.option("--to-revision", type=click.IntRange(min=1), help="Default: the one before current.")
@rollout_options
@click.pass_obj
def rollback(cli: CliContext, /, ref: str, to_revision: int | None, **options: Any) -> None:
    """Roll out an earlier revision."""
    spec = _spec(options)
    with reported_failures("deployment rollback"):
        found = _live(cli, ref)
        kept = {r["number"] for r in cli.reports.revisions(found["id"])}
        target = to_revision or max((n for n in kept if n < found["current_revision"]), default=0)
        if target not in kept:
            bad_input("--to-revision", f"no revision {target} kept; kept: {sorted(kept)}")
        if target == found["current_revision"]:
            bad_input("--to-revision", f"revision {target} is the current one")
        started = _start(cli, found, target, spec, f"roll back to revision {target}")
    _report(cli, found, target, started, options)


@deployment.command("promote")
@click.argument("ref", metavar="DEPLOYMENT")
@json_option
@click.pass_obj
def promote(cli: CliContext, ref: str, as_json: bool) -> None:
    """Switch a blue-green rollout that waits for it, or end a canary's steps now."""
    with reported_failures("deployment promote"):
        found = find_deployment(cli, ref)
        if not cli.catalog.request_promote(found["id"]):
            bad_input("DEPLOYMENT", f"{found['name']} has no blue-green rollout waiting to "
                      "switch and no canary in progress")  # fmt: skip
    revision = found["deploying_revision"]
    done(
        f"deployment {found['name']}: revision {revision} promoted",
        {"deployment": found["name"], "revision": revision},
        as_json=as_json,
    )


@deployment.command("revisions")
@click.argument("ref", metavar="DEPLOYMENT")
@wide_option
@json_option
@click.pass_obj
def revisions(cli: CliContext, ref: str, wide: bool, as_json: bool) -> None:
    """Every revision kept: what changed, and which is current, deploying or failed (why)."""
    with reported_failures("deployment revisions"):
        found = find_deployment(cli, ref)
        rows = cli.reports.revisions(found["id"])
    emit(
        f"revisions of {found['name']}",
        rows,
        ["number", "image", "changed", "state", "reason"],
        wide=["created_at", "command"] if wide else None,
        as_json=as_json,
    )


def _spec(options: dict[str, Any]) -> RolloutSpec:
    try:
        spec = RolloutSpec(
            strategy=RolloutStrategy(options["strategy"]),
            max_surge=options["max_surge"],
            max_unavailable=options["max_unavailable"],
            promote_delay_s=options["promote_delay_s"],
            auto_promote=not options["manual_promote"],
            failure_threshold=options["failure_threshold"],
            progress_deadline_s=options["progress_deadline_s"],
            canary_steps=parse_steps(options["canary_steps"]),
            canary_interval_s=options["canary_interval_s"],
            max_error_rate=options["max_error_rate"],
            min_requests=options["min_requests"],
            max_p95_latency_ratio=options["max_p95_latency_ratio"],
        )
        check_spec(spec)
    except SpecError as error:
        field, _, message = str(error).partition(": ")
        bad_input(field, message)
    return spec


def _live(cli: CliContext, ref: str) -> dict[str, Any]:
    found = find_deployment(cli, ref)
    if found["lifecycle"] not in {"ready", "scaling", "deploying"}:
        bad_input("DEPLOYMENT", f"{found['name']} is {found['lifecycle']}; it must be ready")
    return found


def _changes(cli: CliContext, found: dict[str, Any], options: dict[str, Any]) -> dict[str, Any]:
    [current] = [r for r in cli.reports.revision_specs(found["id"], found["current_revision"])]
    changes: dict[str, Any] = {
        column: options[option]
        for option, column in (
            ("image", "image"),
            ("startup_command", "startup_command"),
            ("model_path", "model_path"),
            ("health_path", "health_check_path"),
        )
        if options[option] is not None
    }
    if options["env_pairs"]:
        changes["environ"] = {**current["environ"], **environ_pairs(options["env_pairs"])}
    for option, field, _, _ in HEALTH_OPTIONS:
        if options[option] is not None:
            changes[f"health_check_{field}"] = options[option]
    current_request = ResourceRequest.from_resources(current["resources"])
    if (request := resource_request(options, current_request)) is not None:
        changes["resources"] = request.to_resources()
    return changes


def _start(
    cli: CliContext, found: dict[str, Any], number: int, spec: RolloutSpec, what: str
) -> RolloutStart:
    started = cli.catalog.start_rollout(found["id"], number, spec, what)
    if started is RolloutStart.REFUSED:
        bad_input("DEPLOYMENT", f"{found['name']} cannot start a rollout now")
    return started


def _report(cli: CliContext, found: dict[str, Any], number: int, started: RolloutStart,
            options: dict[str, Any]) -> None:  # fmt: skip
    at_zero = started is RolloutStart.CURRENT_AT_ZERO
    if options["wait"] and not at_zero:
        _wait(cli, found, number, options["timeout_s"])
    said = f"deployment {found['name']}: revision {number}"
    if at_zero:
        said += " (at zero: current now; the next wake starts it)"
    done(said, {"deployment": found["name"], "revision": number}, as_json=options["as_json"])


def _wait(cli: CliContext, found: dict[str, Any], number: int, timeout_s: float) -> None:
    """Until the rollout to `number` ends; exit 1 with the reason if it was rolled back."""

    def read() -> dict[str, Any]:
        with reported_failures("deployment update --wait"):
            return with_rollout(find_deployment(cli, str(found["id"])))

    def ended(now: dict[str, Any]) -> bool:
        return bool(now["deploying_revision"] != number or now["lifecycle"] != "deploying")

    def describe(now: dict[str, Any]) -> tuple[str, str]:
        return f"revision {number}: still rolling out", now["reason"]

    now = wait_until(read, ended, Deadline(timeout_s), describe, pause_s=WAIT_POLL_S)
    if now["current_revision"] != number:
        with reported_failures("deployment update --wait"):
            reason = cli.reports.revision_failure(found["id"], number)
        raise click.ClickException(
            f"revision {number} did not roll out: {reason or now['lifecycle']}"
        )

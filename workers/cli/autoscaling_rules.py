"""`modelfleet autoscaling-rule add | list | remove`."""

from __future__ import annotations

from typing import Any
from uuid import UUID

import click
import sqlalchemy as sa

from workers.cli.output import done, emit, json_option, wide_option
from workers.cli.params import FiniteFloat
from workers.cli.root import (
    CliContext,
    bad_input,
    deployment_filter,
    find_deployment,
    main,
    reported_failures,
)
from workers.domain import AutoScalingRule, Comparator, MetricSource
from workers.inputs import metric_name_problem


@main.group("autoscaling-rule")
def autoscaling_rule() -> None:
    """Rules that scale a deployment on a metric."""


@autoscaling_rule.command("add")
@click.argument("ref", metavar="DEPLOYMENT")
@click.option("--metric-source", type=click.Choice([s.value for s in MetricSource]), required=True)
@click.option("--metric", "metric_name", required=True, help="Metric name, e.g. cpu_util.")
@click.option("--threshold", type=FiniteFloat(), required=True)
@click.option("--comparator", type=click.Choice([c.value for c in Comparator]), required=True)
@click.option("--step", "step_size", type=int, required=True, help="Replicas to add (<0: remove).")
@click.option("--cooldown-s", type=click.IntRange(min=0), default=300, show_default=True)
@click.option("--min-replicas", type=click.IntRange(min=0))
@click.option("--max-replicas", type=click.IntRange(min=0))
@json_option
@click.pass_obj
def add(cli: CliContext, /, ref: str, **options: Any) -> None:
    """Add a rule: step the replica count while METRIC crosses THRESHOLD."""
    if options["step_size"] == 0:
        bad_input("--step", "must not be 0")
    if (problem := metric_name_problem(options["metric_name"])) is not None:
        bad_input("--metric", problem)
    low, high = options["min_replicas"], options["max_replicas"]
    if low is not None and high is not None and low > high:
        bad_input("--min-replicas", f"{low} is above --max-replicas {high}")
    rule = AutoScalingRule(
        metric_source=MetricSource(options["metric_source"]),
        metric_name=options["metric_name"],
        threshold=options["threshold"],
        comparator=Comparator(options["comparator"]),
        step_size=options["step_size"],
        cooldown_s=options["cooldown_s"],
        min_replicas=low,
        max_replicas=high,
    )
    with reported_failures("autoscaling-rule add"):
        found = find_deployment(cli, ref)
        if found["lifecycle"] in {"destroying", "destroyed"}:
            bad_input("DEPLOYMENT", f"{found['name']} is {found['lifecycle']}")
        if found["autoscale_mode"] != "off":
            mode = found["autoscale_mode"]
            bad_input("DEPLOYMENT", f"{found['name']} autoscales on its traffic "
                      f"(--autoscale {mode}): one or the other")  # fmt: skip
        stored = cli.catalog.add_autoscaling_rule(found["id"], rule)
    done(
        f"rule {stored.id} added to {found['name']}",
        {"rule": str(stored.id), "deployment": found["name"]},
        as_json=options["as_json"],
    )


@autoscaling_rule.command("list")
@click.option("--deployment", "ref", help="Only this deployment's rules (name or id).")
@wide_option
@json_option
@click.pass_obj
def list_rules(cli: CliContext, ref: str | None, wide: bool, as_json: bool) -> None:
    """Rules, oldest first."""
    with reported_failures("autoscaling-rule list"):
        rows = cli.reports.autoscaling_rules(deployment_filter(cli, ref))
    emit(
        "autoscaling rules",
        rows,
        ["id", "deployment", "metric_name", "comparator", "threshold", "step_size"],
        wide=["metric_source", "cooldown_s", "min_replicas", "max_replicas", "last_triggered_at"]
        if wide
        else None,
        as_json=as_json,
    )


@autoscaling_rule.command("remove")
@click.argument("rule_id")
@json_option
@click.pass_obj
def remove(cli: CliContext, rule_id: str, as_json: bool) -> None:
    """Remove a rule by id."""
    try:
        parsed = UUID(rule_id)
    except ValueError:
        bad_input("RULE_ID", f"{rule_id!r} is not a rule id (a UUID)")
    with reported_failures("autoscaling-rule remove"):
        try:
            removed = cli.catalog.remove_autoscaling_rule(parsed)
        except sa.exc.DataError:
            removed = False
    if not removed:
        bad_input("RULE_ID", f"no rule with id {rule_id}")
    done(f"rule {rule_id} removed", {"rule": rule_id, "removed": True}, as_json=as_json)

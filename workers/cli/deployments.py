"""`modelfleet deployment create | list | show | scale | destroy`."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import click
import sqlalchemy as sa

from workers.adapters.postgres.rows import autoscale_from_row, autoscale_values
from workers.cli.autoscale_options import asked as autoscale_asked
from workers.cli.autoscale_options import autoscale_options, tracking
from workers.cli.output import (
    done,
    emit,
    json_option,
    wide_option,
)
from workers.cli.params import FiniteFloat
from workers.cli.revision_options import (
    environ_pairs,
    health_check,
    health_options,
    resource_options,
    resource_request,
)
from workers.cli.root import CliContext, bad_input, find_deployment, main, reported_failures
from workers.cli.waiting import Deadline, wait_until
from workers.cli.watching import show_or_watch, watch_option
from workers.domain import (
    DeploymentInfo,
    DeploymentLifecycle,
    ModelRevision,
    ResourceRequest,
    RolloutProgress,
    RoutingPolicy,
)
from workers.inputs import name_problem
from workers.policies.idleness import at_zero_reason
from workers.policies.rollout_notes import describe_progress

LIFECYCLES = [lifecycle.value for lifecycle in DeploymentLifecycle]


@main.group()
def deployment() -> None:
    """Model services and the replica count each asks for."""


def wait_options(command: Any) -> Any:
    """--wait and --timeout-s, as create, scale and destroy take them."""
    command = click.option(
        "--timeout-s",
        type=FiniteFloat(min=1),
        default=600.0,
        show_default=True,
        help="With --wait: exit 1 with the reason after this long.",
    )(command)
    return click.option(
        "--wait", is_flag=True, help="Return when the deployment serves as asked (or is gone)."
    )(command)


DRAIN_HELP = "Seconds a replica leaving service stays out of traffic before it is stopped."
START_DEADLINE_HELP = (
    "Seconds a replica's session may take to be started by a host before it is given up "
    "and replaced [MODELFLEET_SESSION_START_DEADLINE_S]."
)
ROUTING_HELP = ("How proxies pick a replica within the revision the weights chose: "
                "least-request (the default: fewer in flight, of two), prefix-cache (where the "
                "prompt's prefix is cached, unless too busy), round-robin.")  # fmt: skip
routing_option = click.option(
    "--routing", type=click.Choice([p.value for p in RoutingPolicy]), help=ROUTING_HELP
)
start_deadline_option = click.option(
    "--start-deadline-s", type=FiniteFloat(min=1, max=86_400), help=START_DEADLINE_HELP
)
SCALE_TO_ZERO_HELP = (
    "Seconds without a request after which it gives its replicas back; the next request "
    "wakes it (held by the modelfleet proxy meanwhile). 0: never."
)


@deployment.command("create")
@click.argument("name")
@click.option("--group", "resource_group", required=True, help="Resource group to run in.")
@click.option("--image", required=True, help="Container image of the model server.")
@click.option("--replicas", type=click.IntRange(min=0), default=1, show_default=True)
@click.option("--runtime-variant", default="custom", show_default=True)
@click.option("--model-path", default="/models", show_default=True)
@click.option("--command", "startup_command", help="Startup command of the model server.")
@click.option("--env", "env_pairs", multiple=True, help="NAME=VALUE for the server (repeatable).")
@click.option("--health-path", help="HTTP path the prober checks (none: no health check).")
@health_options(with_defaults=True)
@resource_options
@click.option("--public", is_flag=True, help="Open the endpoint without a token.")
@click.option(
    "--drain-s",
    type=FiniteFloat(min=0, max=3600),
    default=10.0,
    show_default=True,
    help=DRAIN_HELP,
)
@click.option("--scale-to-zero-after-s", type=FiniteFloat(min=0), default=0.0, show_default=True,
              help=SCALE_TO_ZERO_HELP)  # fmt: skip
@start_deadline_option
@autoscale_options
@routing_option
@wait_options
@json_option
@click.pass_obj
def create(cli: CliContext, /, name: str, resource_group: str, **options: Any) -> None:
    """Create a deployment; the controller registers it and starts its replicas."""
    if (problem := name_problem(name)) is not None:
        bad_input("NAME", problem)
    check_replicas(cli, "--replicas", options["replicas"])
    health = health_check(options["health_path"], options) if options["health_path"] else None
    request = resource_request(options) or ResourceRequest()
    revision = ModelRevision(
        image=options["image"],
        runtime_variant=options["runtime_variant"],
        model_path=options["model_path"],
        startup_command=options["startup_command"],
        environ=environ_pairs(options["env_pairs"]),
        health_check=health,
        resources=request.to_resources(),
    )
    new = DeploymentInfo(
        id=uuid.uuid4(),
        name=name,
        resource_group=resource_group,
        replica_count=options["replicas"],
        target_revision=revision,
        open_to_public=options["public"],
        drain_s=options["drain_s"],
        scale_to_zero_after_s=options["scale_to_zero_after_s"] or None,
        start_deadline_s=options["start_deadline_s"],
        autoscale=tracking(cli, options),
        routing=RoutingPolicy(options["routing"] or RoutingPolicy.LEAST_REQUEST.value),
    )
    with reported_failures("deployment create"):
        if resource_group not in {g["name"] for g in cli.reports.scaling_groups()}:
            bad_input("--group", f"no scaling group named {resource_group!r}")
        try:
            cli.catalog.create_deployment(new)
        except sa.exc.IntegrityError:
            bad_input("NAME", f"a live deployment named {name!r} exists already")
    document = {"deployment": name, "id": str(new.id), "lifecycle": new.lifecycle.value}
    if options["wait"]:
        document = {**document, **wait_serving(cli, new.id, options["timeout_s"])}
    done(
        _created_or_serving(f"deployment {name} created: {new.id}", document),
        document,
        as_json=options["as_json"],
    )


def check_replicas(cli: CliContext, field: str, replicas: int) -> None:
    """At most MODELFLEET_MAX_REPLICAS: a billion replicas once took a worker to 4.7 GB."""
    ceiling = cli.settings.max_replicas
    if replicas > ceiling:
        bad_input(field, f"{replicas} is over MODELFLEET_MAX_REPLICAS ({ceiling})")


def autoscale_settings(
    cli: CliContext, found: dict[str, Any], options: dict[str, Any]
) -> dict[str, Any]:
    """The autoscaler's columns the options ask of deployment `found` (none: nothing)."""
    if not autoscale_asked(options):
        return {}
    rules = len(cli.reports.autoscaling_rules(found["id"]))
    return autoscale_values(tracking(cli, options, autoscale_from_row(found), rules))


def with_rollout(row: dict[str, Any]) -> dict[str, Any]:
    """The row with READY (healthy / desired) and REASON, both as the controller wrote
    them: its condition, or its rollout's progress ('revision 3: 2/3 new healthy, 1 old
    remaining', the step's own counts)."""
    desired = row["desired"]
    stored = row.get("rollout_progress")
    progress = None
    if stored and row["lifecycle"] == "deploying":
        progress = describe_progress(RolloutProgress.from_json(stored))
    ready = f"{row['healthy_routes']}/{desired}"
    return {**row, "ready": ready, "reason": _reason(row, desired, progress), "rollout": progress}


def _reason(row: dict[str, Any], desired: int, progress: str | None) -> str:
    """Why the deployment is not simply serving everything it was asked for ('' when it is):
    what the controller said (its condition), else how many replicas are not healthy."""
    lifecycle, healthy = row["lifecycle"], row["healthy_routes"]
    if lifecycle == "deploying":
        return progress or row.get("condition_message") or "rolling out"
    if lifecycle in {"destroying", "destroyed"}:
        stopping = row.get("live_sessions") or 0
        return f"{lifecycle}; {stopping} model servers still stopping" if stopping else lifecycle
    if row.get("condition_message"):
        return str(row["condition_message"])
    if lifecycle == "pending":
        return "not registered yet: the controller has not run"
    if healthy < desired:
        return f"{desired - healthy} of {desired} replicas not healthy"
    return at_zero_reason(desired, row.get("zeroed_from"), row.get("scale_to_zero_after_s"))


@deployment.command("set")
@click.argument("ref", metavar="DEPLOYMENT")
@click.option("--scale-to-zero-after-s", type=FiniteFloat(min=0), help=SCALE_TO_ZERO_HELP)
@click.option("--drain-s", type=FiniteFloat(min=0, max=3600), help=DRAIN_HELP)
@start_deadline_option
@autoscale_options
@routing_option
@json_option
@click.pass_obj
def set_settings(cli: CliContext, /, ref: str, as_json: bool, **options: Any) -> None:
    """Change settings that are not part of a revision (nothing is rolled out)."""
    plain = {"scale_to_zero_after_s", "drain_s", "start_deadline_s", "routing"}
    # in the order given on the command line (click's order), which is the order said back
    wanted: dict[str, Any] = {n: v for n, v in options.items() if n in plain and v is not None}
    if not wanted and not autoscale_asked(options):
        bad_input("options", "give --scale-to-zero-after-s, --drain-s, --start-deadline-s, "
                  "--routing or --autoscale and its options")  # fmt: skip
    if "scale_to_zero_after_s" in wanted:  # 0 turns it off
        wanted["scale_to_zero_after_s"] = wanted["scale_to_zero_after_s"] or None
    with reported_failures("deployment set"):
        found = find_deployment(cli, ref)
        if found["lifecycle"] in {"destroying", "destroyed"}:
            bad_input("DEPLOYMENT", f"{found['name']} is {found['lifecycle']}")
        wanted.update(autoscale_settings(cli, found, options))
        changed = cli.catalog.set_settings(found["id"], wanted)
    document = {"deployment": found["name"], "id": str(found["id"]), "changed": changed}
    said = "; ".join(changed) if changed else "nothing changed"
    done(f"deployment {found['name']}: {said}", document, as_json=as_json)


@deployment.command("list")
@click.option("--lifecycle", type=click.Choice(LIFECYCLES), help="Only deployments in this state.")
@watch_option
@wide_option
@json_option
@click.pass_obj
def list_deployments(
    cli: CliContext, lifecycle: str | None, watch: float | None, wide: bool, as_json: bool
) -> None:
    """Deployments, oldest first."""
    show_or_watch(lambda: _list(cli, lifecycle, wide, as_json), watch, as_json=as_json)


def _list(cli: CliContext, lifecycle: str | None, wide: bool, as_json: bool) -> None:
    with reported_failures("deployment list"):
        rows = cli.reports.deployments(lifecycle)
    emit(
        "deployments",
        [with_rollout(row) for row in rows],
        ["name", "lifecycle", "ready", "current_revision", "reason"],
        wide=["id", "resource_group", "replica_count", "desired_replica_count", "url"]
        if wide
        else None,
        as_json=as_json,
    )


# -1 is a count out of range, not an unknown option
@deployment.command("scale", context_settings={"ignore_unknown_options": True})
@click.argument("ref", metavar="DEPLOYMENT")
@click.argument("replicas", type=click.IntRange(min=0))
@wait_options
@json_option
@click.pass_obj
def scale(
    cli: CliContext, ref: str, replicas: int, wait: bool, timeout_s: float, as_json: bool
) -> None:
    """Ask for REPLICAS replicas (replaces any count the autoscaler set)."""
    check_replicas(cli, "REPLICAS", replicas)
    with reported_failures("deployment scale"):
        found = find_deployment(cli, ref)
        if found["lifecycle"] in {"destroying", "destroyed"}:
            bad_input("DEPLOYMENT", f"{found['name']} is {found['lifecycle']}")
        cli.catalog.scale_deployment(found["id"], replicas)
    document = {"deployment": found["name"], "id": str(found["id"]), "replicas": replicas}
    if wait:
        document = {**document, **wait_serving(cli, found["id"], timeout_s)}
    done(
        _created_or_serving(f"deployment {found['name']} scaled to {replicas}", document),
        document,
        as_json=as_json,
    )


@deployment.command("destroy")
@click.argument("ref", metavar="DEPLOYMENT")
@wait_options
@json_option
@click.pass_obj
def destroy(cli: CliContext, ref: str, wait: bool, timeout_s: float, as_json: bool) -> None:
    """Stop every replica and unregister the endpoint; with --wait, return once it is
    destroyed and none of its model servers runs any more."""
    with reported_failures("deployment destroy"):
        found = find_deployment(cli, ref)
        if not cli.catalog.request_destroy(found["id"]):
            bad_input("DEPLOYMENT", f"{found['name']} is {found['lifecycle']} already")
    document = {"deployment": found["name"], "id": str(found["id"]), "lifecycle": "destroying"}
    if wait:  # destroyed, and every model server of it stopped
        _wait_deployment(cli, found["id"], timeout_s, "destroyed", _gone)
        document["lifecycle"] = "destroyed"
    done(f"deployment {found['name']} is {document['lifecycle']}", document, as_json=as_json)


def wait_serving(cli: CliContext, deployment_id: uuid.UUID, timeout_s: float) -> dict[str, Any]:
    """Until the deployment is ready with exactly the replicas asked for, all healthy;
    its URL and READY then."""
    row = _wait_deployment(cli, deployment_id, timeout_s, "serving", _serves_as_asked)
    return {"lifecycle": row["lifecycle"], "url": row["url"], "ready": row["ready"]}


def _gone(row: dict[str, Any]) -> bool:
    return bool(row["lifecycle"] == "destroyed" and row["live_sessions"] == 0)


def _serves_as_asked(row: dict[str, Any]) -> bool:
    desired = row["desired"]
    return (
        row["lifecycle"] == "ready"
        and row["healthy_routes"] == desired == row["active_routes"]
        and (desired == 0 or row["url"] is not None)
    )


def _created_or_serving(message: str, document: dict[str, Any]) -> str:
    if "url" not in document:
        return message
    return f"{message}; serving {document['ready']} at {document['url']}"


def _wait_deployment(
    cli: CliContext,
    deployment_id: uuid.UUID,
    timeout_s: float,
    goal: str,
    reached: Callable[[dict[str, Any]], bool],
) -> dict[str, Any]:
    """Poll the deployment until `reached`; exit 1 saying where it is and why, after --timeout-s."""

    def read() -> dict[str, Any]:
        with reported_failures(f"waiting for {goal}"):
            return with_rollout(find_deployment(cli, str(deployment_id)))

    def describe(row: dict[str, Any]) -> tuple[str, str]:
        why = f" ({row['reason']})" if row["reason"] else ""
        return f"{row['name']} not {goal}", f"it is {row['lifecycle']}, {row['ready']} ready{why}"

    return wait_until(read, reached, Deadline(timeout_s), describe)

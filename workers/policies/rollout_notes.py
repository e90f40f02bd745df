"""Rollouts said for people: where one stands, and why a revision failed (pure)."""

from __future__ import annotations

from workers.domain import RevisionFailures, RolloutProgress

ON_HEALTH_ALONE = "no request in the last minute: judged on health alone"


def describe_progress(progress: RolloutProgress) -> str:
    """Where a rollout stands: 'revision 3: 2/3 new healthy, 1 old remaining; canary
    step 1/2 (10 % of traffic, 14/60 s); its requests: 40, error rate 0.00 (limit 0.05)'."""
    said = (
        f"revision {progress.revision}: {progress.new_healthy}/{progress.desired} "
        f"new healthy, {progress.old_total} old remaining"
    )
    if (canary := progress.canary) is not None:
        said += (f"; canary step {canary.step}/{canary.steps} ({canary.share} % "
                 f"of traffic, {canary.held_s:g}/{canary.hold_s:g} s)")  # fmt: skip
    if progress.quiet:
        return f"{said}; {ON_HEALTH_ALONE}"
    requests, wanted = progress.requests, progress.min_requests
    rate = f"error rate {progress.error_rate:.2f} (limit {progress.max_error_rate:g})"
    if requests < wanted:
        said += f"; {requests} of {wanted} requests so far"
        return f"{said}, {rate}" if requests else said
    if requests:
        said += f"; its requests: {requests}, {rate}"
    return said


def describe_failures(failures: RevisionFailures) -> str:
    """Why a revision failed, for people: '3 sessions exited with code 1: weights not
    found' or '3 routes never became healthy within 7 s (health path /x answered 404)'."""
    said = [part for part in (_exits(failures), _never_healthy(failures)) if part]
    return "; ".join(said)


def never_healthy_note(revision: int, budget_s: float, probe_saw: str | None) -> str:
    """Why a deployment that cannot roll back does not serve: no route became healthy."""
    seen = f": {probe_saw}" if probe_saw else ""
    return f"no route of revision {revision} became healthy within {budget_s:g} s{seen}"


def _exits(failures: RevisionFailures) -> str:
    ordered = sorted(failures.exit_codes.items(), key=lambda item: -item[1])
    said = " and ".join(
        f"{count} session{'s' if count > 1 else ''} exited with code {code}"
        for code, count in ordered
    )
    return f"{said}: {failures.last_output}" if said and failures.last_output else said


def _never_healthy(failures: RevisionFailures) -> str:
    count = failures.never_healthy
    if not count:
        return ""
    within = f" within {failures.budget_s:g} s" if failures.budget_s is not None else ""
    said = f"{count} route{'s' if count > 1 else ''} never became healthy{within}"
    if failures.probe_saw:
        seen = failures.probe_saw
        if failures.health_path and seen.startswith(failures.health_path):
            seen = f"health path {seen}"
        said = f"{said} ({seen})"
    return said

"""Small read-only views of the Jobs and Pods expbot watches, taken from the API's raw JSON.

Only what classification needs is kept, so thousands of attempts cost little memory.
"""
from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from adapters.k8s import names


def parse_time(value: str | None) -> datetime | None:
    """An RFC 3339 timestamp from the API (always UTC), or None."""
    if not value:
        return None
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def _attempt_key(meta: dict[str, Any]) -> tuple[str, int] | None:
    found = meta.get("labels") or {}
    try:
        return found[names.EXPERIMENT], int(found[names.ATTEMPT])
    except (KeyError, ValueError):
        return None


def _condition(status: dict[str, Any], kind: str) -> dict[str, Any] | None:
    return next((c for c in status.get("conditions") or () if c.get("type") == kind), None)


@dataclass(frozen=True, slots=True)
class JobView:
    """One attempt's Job."""

    experiment_id: str
    attempt: int
    name: str
    resource_version: str
    uid: str = ""
    suspended: bool = False
    complete: bool = False
    failed_reason: str | None = None
    failed_message: str = ""
    finished_at: datetime | None = None  # completionTime, or when it was marked Failed
    deleting: bool = False
    started: bool = False  # status.startTime: it ran (or was admitted) at least once
    parked_at: datetime | None = None  # expbot suspended the gang (part of it could not be placed)
    parked_reason: str = ""
    size: int = 1  # completions: the gang's pod count (1: a single-node attempt)

    @staticmethod
    def from_raw(raw: dict[str, Any]) -> JobView | None:
        """The view of a Job object, or None if it is not one of expbot's attempts."""
        meta = raw.get("metadata") or {}
        key = _attempt_key(meta)
        if key is None:
            return None
        status = raw.get("status") or {}
        annotations = meta.get("annotations") or {}
        complete = _condition(status, "Complete")
        # FailureTarget (Kubernetes >= 1.31): the Job has decided to fail and is ending its pods; the
        # Failed condition follows only once they are gone, after their exit (143) has been seen.
        failed = next((c for c in (_condition(status, "Failed"), _condition(status, "FailureTarget"))
                       if c and c.get("status") == "True"), None)
        return JobView(
            experiment_id=key[0], attempt=key[1], name=meta.get("name", ""),
            resource_version=meta.get("resourceVersion", ""), uid=meta.get("uid", ""),
            suspended=bool((raw.get("spec") or {}).get("suspend")),
            complete=bool(complete and complete.get("status") == "True"),
            failed_reason=failed.get("reason") or "Failed" if failed else None,
            failed_message=(failed or {}).get("message", ""),
            finished_at=parse_time(status.get("completionTime") or (failed or {}).get("lastTransitionTime")),
            deleting=bool(meta.get("deletionTimestamp")),
            started=bool(status.get("startTime")),
            parked_at=parse_time(annotations.get(names.GANG_PARKED_AT)),
            parked_reason=annotations.get(names.GANG_PARKED_REASON, ""),
            size=int((raw.get("spec") or {}).get("completions") or 1),
        )


@dataclass(frozen=True, slots=True)
class Terminated:
    """The training container's end: exit code, reason, and its termination message (the log tail on error)."""

    exit_code: int
    reason: str
    message: str
    finished_at: datetime | None


@dataclass(frozen=True, slots=True)
class PodView:
    """The newest pod of one attempt's Job."""

    experiment_id: str
    attempt: int
    name: str
    created_at: datetime | None
    phase: str = "Pending"
    pod_reason: str = ""
    pod_message: str = ""
    unschedulable: str | None = None  # the scheduler's message while it cannot place the pod
    disruption: str | None = None  # DisruptionTarget reason: preempted, evicted, node gone...
    terminated: Terminated | None = None
    waiting_reason: str = ""
    waiting_message: str = ""
    running_since: datetime | None = None
    deleted: bool = False
    node: str = ""  # spec.nodeName: where the scheduler placed it ("" until then)
    index: int = 0  # its Job completion index: the rank of a gang's pod (0 for a single-node attempt)
    deleting: bool = False  # deletionTimestamp set: on its way out (e.g. the rest of a failed gang)
    unschedulable_since: datetime | None = None

    @staticmethod
    def from_raw(raw: dict[str, Any], deleted: bool = False) -> PodView | None:
        """The view of a Pod object, or None if it is not one of expbot's attempts."""
        meta = raw.get("metadata") or {}
        key = _attempt_key(meta)
        if key is None:
            return None
        status = raw.get("status") or {}
        scheduled = _condition(status, "PodScheduled")
        unschedulable = None
        if scheduled and scheduled.get("status") == "False" and scheduled.get("reason") == "Unschedulable":
            unschedulable = scheduled.get("message") or "no node can take it"
        disruption = _condition(status, "DisruptionTarget")
        disrupted = None
        if disruption and disruption.get("status") == "True":
            disrupted = ": ".join(p for p in (disruption.get("reason"), disruption.get("message")) if p)
        container = next(iter(status.get("containerStatuses") or ()), {})
        state = container.get("state") or {}
        term = state.get("terminated")
        waiting = state.get("waiting") or {}
        running = state.get("running") or {}
        return PodView(
            experiment_id=key[0], attempt=key[1], name=meta.get("name", ""),
            created_at=parse_time(meta.get("creationTimestamp")),
            phase=status.get("phase") or "Pending",
            pod_reason=status.get("reason") or "", pod_message=status.get("message") or "",
            unschedulable=unschedulable, disruption=disrupted or None,
            terminated=Terminated(
                exit_code=int(term.get("exitCode", 0)), reason=term.get("reason") or "",
                message=term.get("message") or "", finished_at=parse_time(term.get("finishedAt")),
            ) if term else None,
            waiting_reason=waiting.get("reason") or "", waiting_message=waiting.get("message") or "",
            running_since=parse_time(running.get("startedAt")) or (
                parse_time(status.get("startTime")) if status.get("phase") == "Running" else None
            ),
            deleted=deleted,
            node=(raw.get("spec") or {}).get("nodeName") or "",
            index=_index(meta), deleting=bool(meta.get("deletionTimestamp")),
            unschedulable_since=parse_time(scheduled.get("lastTransitionTime")) if unschedulable and scheduled else None,
        )


def _index(meta: dict[str, Any]) -> int:
    value = (meta.get("annotations") or {}).get(names.COMPLETION_INDEX, "0")
    return int(value) if value.isdigit() else 0


@dataclass(frozen=True, slots=True)
class WorkloadView:
    """Kueue's Workload of one Job: whether it is admitted, why it waits, why it was evicted."""

    job_name: str
    admitted: bool = False
    waiting: str = ""  # QuotaReserved=False: Kueue's own reason, e.g. insufficient unused quota
    evicted: str = ""  # Evicted=True: preempted, deactivated... (Kueue suspends the Job)

    @staticmethod
    def from_raw(raw: dict[str, Any]) -> WorkloadView | None:
        """The view of a Workload object owned by a Job, or None."""
        meta = raw.get("metadata") or {}
        owner = next((o for o in meta.get("ownerReferences") or () if o.get("kind") == "Job"), None)
        if owner is None:
            return None
        status = raw.get("status") or {}
        admitted = _condition(status, "Admitted")
        quota = _condition(status, "QuotaReserved")
        evicted = _condition(status, "Evicted")
        return WorkloadView(
            job_name=owner.get("name", ""),
            admitted=bool(admitted and admitted.get("status") == "True"),
            waiting=(quota.get("message") or quota.get("reason") or "") if quota and quota.get("status") == "False" else "",
            evicted=": ".join(p for p in (evicted.get("reason"), evicted.get("message")) if p)
            if evicted and evicted.get("status") == "True" else "",
        )

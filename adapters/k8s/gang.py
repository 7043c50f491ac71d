"""A gang's status (pure): from its Indexed Job, every pod of it and Kueue's Workload to one AttemptStatus.

The first pod that failed on its own decides the attempt (its rank and node are named); the pods the
Job controller ends because of it are casualties, never the cause. A suspended Job waits (for Kueue,
or parked by expbot because part of the gang could not be placed) or, if it had started, was evicted.
"""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta, timezone

from adapters.k8s.classify import USER_WAITING_REASONS, attempt_status
from adapters.k8s.views import JobView, PodView, WorkloadView
from core.ports import AttemptPhase, AttemptStatus

_LATEST = datetime.max.replace(tzinfo=timezone.utc)


def gang_status(job: JobView | None, pods: list[PodView], now: datetime, image_grace: timedelta,
                workload: WorkloadView | None = None) -> AttemptStatus | None:
    """What expbot should believe about one gang attempt; None if the cluster has never heard of it."""
    if job is None and not pods:
        return None
    if job is not None and job.suspended and not job.deleting:
        return _suspended(job, workload)
    cause = first_failure(pods, gone=job is None or job.deleting or job.failed_reason is not None)
    if cause is not None:
        found = attempt_status(job, cause, now, image_grace)
        assert found is not None
        where = f"rank {cause.index}" + (f" on {cause.node}" if cause.node else "")
        # The rest of the gang goes with it: expbot deletes the Job (its pods and Service follow).
        return replace(found, reason=f"{where}: {found.reason}" if found.reason else where,
                       node=cause.node or None, needs_cleanup=job is not None)
    if job is None or job.deleting or job.failed_reason is not None or job.complete:
        found = attempt_status(job, None, now, image_grace)
        if found is not None and job is not None and job.complete:
            found = replace(found, started_at=_latest_start(pods))
        return found
    return _live(job, [p for p in pods if not (p.deleted or p.deleting)], now, image_grace)


def first_failure(pods: list[PodView], gone: bool = False) -> PodView | None:
    """The pod whose failure ended the gang: the earliest to fail on its own (casualties only when `gone`)."""
    failed = [p for p in pods if _failed(p)]
    own = [p for p in failed if not _casualty(p)]
    pool = own or (failed if gone else [])
    return min(pool, key=lambda p: (_ended(p), p.index), default=None)


def park_reason(job: JobView, pods: list[PodView], now: datetime, timeout: timedelta) -> str | None:
    """Why to tear the gang down now: part of it placed, the rest unschedulable for `timeout`; else None."""
    live = [p for p in pods if not (p.deleted or p.deleting)]
    waiting = [p for p in live if p.unschedulable is not None]
    placed = [p for p in live if p.node]
    if not waiting or not placed or job.suspended:
        return None
    since = min((p.unschedulable_since or now) for p in waiting)
    if now - since < timeout:
        return None
    return (f"waiting for capacity: {waiting[0].unschedulable} ({len(placed)} of {job.size} pods of the gang "
            f"could be placed; the gang was taken down so that none holds a GPU)")


def _suspended(job: JobView, workload: WorkloadView | None) -> AttemptStatus:
    if job.parked_at is not None:
        return AttemptStatus(AttemptPhase.QUEUED, reason=job.parked_reason or "waiting for capacity for the whole gang")
    if (workload is not None and workload.evicted) or job.started:
        # Kueue took an admitted Job back (preemption, eviction): the machine's doing, not the code's.
        if workload is not None and workload.evicted:
            why, reason = workload.evicted, f"evicted by Kueue: {workload.evicted}"
        else:
            why = reason = "its Job was suspended after it had started (Kueue preemption, or by hand)"
        return AttemptStatus(AttemptPhase.LOST, reason=reason, infra=True, disruption=why, needs_cleanup=True)
    if workload is not None and workload.waiting:
        return AttemptStatus(AttemptPhase.QUEUED, reason=f"waiting for the cluster queue: {workload.waiting}")
    return AttemptStatus(AttemptPhase.QUEUED, reason="waiting for the cluster queue to admit it")


def _live(job: JobView, live: list[PodView], now: datetime, image_grace: timedelta) -> AttemptStatus:
    for pod in live:
        if pod.waiting_reason in USER_WAITING_REASONS:
            found = attempt_status(job, pod, now, image_grace)
            assert found is not None
            return replace(found, reason=f"rank {pod.index}: {found.reason}")
    waiting = [p for p in live if p.unschedulable is not None]
    if waiting:
        placed = sum(1 for p in live if p.node)
        return AttemptStatus(AttemptPhase.QUEUED, reason=(
            f"waiting for capacity: {waiting[0].unschedulable} ({placed} of {job.size} pods of the gang placed)"))
    running = [p for p in live if p.phase == "Running"]
    done = [p for p in live if p.terminated is not None and p.terminated.exit_code == 0]
    if running and len(running) + len(done) >= job.size:
        # The gang runs once its last pod does: before that no rank can get past the rendezvous. No one
        # node is where it runs: the attempt's node is recorded when it ends, the failed pod's.
        return AttemptStatus(AttemptPhase.RUNNING, started_at=_latest_start(running))
    return AttemptStatus(AttemptPhase.STARTING)


def _failed(pod: PodView) -> bool:
    if pod.terminated is not None:
        return pod.terminated.exit_code != 0 or bool(pod.disruption)
    return bool(pod.disruption) or pod.phase == "Failed" or bool(pod.pod_reason) or pod.deleted


def _casualty(pod: PodView) -> bool:
    # Ended because it was deleted (by the Job controller after another pod's failure, or by expbot)
    # with no disruption of its own to report.
    return (pod.deleting or pod.deleted) and not pod.disruption


def _ended(pod: PodView) -> datetime:
    return (pod.terminated.finished_at if pod.terminated else None) or _LATEST


def _latest_start(pods: list[PodView]) -> datetime | None:
    starts = [p.running_since for p in pods if p.running_since]
    return max(starts) if starts else None

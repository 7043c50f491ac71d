"""From what the cluster shows of an attempt's Job and pod to expbot's AttemptStatus (pure)."""
from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta

from adapters.k8s.views import JobView, PodView
from core.ports import AttemptPhase, AttemptStatus

# The pod will never start, but Kubernetes keeps retrying: after a grace this is the user's error.
USER_WAITING_REASONS = frozenset({
    "ImagePullBackOff", "ErrImagePull", "InvalidImageName", "ErrImageNeverPull",
    "CreateContainerConfigError", "CreateContainerError",
})
_HOPELESS_AT_ONCE = frozenset({"InvalidImageName", "ErrImageNeverPull"})
# Pod-level reasons that mean the machine, not the code, ended the pod.
INFRA_POD_REASONS = frozenset({"Evicted", "Preempting", "NodeLost", "NodeShutdown", "Terminated", "UnexpectedAdmissionError"})
_REASON_LINE = 300  # characters of the termination message's last line kept in the reason


def attempt_status(
    job: JobView | None, pod: PodView | None, now: datetime, image_grace: timedelta
) -> AttemptStatus | None:
    """What expbot should believe about one attempt; None if the cluster has never heard of it."""
    found = _status(job, pod, now, image_grace)
    if found is None or pod is None or not pod.node:
        return found
    return replace(found, node=pod.node)  # also while it runs: where it ran is recorded with the attempt


def _status(job: JobView | None, pod: PodView | None, now: datetime, image_grace: timedelta) -> AttemptStatus | None:
    if job is None and pod is None:
        return None
    started = pod.running_since if pod else None
    if job is not None and job.failed_reason == "DeadlineExceeded":
        return AttemptStatus(
            AttemptPhase.EXITED, reason="max runtime reached (the Job's activeDeadlineSeconds)",
            deadline_exceeded=True, started_at=started, ended_at=job.finished_at,
        )
    if pod is not None and pod.pod_reason == "DeadlineExceeded":
        # The kubelet ended it at the pod's activeDeadlineSeconds (whatever its container's exit).
        return AttemptStatus(
            AttemptPhase.EXITED, exit_code=pod.terminated.exit_code if pod.terminated else None,
            reason="max runtime reached (the pod's activeDeadlineSeconds)", deadline_exceeded=True,
            started_at=started, ended_at=(pod.terminated.finished_at if pod.terminated else None) or now,
        )
    if pod is not None and pod.terminated is not None:
        return _terminated(pod, started)
    if job is not None and job.complete:
        return AttemptStatus(AttemptPhase.EXITED, exit_code=0, started_at=started, ended_at=job.finished_at)
    if pod is not None and (pod.disruption or pod.deleted or pod.phase == "Failed"):
        reason = pod.disruption or _join(pod.pod_reason, pod.pod_message) or "pod deleted before it finished"
        return AttemptStatus(AttemptPhase.LOST, reason=reason, infra=True, started_at=started, ended_at=now)
    if job is None or job.deleting:
        return AttemptStatus(AttemptPhase.LOST, reason="its Job was deleted outside expbot", infra=True,
                             started_at=started, ended_at=now, needs_cleanup=job is not None)
    if job.failed_reason is not None:
        return AttemptStatus(AttemptPhase.LOST, reason=_join(job.failed_reason, job.failed_message), infra=True,
                             started_at=started, ended_at=job.finished_at or now)
    if pod is None:
        if job.suspended:
            return AttemptStatus(AttemptPhase.QUEUED, reason="waiting for the cluster queue to admit it")
        return AttemptStatus(AttemptPhase.STARTING)
    if pod.waiting_reason in USER_WAITING_REASONS:
        waited = now - pod.created_at if pod.created_at else timedelta(0)
        reason = _join(pod.waiting_reason, pod.waiting_message)
        if waited >= image_grace or pod.waiting_reason in _HOPELESS_AT_ONCE:
            return AttemptStatus(AttemptPhase.EXITED, reason=reason, ended_at=now, needs_cleanup=True)
        return AttemptStatus(AttemptPhase.STARTING, reason=reason)
    if pod.phase == "Running":
        return AttemptStatus(AttemptPhase.RUNNING, started_at=started)
    if pod.unschedulable is not None:
        return AttemptStatus(AttemptPhase.QUEUED, reason=f"waiting for capacity: {pod.unschedulable}")
    return AttemptStatus(AttemptPhase.STARTING)


def _terminated(pod: PodView, started: datetime | None) -> AttemptStatus:
    # Facts only: how the container ended and what the cluster says of the pod. Whether a disruption
    # outweighs the container's own end (exit 0, OOMKilled) is core.policy's to judge.
    term = pod.terminated
    assert term is not None
    oom = term.reason == "OOMKilled"
    disruption = pod.disruption or (_join(pod.pod_reason, pod.pod_message) if pod.pod_reason in INFRA_POD_REASONS else "")
    if oom:
        reason = f"OOMKilled: the container used more than its memory limit (exit {term.exit_code})"
    elif disruption:
        reason = disruption
    else:
        reason = _join(term.reason if term.reason not in ("Error", "Completed") else "", _last_line(term.message))
    return AttemptStatus(
        AttemptPhase.EXITED, exit_code=term.exit_code, reason=reason, infra=bool(disruption), oom_killed=oom,
        started_at=started, ended_at=term.finished_at, message=term.message, disruption=disruption,
    )


def _last_line(text: str) -> str:
    # With FallbackToLogsOnError the message is up to 80 log lines: the reason names the last one;
    # the whole message goes to the policy as evidence.
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][:_REASON_LINE] if lines else ""


def _join(*parts: str) -> str:
    return ": ".join(p for p in parts if p)

"""Deterministic names and labels of expbot's Kubernetes objects (one name per attempt: no duplicates)."""
from __future__ import annotations

MANAGED_BY = "app.kubernetes.io/managed-by"
MANAGER = "expbot"
EXPERIMENT = "expbot.dev/experiment-id"
ATTEMPT = "expbot.dev/attempt"
OWNER = "expbot.dev/owner"
PROJECT = "expbot.dev/project"
NAME = "expbot.dev/experiment"
KUEUE_QUEUE = "kueue.x-k8s.io/queue-name"
MANAGED_SELECTOR = f"{MANAGED_BY}={MANAGER}"
COMPLETION_INDEX = "batch.kubernetes.io/job-completion-index"  # an Indexed Job's pod: its rank
# On a gang's Job that expbot suspended because part of it could not be placed (gang_timeout).
GANG_PARKED_AT = "expbot.dev/gang-parked-at"
GANG_PARKED_REASON = "expbot.dev/gang-parked-reason"


def job_name(experiment_id: str, attempt: int) -> str:
    """`expbot-<id8>-a<n>`: its pods are `<job>-<suffix>`, which idle detection matches on."""
    return f"expbot-{experiment_id[:8]}-a{int(attempt)}"


def service_name(experiment_id: str, attempt: int) -> str:
    """A gang's headless Service: its Job's name, so rank 0 is `<job>-0.<job>` (hostname.subdomain)."""
    return job_name(experiment_id, attempt)


def master_addr(experiment_id: str, attempt: int) -> str:
    """Rank 0's stable DNS name inside the namespace (an Indexed Job's pod hostname is `<job>-<index>`)."""
    return f"{job_name(experiment_id, attempt)}-0.{service_name(experiment_id, attempt)}"


def pvc_name(experiment_id: str) -> str:
    """The experiment's checkpoint volume claim, shared by all its attempts."""
    return f"expbot-ckpt-{experiment_id}"


def label_value(text: str) -> str:
    """A label value from free text: at most 63 of [A-Za-z0-9_.-], alphanumeric at both ends."""
    # isascii(): isalnum() alone lets "ë" or "²" through, which the API rejects in a label.
    cleaned = "".join(c if (c.isascii() and c.isalnum()) or c in "-_." else "_" for c in text)[:63]
    return cleaned.strip("-_.")

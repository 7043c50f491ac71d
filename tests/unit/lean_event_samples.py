"""One event of every kind, with the fields that change its description set (tests of describe)."""
from __future__ import annotations

from datetime import datetime, timezone

from core import events as ev

_AT = datetime(2026, 3, 4, 5, 6, 7, 890123, tzinfo=timezone.utc)
_ID = {"experiment_id": "e1", "experiment_name": "train-a", "occurred_at": _AT}

SAMPLES = [
    ev.ExperimentLaunched(**_ID, owner="ana", project="nlp", gpus=2, gpu_type="a100", group="sw", nodes=3),
    ev.ExperimentQueued(**_ID, reason="waiting for 2 GPUs"),
    ev.AttemptStarted(**_ID, attempt=2, resumed_from="ckpt-000080.json"),
    ev.AttemptRunning(**_ID, attempt=2),
    ev.AttemptEnded(**_ID, attempt=2, exit_code=137, reason="preempted", failure_class="infra", node="n1"),
    ev.RestartScheduled(**_ID, next_attempt=3, delay_seconds=95.5, budget="infra", reason="preempted",
                        resume_from="ckpt-1", avoid_nodes=["n1", "n2"], note="n3 too", spent=2, limit=10),
    ev.NodeUnhealthy(**_ID, node="n1", experiments=3, faults=4, window_hours=24, last_reason="Xid 79"),
    ev.ExperimentSucceeded(**_ID, attempts=1),
    ev.ExperimentFailed(**_ID, reason="exit 1", exit_code=1, attempts=3),
    ev.StopRequested(**_ID, by="U1", reason="enough", attempt=2, grace_seconds=30.0),
    ev.ExperimentStopped(**_ID, by="U1", reason="stopped by U1"),
    ev.ApprovalRequested(**_ID, owner="ana", launch_id="l1", currency="EUR", projected_cost=1234.5,
                         budgets=[{"scope": "project", "name": "nlp", "limit": 100, "spent": 20.5, "committed": 3}],
                         expires_at=_AT),
    ev.LaunchApproved(**_ID, by="U2"),
    ev.LaunchDenied(**_ID, by="U2", reason="too dear"),
    ev.IdleWarning(**_ID, owner="ana", idle_minutes=30, grace_minutes=30, auto_stop=False),
    ev.IdleKept(**_ID, by="ana", until=_AT, hours=2.0),
]

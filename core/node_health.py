"""Sick nodes: one that failed attempts of several experiments with hardware or network faults.

One experiment failing twice on a node may be its own doing; several different experiments failing
there within a window point at the node. Such a node is reported once per window (an event for the
operations channel, and an audit entry that the daily digest reads), so somebody can drain it.
"""
from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from core import events
from core.model import Experiment, FailureClass
from core.ports import NodeFault, UnitOfWork

AUDIT_NODE = "node-unhealthy"
AUDIT_CORDON = "node-cordon"
log = logging.getLogger(__name__)
NODE_FAULTS = frozenset({FailureClass.HARDWARE, FailureClass.NETWORK})


@dataclass(frozen=True)
class NodeHealthConfig:
    """When a node counts as sick: faults of `experiments` different experiments within `window`."""

    experiments: int = 3
    window: timedelta = timedelta(hours=24)


def report_sick_node(uow: UnitOfWork, experiment: Experiment, config: NodeHealthConfig, now: datetime) -> str | None:
    """After the current attempt ended: report its node once if it is now sick (in this unit of work).

    Returns the node when it was reported now (to be cordoned after the commit, where configured).
    """
    attempt = experiment.current_attempt
    if config.experiments <= 0 or attempt is None or not attempt.node or attempt.failure_class not in NODE_FAULTS:
        return None
    node, since = attempt.node, now - config.window
    faults = uow.experiments.failures_on_node(node, since, [str(c) for c in NODE_FAULTS])
    # The attempt that just ended is not stored yet: it counts too.
    faults = [f for f in faults if (f.experiment_id, f.attempt) != (experiment.id, attempt.number)]
    faults.append(NodeFault(experiment.id, attempt.number, attempt.ended_at or now, attempt.reason))
    experiments = {f.experiment_id for f in faults}
    if len(experiments) < config.experiments or _reported_since(uow, node, since):
        return None
    last = max(faults, key=lambda f: f.ended_at)
    hours = int(config.window.total_seconds() // 3600)
    experiment.events.append(events.NodeUnhealthy(
        experiment_id=experiment.id, experiment_name=experiment.name, occurred_at=now, node=node,
        experiments=len(experiments), faults=len(faults), window_hours=hours, last_reason=last.reason,
    ))
    uow.audit.record(at=now, actor="expbot", action=AUDIT_NODE, experiment_id=experiment.id,
                     detail={"node": node, "experiments": len(experiments), "faults": len(faults),
                             "window_hours": hours, "last_reason": last.reason[:300]})
    return node


def cordon(uow_factory: Callable[[], UnitOfWork], cordon_node: Callable[[str], None], node: str,
           experiment_id: str, now: datetime) -> None:
    """Cordon a node just reported sick, and audit it (what failed too: a failure must not pass unseen)."""
    try:
        cordon_node(node)
        detail = {"node": node, "cordoned": True}
    except Exception as e:  # e.g. the ClusterRole is missing: the report stands, the node stays open
        log.warning("could not cordon sick node %s: %s", node, e)
        detail = {"node": node, "cordoned": False, "error": str(e)[:300]}
    with uow_factory() as uow:
        uow.audit.record(at=now, actor="expbot", action=AUDIT_CORDON, experiment_id=experiment_id, detail=detail)
        uow.commit()


def _reported_since(uow: UnitOfWork, node: str, since: datetime) -> bool:
    return any(e["detail"].get("node") == node and e["at"] >= since for e in uow.audit.entries(action=AUDIT_NODE))

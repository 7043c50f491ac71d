"""Node evidence: which nodes lost GPUs (allocatable nvidia.com/gpu below capacity), and since when.

When a GPU dies (Xid 79, uncorrectable ECC) the NVIDIA device plugin marks it unhealthy and the
kubelet lowers the node's allocatable count. An attempt that failed on such a node while it ran
failed with its machine: the backend says so as a fact (infra, the node and the counts in the reason).
Nodes are cluster-scoped: watching them is opt-in (`watch_nodes`) and needs a ClusterRole that may
get, list and watch nodes.
"""
from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timezone
from typing import Any

from adapters.k8s.config import GPU_RESOURCE
from core.ports import AttemptPhase, AttemptStatus

# A node short of GPUs when expbot first listed them: since when is unknown, so it is no evidence
# against an attempt (the scheduler placed the attempt on the GPUs that were healthy then).
_UNKNOWN = datetime.min.replace(tzinfo=timezone.utc)


@dataclass(frozen=True, slots=True)
class NodeView:
    """One node's GPU counts."""

    name: str
    gpu_capacity: int
    gpu_allocatable: int

    @staticmethod
    def from_raw(raw: dict[str, Any]) -> NodeView | None:
        """The view of a Node object, or None when it has no name."""
        name = (raw.get("metadata") or {}).get("name")
        if not name:
            return None
        status = raw.get("status") or {}
        capacity = _count((status.get("capacity") or {}).get(GPU_RESOURCE))
        return NodeView(name, capacity, _count((status.get("allocatable") or {}).get(GPU_RESOURCE), capacity))

    @property
    def short(self) -> bool:
        """Whether some of its GPUs are not allocatable (the device plugin found them unhealthy)."""
        return self.gpu_allocatable < self.gpu_capacity


class NodeHealth:
    """The GPU counts of every node and when expbot first saw each short of GPUs; a Watcher folds Nodes in."""

    def __init__(self, now: Callable[[], datetime]) -> None:
        self._now = now
        self._lock = threading.Lock()
        self._views: dict[str, NodeView] = {}
        self._short_since: dict[str, datetime] = {}
        self.synced = {"nodes": threading.Event()}

    def apply(self, kind: str, event_type: str, raw: dict[str, Any]) -> None:
        """Fold one watch event in."""
        view = NodeView.from_raw(raw)
        if view is None:
            return
        with self._lock:
            if event_type == "DELETED":
                self._views.pop(view.name, None)
                self._short_since.pop(view.name, None)
            else:
                self._see(view, self._now())

    def replace(self, kind: str, raws: list[dict[str, Any]]) -> None:
        """A fresh list of every node."""
        with self._lock:
            first = not self.synced["nodes"].is_set()
            at = _UNKNOWN if first else self._now()
            fresh = {v.name: v for v in map(NodeView.from_raw, raws) if v}
            for gone in self._views.keys() - fresh.keys():
                self._short_since.pop(gone, None)
            self._views = {}
            for view in fresh.values():
                self._see(view, at)
        self.synced["nodes"].set()

    def lost_gpus(self, node: str, since: datetime) -> NodeView | None:
        """The node's view when it has been short of GPUs since some time at or after `since`."""
        with self._lock:
            view, seen = self._views.get(node), self._short_since.get(node)
        return view if view is not None and view.short and seen is not None and seen >= since else None

    def _see(self, view: NodeView, at: datetime) -> None:
        self._views[view.name] = view
        if not view.short:
            self._short_since.pop(view.name, None)
        else:
            self._short_since.setdefault(view.name, at)


def with_node_evidence(status: AttemptStatus, health: NodeHealth, since: datetime | None) -> AttemptStatus:
    """`status`, marked infrastructure when it exited non-zero and its node lost GPUs after `since` (its pod's creation)."""
    if (status.phase != AttemptPhase.EXITED or status.exit_code in (0, None) or status.infra
            or status.oom_killed or status.deadline_exceeded or not status.node or since is None):
        return status
    view = health.lost_gpus(status.node, since)
    if view is None:
        return status
    lost = (f"node {view.name} lost GPUs while it ran ({view.gpu_allocatable} of {view.gpu_capacity} "
            f"{GPU_RESOURCE} allocatable)")
    return replace(status, infra=True, reason=f"{lost}: {status.reason}" if status.reason else lost)


def _count(value: Any, default: int = 0) -> int:
    try:
        return int(str(value)) if value is not None else default
    except ValueError:
        return default

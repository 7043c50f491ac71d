"""The calibration's clock and bookkeeping: simulated time over the wall clock, and what pods report."""
from __future__ import annotations

import heapq
import json
import math
import queue
import re
import sys
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

from kubernetes import watch

from adapters.k8s import names
from benchmarks.throughput.replay import Incident
from benchmarks.throughput.sim import Pod
from core.progress import ProgressReport


def checkpoint_path(progress: float) -> str:
    """Where a pod says its checkpoint at `progress` simulated seconds is."""
    return f"/checkpoints/ckpt-{int(progress):08d}.pt"


class RealTime:
    """sim.Sim's interface (t, at) over the wall clock: t = compression x real seconds since start."""

    def __init__(self, compression: float) -> None:
        self.compression = compression
        self.t0 = time.monotonic()
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._seq = 0
        self._lock = threading.Lock()
        self.late = 0.0  # the most a callback ran after its time (simulated seconds)

    @property
    def t(self) -> float:
        return (time.monotonic() - self.t0) * self.compression

    def at(self, t: float, fn: Callable, *args: object) -> None:
        with self._lock:
            self._seq += 1
            heapq.heappush(self._heap, (t, self._seq, fn, args))

    def due(self) -> list[tuple[Callable, tuple]]:
        now, out = self.t, []
        with self._lock:
            while self._heap and self._heap[0][0] <= now:
                due, _, fn, args = heapq.heappop(self._heap)
                self.late = max(self.late, now - due)
                out.append((fn, args))
        return out

    def real_seconds(self, sim_seconds: float) -> float:
        return max(0.0, sim_seconds) / self.compression



def progress_reports(pods: dict[tuple[str, int], Pod], t: float,
                     reported: dict[tuple[str, int], float]) -> list[ProgressReport]:
    """A heartbeat from every running pod that is not hung, with its newest checkpoint when new."""
    now = datetime.now(timezone.utc)
    reports = []
    for (experiment_id, attempt), pod in pods.items():
        if pod.state != "running" or pod.hang_at is not None or pod.kind:
            continue
        every = pod.run.item.checkpoint_every
        newest = math.floor(pod.progress(t) / every) * every
        checkpoint = None
        if newest > max(pod.p0, reported.get((experiment_id, attempt), 0.0)):
            reported[(experiment_id, attempt)] = newest
            checkpoint = checkpoint_path(newest)
        reports.append(ProgressReport(experiment_id, attempt, now, checkpoint=checkpoint,
                                      step=int(newest) if checkpoint else None))
    return reports


def pods_hit(pods: Iterable[Pod], incident: Incident) -> list[Pod]:
    """The running pods a node incident reaches: the node's, or only its GPU's for a GPU fault."""
    node = f"node-{incident.node:02d}"
    hit = [p for p in pods if p.node == node and p.state == "running" and p.hang_at is None and not p.kind]
    if incident.scope == "gpu" and incident.hang is None:
        hit = [p for p in hit if (incident.node, incident.gpu) in p.holds]
    return hit


def node_index(node: str) -> int:
    """node-07 -> 7 (-1 for a node outside the simulation's)."""
    found = re.search(r"(\d+)$", node)
    return int(found.group(1)) if found else -1


def watch_pods(core: Any, namespace: str, events: queue.Queue, stop: threading.Event) -> None:
    """List, then watch expbot's pods into `events` until `stop` (relisting after an error or 410)."""
    version = ""
    while not stop.is_set():
        try:
            if not version:
                listed = json.loads(core.list_namespaced_pod(
                    namespace, label_selector=names.MANAGED_SELECTOR, _preload_content=False).data)
                for item in listed.get("items") or ():
                    events.put(("ADDED", item))
                version = listed["metadata"]["resourceVersion"]
            w = watch.Watch()
            for event in w.stream(core.list_namespaced_pod, namespace,
                                  label_selector=names.MANAGED_SELECTOR, resource_version=version,
                                  timeout_seconds=60, deserialize=False):
                if event.get("type") == "ERROR":
                    version = ""
                    break
                obj = event.get("object") or {}
                version = (obj.get("metadata") or {}).get("resourceVersion") or version
                events.put((event["type"], obj))
                if stop.is_set():
                    w.stop()
                    return
        except Exception as e:  # noqa: BLE001 - watch again
            print(f"calibration watch: {e!r}; watching again", file=sys.stderr)
            version = ""
            stop.wait(0.2)

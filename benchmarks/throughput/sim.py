"""The simulated cluster every arm runs on: time, GPU nodes, a spot pool, pods and their fates.

Time is simulated (seconds from the start of the week). An arm sees the cluster the way its real
counterpart does: it submits pods, learns when one started, hung or ended, and may kill one.
"""
from __future__ import annotations

import heapq
import math
from dataclasses import dataclass, field
from typing import Callable, Protocol

from benchmarks.throughput.replay import GPUS_PER_NODE, NODES, WATCHDOG_LINE, WATCHDOG_S, Incident, Item, Week
from benchmarks.throughput.human import Human
from benchmarks.throughput.ledger import Ledger, Run

SPOT_PROVISION_S = 120.0  # assumption: a new spot VM joins the cluster 2 min after capacity is back
_BUG_LINES = {
    "bug": "Traceback (most recent call last):\n  File \"train.py\", line 88, in <module>\nKeyError: 'labels'",
    "oom": "torch.OutOfMemoryError: CUDA out of memory. Tried to allocate 2.00 GiB (GPU 0; 79.1 GiB total)",
}
_TRANSIENT_LINE = "OSError: [Errno 5] Input/output error: '/data/shard-00412.tar'"


class Sim:
    """A discrete-event loop: callbacks run in time order, ties in the order they were scheduled."""

    def __init__(self) -> None:
        self.t = 0.0
        self._heap: list[tuple[float, int, Callable, tuple]] = []
        self._seq = 0

    def at(self, t: float, fn: Callable, *args: object) -> None:
        """Run fn(*args) at time t (never in the past)."""
        self._seq += 1
        heapq.heappush(self._heap, (max(t, self.t), self._seq, fn, args))

    def run(self, until: float) -> None:
        """Run every callback due up to `until`."""
        while self._heap and self._heap[0][0] <= until:
            self.t, _, fn, args = heapq.heappop(self._heap)
            fn(*args)
        self.t = until


@dataclass(eq=False)
class Pod:
    """One attempt's process and the GPUs it holds."""

    run: Run
    attempt: int
    p0: float  # training progress it starts from
    submitted: float
    limit: float | None = None  # seconds it may run (the Job's activeDeadlineSeconds), counted from its start
    avoid: tuple[str, ...] = ()
    state: str = "queued"  # queued, running, ended
    node: str | None = None
    holds: list[tuple[int, int]] = field(default_factory=list)  # (node, gpu)
    started: float | None = None
    ended: float | None = None
    hang_at: float | None = None
    hang: str | None = None
    kind: str = ""  # how it ended: success, bug, oom, transient, an INFRA_KINDS entry, deadline, killed
    exit_code: int | None = None
    reason: str = ""
    infra: bool = False  # the cluster says so (DisruptionTarget): preempted, evicted, node lost
    message: str = ""
    deadline_exceeded: bool = False
    killed: bool = False
    deadline: float | None = None  # when `limit` runs out
    epoch: int = 0  # bumped when its scheduled end changes: stale end events are ignored

    def progress(self, t: float) -> float:
        """Training progress at time t."""
        if self.started is None:
            return self.p0
        return self.p0 + max(0.0, min(t, self.hang_at if self.hang_at is not None else t) - self.started)

    @property
    def gpus(self) -> int:
        return self.run.item.gpus


class Arm(Protocol):
    name: str

    def launch(self, run: Run) -> None: ...

    def pod_started(self, pod: Pod) -> None: ...

    def pod_hung(self, pod: Pod) -> None: ...

    def pod_ended(self, pod: Pod) -> None: ...


def own_ends(pod: Pod, week: Week) -> list[tuple[float, str]]:
    """When a running pod would end by itself, and how: success, bug, transient error, spot preemption."""
    item, run, t0 = pod.run.item, pod.run, pod.started
    assert t0 is not None
    ends = [(t0 + item.length - pod.p0, "success")]
    if run.bug:
        ends.append((t0 + item.bug_after, run.bug))
    if item.transient_at is not None and not run.track.transient_done and item.transient_at > pod.p0:
        ends.append((t0 + item.transient_at - pod.p0, "transient"))
    if item.spot:
        _, up_end = week.spot.up_window(item.spot_zone, t0 + item.spot_offset)
        ends.append((up_end - item.spot_offset, "preempt"))
    return ends


class World:
    """The cluster under one arm: placement, fates, incidents, and the ledger of what happened."""

    def __init__(self, week: Week, arm_factory: Callable[["World"], Arm], horizon: float) -> None:
        self.sim = Sim()
        self.week = week
        self.ledger = Ledger(week)
        self.free = [[True] * GPUS_PER_NODE for _ in range(NODES)]
        self.on_node: list[set[Pod]] = [set() for _ in range(NODES)]
        self.pending: list[Pod] = []
        self.horizon = horizon
        self.human = Human(self)
        self.arm = arm_factory(self)
        for item in week.items:
            self.sim.at(item.arrival, self._arrive, item)
        for incident in week.incidents:
            self.sim.at(incident.at, self._incident, incident)

    def run(self) -> Ledger:
        """Simulate until the horizon; the ledger holds what happened."""
        self.sim.run(self.horizon)
        self.ledger.close(self.horizon)
        return self.ledger

    def _arrive(self, item: Item) -> None:
        self.arm.launch(self.ledger.new_run(item, self.sim.t, item.bug, 0.0))

    def succeeded(self, run: Run) -> None:
        """The arm says the run finished."""
        self.ledger.run_succeeded(run, self.sim.t)

    def gave_up(self, run: Run, pod: Pod | None) -> None:
        """The arm gave up on the run (after `pod` ended, if one did): a person will notice."""
        cause = (pod.kind or pod.hang or "running") if pod is not None else "deadline"
        self.ledger.run_gave_up(run, self.sim.t, cause)
        self.human.gave_up(run, cause)

    # --- pods ------------------------------------------------------------------------------------
    def submit(self, run: Run, attempt: int, p0: float, limit: float | None = None,
               avoid: tuple[str, ...] = ()) -> Pod:
        """A new pod for the run; it starts when capacity (or a spot instance) is there."""
        pod = Pod(run, attempt, p0, self.sim.t, limit, avoid)
        run.pods.append(pod)
        if run.item.spot:
            start, _ = self.week.spot.up_window(run.item.spot_zone, self.sim.t + run.item.spot_offset)
            self.sim.at(start - run.item.spot_offset + SPOT_PROVISION_S, self._start_spot, pod)
        else:
            self.pending.append(pod)
            self._schedule()
        return pod

    def _start_spot(self, pod: Pod) -> None:
        if pod.state == "queued":
            pod.node = f"spot-{pod.run.item.index}-{pod.attempt}"
            self._start(pod)

    def _schedule(self) -> None:
        # The scheduler tries pending pods in creation order and places every one that fits
        # (kube-scheduler's greedy way, no reservation for big pods); bin-packing within a node.
        if not self.pending:
            return
        free = [sum(row) for row in self.free]
        for pod in list(self.pending):
            biggest = max(free)
            if biggest == 0:
                return
            if pod.gpus > biggest if pod.gpus <= GPUS_PER_NODE else free.count(GPUS_PER_NODE) * GPUS_PER_NODE < pod.gpus:
                continue  # cheap: most pending pods wait for more GPUs than any node has free
            nodes = self._fit(pod.gpus, free, pod.avoid)
            if nodes is None:
                continue
            self.pending.remove(pod)
            need = pod.gpus
            for n in nodes:
                for g in range(GPUS_PER_NODE):
                    if need and self.free[n][g]:
                        self.free[n][g], need = False, need - 1
                        pod.holds.append((n, g))
                free[n] = sum(self.free[n])
                self.on_node[n].add(pod)
            pod.node = f"node-{nodes[0]:02d}"
            self._start(pod)

    @staticmethod
    def _fit(gpus: int, free: list[int], avoid: tuple[str, ...]) -> list[int] | None:
        allowed = [n for n in range(NODES) if f"node-{n:02d}" not in avoid] if avoid else range(NODES)
        if gpus > GPUS_PER_NODE:
            whole = [n for n in allowed if free[n] == GPUS_PER_NODE]
            need = math.ceil(gpus / GPUS_PER_NODE)
            return whole[:need] if len(whole) >= need else None
        fits = [n for n in allowed if free[n] >= gpus]
        return [min(fits, key=lambda n: (free[n], n))] if fits else None

    def _start(self, pod: Pod) -> None:
        pod.state, pod.started = "running", self.sim.t
        pod.deadline = None if pod.limit is None else self.sim.t + pod.limit
        self.ledger.pod_started(pod, self.sim.t)
        self._plan_end(pod)
        self.arm.pod_started(pod)

    def _plan_end(self, pod: Pod) -> None:
        """Schedule the earliest of the pod's own ends: success, bug, transient error, spot preemption, deadline."""
        ends = own_ends(pod, self.week)
        if pod.deadline is not None:
            ends.append((pod.deadline, "deadline"))
        at, kind = min(ends)
        pod.epoch += 1
        self.sim.at(at, self._natural_end, pod, pod.epoch, kind)

    def _natural_end(self, pod: Pod, epoch: int, kind: str) -> None:
        if pod.state != "running" or epoch != pod.epoch:
            return
        if kind == "success":
            self.end(pod, "success", 0)
        elif kind in ("bug", "oom"):
            self.end(pod, kind, 1, message=_BUG_LINES[kind])
        elif kind == "transient":
            code = pod.run.item.transient_exit
            self.end(pod, "transient", code, message=_TRANSIENT_LINE)
        elif kind == "preempt":
            self.end(pod, "preempt", 143, reason="DisruptionTarget: spot instance reclaimed", infra=True)
        else:
            self.end(pod, pod.hang or "deadline", None, reason="DeadlineExceeded", deadline=True)

    def kill(self, pod: Pod, grace: float, reason: str) -> None:
        """Terminate a pod (SIGTERM, SIGKILL after `grace`): it ends with 143, or 137 if it hung."""
        if pod.state == "queued":
            pod.killed = True
            if pod in self.pending:
                self.pending.remove(pod)
            self.end(pod, "killed", 143, reason=reason)
            return
        if pod.state != "running" or pod.killed:
            return
        pod.killed = True
        pod.epoch += 1
        hung = pod.hang_at is not None
        self.sim.at(self.sim.t + (grace if hung else 0.0), self._killed, pod, 137 if hung else 143, reason)

    def _killed(self, pod: Pod, code: int, reason: str) -> None:
        if pod.state == "running":
            self.end(pod, pod.hang or "killed", code, reason=reason)

    def end(self, pod: Pod, kind: str, code: int | None, *, reason: str = "", message: str = "",
            infra: bool = False, deadline: bool = False) -> None:
        """The pod's process is gone: free its GPUs, book it, tell the arm."""
        pod.state, pod.ended, pod.kind, pod.exit_code = "ended", self.sim.t, kind, code
        pod.reason, pod.message, pod.infra, pod.deadline_exceeded = reason, message, infra, deadline
        pod.epoch += 1
        for n, g in pod.holds:
            self.free[n][g] = True
            self.on_node[n].discard(pod)
        self.ledger.pod_ended(pod, self.sim.t)
        self.arm.pod_ended(pod)
        self._schedule()

    # --- incidents -------------------------------------------------------------------------------
    def _incident(self, incident: Incident) -> None:
        hit = [p for p in self.on_node[incident.node] if p.state == "running" and p.hang_at is None]
        if incident.scope == "gpu" and incident.hang is None:
            hit = [p for p in hit if (incident.node, incident.gpu) in p.holds]
        for pod in hit:
            if incident.hang is not None:
                self._hang(pod, incident.hang)
            elif incident.scope == "drain":
                self.end(pod, "drain", 143, reason="DisruptionTarget: node drained for maintenance", infra=True)
            else:
                kind = "network" if incident.cause == "network" else "gpu-fault"
                self.end(pod, kind, 1, message=f"step 41210 loss 2.113\n{incident.evidence}")

    def _hang(self, pod: Pod, how: str) -> None:
        pod.hang_at, pod.hang = self.sim.t, f"hang-{how}"
        pod.epoch += 1
        if how == "watchdog":
            self.sim.at(self.sim.t + WATCHDOG_S, self._watchdog, pod, pod.epoch)
        if pod.deadline is not None:
            self.sim.at(pod.deadline, self._natural_end, pod, pod.epoch, "deadline")
        if how == "silent":
            self.human.watch_hang(pod)
        self.arm.pod_hung(pod)

    def _watchdog(self, pod: Pod, epoch: int) -> None:
        if pod.state == "running" and pod.epoch == epoch:
            self.end(pod, "hang-watchdog", 1, message=WATCHDOG_LINE)

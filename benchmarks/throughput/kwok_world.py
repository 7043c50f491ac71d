"""The calibration world: the replay's week played on the KWOK control plane, against the real expbot.

The simulation's World decides placement and runs expbot's core in simulated time; this one leaves
placement to kube-scheduler and supervision to a whole expbot (tests/k8s/harness.py: bootstrap,
SQLite, the Kubernetes backend, the leading loop) and plays, in compressed real time, everything
else the simulation plays: experiments arrive and are launched (the same `launch` line, durations
divided by the compression factor), each running pod meets the first of its scripted ends (success,
the experiment's bug, a transient error, a spot preemption) or a node incident on the node the
scheduler put it on, the person (human.py, unchanged) relaunches what expbot gave up on, and the
training process reports heartbeats and checkpoints to expbot's progress store as it goes.

How a fate reaches the pod (tests/cluster/kwok_stages.py): an exit is our
pod-container-running-failed stage (label + exit code, reason, termination message, delay 0s) patched
onto the running pod; success is pod-complete's delay patched to 0s; a preemption or a drain is an
Eviction (DisruptionTarget, exit 143 by our pod-terminate stage); a silent hang stops the reports; a
watchdog hang stops them and exits 1 with the NCCL watchdog line 10 simulated minutes later.
A spot run's pod stays ContainerCreating until its zone has capacity (pod-ready's delay patched).
Times are simulated seconds; one real second is `compression` of them.
"""
from __future__ import annotations

import queue
import re
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from kubernetes import client
from kubernetes.client.rest import ApiException

from adapters.k8s import names
from benchmarks.throughput.expbot_arm import STALL_TIMEOUT_S
from benchmarks.throughput.human import Human
from benchmarks.throughput.ledger import Ledger, Run
from benchmarks.throughput.replay import GPUS_PER_NODE, RETRYABLE_EXIT, WATCHDOG_LINE, WATCHDOG_S, Incident, Item, Week, max_runtime_for
from benchmarks.throughput.kwok_clock import RealTime, node_index, pods_hit, progress_reports, watch_pods
from benchmarks.throughput.sim import _BUG_LINES, _TRANSIENT_LINE, SPOT_PROVISION_S, Pod, own_ends
from core.model import State
from core.progress import ProgressReport

STAGE = "stage.kwok.x-k8s.io"
FAIL = "pod-container-running-failed"
REPORT_EVERY_REAL_S = 1.0  # heartbeats (and new checkpoints) of every running pod this often
_CKPT = re.compile(r"ckpt-(\d+)\.pt$")


class KwokWorld:
    """One calibration run: the week's experiments, the real expbot (`bot`, leading), the cluster (`api`)."""

    def __init__(self, week: Week, bot: Any, api: Any, namespace: str, compression: float, horizon: float,
                 log: Callable[[str], None] = print) -> None:
        self.week, self.bot, self.namespace, self.horizon, self.log = week, bot, namespace, horizon, log
        self.core = client.CoreV1Api(api)
        self.sim = RealTime(compression)
        self.ledger = Ledger(week)
        self.human = Human(self)
        self.arm = self  # Human relaunches through world.arm.launch
        self.runs: dict[str, Run] = {}
        self.pods: dict[tuple[str, int], Pod] = {}  # (experiment id, attempt) -> the pod once it ran
        self.seen: set[tuple[str, int]] = set()
        self.pod_names: dict[tuple[str, int], str] = {}
        self.free: dict[str, list[bool]] = {}
        self.events: queue.Queue = queue.Queue()
        self.pool = ThreadPoolExecutor(4, thread_name_prefix="calib-api")
        self._stop = threading.Event()
        self._reported: dict[tuple[str, int], float] = {}
        self.api_errors = 0
        for item in week.items:
            self.sim.at(item.arrival, self._arrive, item)
        for incident in week.incidents:
            self.sim.at(incident.at, self._incident, incident)

    # --- the loop ----------------------------------------------------------------------------------
    def run(self) -> Ledger:
        """Play until the horizon; the ledger holds what happened."""
        watcher = threading.Thread(target=watch_pods, args=(self.core, self.namespace, self.events, self._stop),
                                   daemon=True, name="calib-pods")
        watcher.start()
        next_poll = next_report = 0.0
        try:
            while self.sim.t < self.horizon:
                while True:
                    try:
                        kind, raw = self.events.get_nowait()
                    except queue.Empty:
                        break
                    self._pod_event(kind, raw)
                for fn, args in self.sim.due():
                    fn(*args)
                now = time.monotonic()
                if now >= next_poll:
                    self._poll_states()
                    next_poll = now + 0.5
                if now >= next_report:
                    self._report()
                    next_report = now + REPORT_EVERY_REAL_S
                time.sleep(0.02)
        finally:
            self._stop.set()
            self.pool.shutdown(wait=True, cancel_futures=True)
        return self.ledger

    def _submit(self, fn: Callable, *args: Any) -> None:
        def call() -> None:
            try:
                fn(*args)
            except ApiException as e:
                if e.status not in (404, 409, 429):
                    self.api_errors += 1
                    self.log(f"calibration: API error {e.status} {e.reason}")
            except Exception as e:  # noqa: BLE001 - counted and shown, the run goes on
                self.api_errors += 1
                self.log(f"calibration: {e!r}")
        self.pool.submit(call)

    # --- experiments -------------------------------------------------------------------------------
    def _arrive(self, item: Item) -> None:
        self.launch(self.ledger.new_run(item, self.sim.t, item.bug, 0.0))

    def launch_text(self, run: Run) -> str:
        """The sim arm's launch line with every duration compressed; spot runs go to the spot pool."""
        item, c = run.item, self.sim.compression
        gpu_type = "spot" if item.spot else "a100"
        return (f"x{item.index}-{run.number} --gpus {item.gpus} --gpu-type {gpu_type} "
                f"--max-runtime {max_runtime_for(item) / c:.2f}s --retry-on-exit-codes {RETRYABLE_EXIT} "
                f"--stall-timeout {STALL_TIMEOUT_S / c:.2f}s -- python train.py")

    def launch(self, run: Run) -> None:
        from core import commands
        result = self.bot.bus.handle(commands.LaunchExperiment(text=self.launch_text(run), owner="researcher"))
        experiment = result.experiments[0]
        self.runs[experiment.id] = run
        run.arm["experiment_id"] = experiment.id

    def _poll_states(self) -> None:
        open_runs = {i: r for i, r in self.runs.items() if r.outcome is None}
        if not open_runs:
            return
        with self.bot.uow_factory() as uow:
            states = {i: uow.experiments.get(i) for i in open_runs}
        for experiment_id, experiment in states.items():
            run = open_runs[experiment_id]
            if experiment is None:
                continue
            if experiment.state == State.SUCCEEDED:
                self.ledger.run_succeeded(run, self.sim.t)
            elif experiment.state in (State.FAILED, State.STOPPED, State.REJECTED):
                pod = run.pods[-1] if run.pods else None
                cause = (pod.kind or pod.hang or "running") if pod is not None else "deadline"
                self.ledger.run_gave_up(run, self.sim.t, cause)
                self.human.gave_up(run, cause)

    # --- pods --------------------------------------------------------------------------------------
    def _pod_event(self, kind: str, raw: dict[str, Any]) -> None:
        meta, spec, status = raw.get("metadata") or {}, raw.get("spec") or {}, raw.get("status") or {}
        labels = meta.get("labels") or {}
        try:
            key = (labels[names.EXPERIMENT], int(labels[names.ATTEMPT]))
        except (KeyError, ValueError):
            return
        run = self.runs.get(key[0])
        if run is None:
            return
        self.pod_names[key] = meta["name"]
        phase = status.get("phase")
        if key not in self.seen and kind != "DELETED":
            self.seen.add(key)
            if run.item.spot and phase == "Pending":
                self._hold_spot(run, meta["name"])
        pod = self.pods.get(key)
        if pod is None and phase == "Running" and kind != "DELETED" and spec.get("nodeName"):
            self._started(key, run, raw)
        elif pod is not None and pod.state == "running" and (phase in ("Succeeded", "Failed") or kind == "DELETED"):
            self._ended(pod, raw)

    def _hold_spot(self, run: Run, name: str) -> None:
        """A spot pod becomes Running when its zone next has capacity, plus the provisioning time."""
        item, t = run.item, self.sim.t
        up, _ = self.week.spot.up_window(item.spot_zone, t + item.spot_offset)
        wait = self.sim.real_seconds(up - item.spot_offset + SPOT_PROVISION_S - t)
        value = f"{wait:.3f}s"
        self._submit(self.core.patch_namespaced_pod, name, self.namespace, {"metadata": {"annotations": {
            f"pod-ready.{STAGE}/delay": value, f"pod-ready.{STAGE}/jitter-delay": value}}})

    def _started(self, key: tuple[str, int], run: Run, raw: dict[str, Any]) -> None:
        env = {e.get("name"): e.get("value") or "" for e in raw["spec"]["containers"][0].get("env") or ()}
        resume = env.get("EXPBOT_RESUME_FROM", "")
        found = _CKPT.search(resume)
        if found:
            p0 = float(found.group(1))
        elif run.item.self_resume:
            p0 = self.ledger.newest_checkpoint(run.track, self.sim.t)
        else:
            p0 = run.start_progress
        pod = Pod(run, key[1], p0, self.sim.t)
        pod.state, pod.started, pod.node = "running", self.sim.t, raw["spec"]["nodeName"]
        free = self.free.setdefault(pod.node, [True] * GPUS_PER_NODE)
        for g in range(GPUS_PER_NODE):  # the device plugin's part: which GPUs of the node it holds
            if len(pod.holds) < pod.gpus and free[g]:
                free[g] = False
                pod.holds.append((node_index(pod.node), g))
        run.pods.append(pod)
        self.pods[key] = pod
        self.ledger.pod_started(pod, self.sim.t)
        self._plan_end(pod)

    def _plan_end(self, pod: Pod) -> None:
        """The pod's own ends, as the simulation plans them (the deadline is the pod's activeDeadlineSeconds)."""
        at, kind = min(own_ends(pod, self.week))
        self.sim.at(at, self._natural_end, pod, kind)

    def _natural_end(self, pod: Pod, kind: str) -> None:
        if pod.state != "running" or pod.kind or pod.hang_at is not None:
            return
        if kind == "success":
            pod.kind = "success"
            self._patch(pod, {"metadata": {"annotations": {f"pod-complete.{STAGE}/delay": "0s",
                                                            f"pod-complete.{STAGE}/jitter-delay": "0s"}}})
        elif kind in ("bug", "oom"):
            self._fail(pod, kind, 1, _BUG_LINES[kind])
        elif kind == "transient":
            self._fail(pod, kind, pod.run.item.transient_exit, _TRANSIENT_LINE)
        elif kind == "preempt":
            self._evict(pod, "preempt")

    def _patch(self, pod: Pod, body: dict[str, Any]) -> None:
        self._submit(self.core.patch_namespaced_pod, self.pod_names[(pod.run.arm["experiment_id"], pod.attempt)],
                     self.namespace, body)

    def _fail(self, pod: Pod, kind: str, code: int, message: str) -> None:
        pod.kind = kind
        self._patch(pod, {"metadata": {
            "labels": {f"{FAIL}.{STAGE}": "true"},
            "annotations": {f"{FAIL}.{STAGE}/delay": "0s", f"{FAIL}.{STAGE}/jitter-delay": "0s",
                            f"{FAIL}.{STAGE}/reason": "Error", f"{FAIL}.{STAGE}/exit-code": str(code),
                            f"{FAIL}.{STAGE}/message": message, f"pod-complete.{STAGE}/weight": "0"}}})

    def _evict(self, pod: Pod, kind: str) -> None:
        pod.kind = kind
        name = self.pod_names[(pod.run.arm["experiment_id"], pod.attempt)]
        body = client.V1Eviction(metadata=client.V1ObjectMeta(name=name, namespace=self.namespace))
        self._submit(self.core.create_namespaced_pod_eviction, name, self.namespace, body)

    def kill(self, pod: Pod, grace: float, reason: str) -> None:
        """A person kills a silent pod (kubectl delete pod): exit 143 after SIGTERM."""
        if pod.state == "running" and not pod.killed:
            pod.killed = True
            name = self.pod_names[(pod.run.arm["experiment_id"], pod.attempt)]
            self._submit(self.core.delete_namespaced_pod, name, self.namespace)

    def _ended(self, pod: Pod, raw: dict[str, Any]) -> None:
        status = raw.get("status") or {}
        terminated = next((((c.get("state") or {}).get("terminated")) for c in status.get("containerStatuses") or ()
                           if (c.get("state") or {}).get("terminated")), None) or {}
        pod.state, pod.ended = "ended", self.sim.t
        pod.exit_code = terminated.get("exitCode")
        pod.reason = terminated.get("reason") or ""
        if not pod.kind or (pod.kind == "success" and pod.exit_code not in (0, None)):
            # Not a fate of ours: expbot (a stall, a stop) or the Job's deadline ended it.
            pod.kind = pod.hang or ("killed" if raw.get("metadata", {}).get("deletionTimestamp") else "deadline")
        for n, g in pod.holds:
            self.free[pod.node][g] = True  # type: ignore[index]
        self.ledger.pod_ended(pod, self.sim.t)

    # --- incidents and reports ---------------------------------------------------------------------
    def _incident(self, incident: Incident) -> None:
        for pod in pods_hit(self.pods.values(), incident):
            if incident.hang is not None:
                pod.hang_at, pod.hang = self.sim.t, f"hang-{incident.hang}"
                if incident.hang == "watchdog":
                    self.sim.at(self.sim.t + WATCHDOG_S, self._watchdog, pod)
                else:
                    self.human.watch_hang(pod)
            elif incident.scope == "drain":
                self._evict(pod, "drain")
            else:
                kind = "network" if incident.cause == "network" else "gpu-fault"
                self._fail(pod, kind, 1, f"step 41210 loss 2.113\n{incident.evidence}")

    def _watchdog(self, pod: Pod) -> None:
        if pod.state == "running" and not pod.kind:
            self._fail(pod, "hang-watchdog", 1, WATCHDOG_LINE)

    def _report(self) -> None:
        """Every running pod that is not hung reports: a heartbeat, with its newest checkpoint when new."""
        reports = progress_reports(self.pods, self.sim.t, self._reported)
        if reports:
            self.pool.submit(self._record, reports)

    def _record(self, reports: list[ProgressReport]) -> None:
        for report in reports:
            try:
                self.bot.backend.progress.record(report)
            except Exception as e:  # noqa: BLE001 - a failed report never stops training
                self.api_errors += 1
                self.log(f"calibration: report failed: {e!r}")

"""What a team would use instead of expbot: three controllers with their documented restart rules."""
from __future__ import annotations

import random

from benchmarks.throughput.ledger import Run
from benchmarks.throughput.replay import RETRYABLE_EXIT, max_runtime_for
from benchmarks.throughput.sim import Pod, World

JOB_SYNC_S = 1.0  # the Job controller hears of a pod's end through its watch within about a second


class PlainJob:
    """A Kubernetes Job: backoffLimit 6, backoff 10 s doubling to 6 min, every failed pod counted.

    Since Kubernetes 1.26 a pod ended by a disruption (preemption, eviction, node loss) counts
    against backoffLimit too unless a podFailurePolicy says otherwise (kubernetes.io Job docs).
    """

    name = "k8s Job"
    backoff_limit = 6
    backoff_s, backoff_cap_s = 10.0, 360.0
    ignore_disruptions = False
    fail_job_exit_codes: frozenset[int] = frozenset()
    deadline = False

    def __init__(self, world: World) -> None:
        self.world = world

    def launch(self, run: Run) -> None:
        """A person created the Job."""
        run.arm["failures"] = 0
        self._new_pod(run)

    def _new_pod(self, run: Run) -> None:
        if run.outcome is not None:
            return
        # A Job's pods run the same command: they resume only if the script finds its own checkpoints.
        newest = self.world.ledger.newest_checkpoint(run.track, self.world.sim.t)
        p0 = newest if run.item.self_resume else run.start_progress
        run.arm["pod"] = self.world.submit(run, len(run.pods) + 1, p0)

    def pod_started(self, pod: Pod) -> None:
        if self.deadline and "deadline" not in pod.run.arm:
            # activeDeadlineSeconds counts from the Job's start; under Kueue (suspended until
            # admitted) that is when it first gets its GPUs, which is when its first pod starts.
            run = pod.run
            run.arm["deadline"] = self.world.sim.t + max_runtime_for(run.item)
            self.world.sim.at(run.arm["deadline"], self._deadline_exceeded, run)

    def pod_hung(self, pod: Pod) -> None:
        """A Job cannot tell a silent process from a busy one."""

    def pod_ended(self, pod: Pod) -> None:
        if pod.run.outcome is None:
            self.world.sim.at(self.world.sim.t + JOB_SYNC_S, self._decide, pod)

    def _decide(self, pod: Pod) -> None:
        run = pod.run
        if run.outcome is not None:
            return
        if pod.kind == "success":
            self.world.succeeded(run)
            return
        if self.ignore_disruptions and pod.infra:
            self._new_pod(run)  # podFailurePolicy Ignore: not counted, replaced at once
            return
        if pod.exit_code in self.fail_job_exit_codes:
            self.world.gave_up(run, pod)  # podFailurePolicy FailJob
            return
        run.arm["failures"] += 1
        if run.arm["failures"] > self.backoff_limit:
            self.world.gave_up(run, pod)
            return
        delay = min(self.backoff_cap_s, self.backoff_s * 2 ** (run.arm["failures"] - 1))
        self.world.sim.at(self.world.sim.t + delay, self._new_pod, run)

    def _deadline_exceeded(self, run: Run) -> None:
        if run.outcome is not None:
            return
        pod: Pod = run.arm["pod"]
        self.world.gave_up(run, pod if pod.state != "ended" else None)
        self.world.kill(pod, 30.0, "DeadlineExceeded")


class JobWithPolicy(PlainJob):
    """A Job with podFailurePolicy (Ignore on DisruptionTarget, FailJob on exit 1) and activeDeadlineSeconds.

    Exit 1 is what Python exits with on an uncaught exception: listing it makes bugs fail at once,
    and with them every crash that merely looks like one (an Xid, an NCCL error).
    """

    name = "Job+podFailurePolicy"
    ignore_disruptions = True
    fail_job_exit_codes = frozenset({1})
    deadline = True


class SkyPilotManaged(PlainJob):
    """A SkyPilot managed job: unlimited recovery from infrastructure, max_restarts_on_errors 3,
    recover_on_exit_codes [75]; a failure is seen by the controller's 15 s poll plus a 5 s grace."""

    name = "SkyPilot managed"
    max_restarts_on_errors = 3
    recover_on_exit_codes = frozenset({RETRYABLE_EXIT})

    def __init__(self, world: World) -> None:
        super().__init__(world)
        self.rng = random.Random(world.week.seed * 7919 + 1)

    def pod_ended(self, pod: Pod) -> None:
        if pod.run.outcome is None:
            self.world.sim.at(self.world.sim.t + self.rng.uniform(0, 15) + 5, self._decide, pod)

    def _decide(self, pod: Pod) -> None:
        run = pod.run
        if run.outcome is not None:
            return
        if pod.kind == "success":
            self.world.succeeded(run)
        elif pod.infra or pod.exit_code in self.recover_on_exit_codes:
            self._new_pod(run)
        else:
            run.arm["failures"] += 1
            if run.arm["failures"] > self.max_restarts_on_errors:
                self.world.gave_up(run, pod)
            else:
                self._new_pod(run)

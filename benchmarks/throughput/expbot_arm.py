"""expbot as built: core's launch handler, Supervisor, policy and failure catalog, in simulated time.

Nothing of expbot's rules is re-implemented here. The simulated cluster is put behind core's
ClusterBackend port (statuses shaped as the Kubernetes backend reports them: DisruptionTarget as
`infra`, the termination message as `message`, activeDeadlineSeconds as `deadline_exceeded`), the
store behind UnitOfWork, and the clock is the simulation's. The Supervisor is run the way `serve`
runs it on Kubernetes: a pass over an experiment when the watch says it changed (about a second
later), when a restart falls due, and at the resync that first follows a possible stall.
"""
from __future__ import annotations

import itertools
import math
import random
from datetime import datetime, timedelta, timezone

from benchmarks.throughput.ledger import Run
from benchmarks.throughput.replay import GPUS_PER_NODE, NODES, RETRYABLE_EXIT, max_runtime_for
from benchmarks.throughput.sim import Pod, World
from benchmarks.throughput.store import SimDatabase, SimUnitOfWork
from core import commands, handlers
from core.cost import Prices
from core.model import State
from core.policy import DEFAULT_CATALOG, Backoff
from core.ports import AttemptLaunch, AttemptPhase, AttemptStatus, SubmitResult
from core.signatures import Catalog
from core.spec import ExperimentSpec, LaunchConfig
from core.supervisor import Supervisor

START = datetime(2026, 11, 23, tzinfo=timezone.utc)  # a Monday: the week's second 0
WATCH_S = 1.0  # the watch delivers a pod's change within about a second
RESYNC_S = 30.0  # EXPBOT_K8S_RESYNC_SECONDS: a full pass this often
STALL_TIMEOUT_S = 1800.0  # assumption: a careful user passes --stall-timeout 30m
_QUEUED = "0/16 nodes are available: 16 Insufficient nvidia.com/gpu."


class SimClock:
    """core's Clock reading the simulation's time."""

    def __init__(self, world: World) -> None:
        self.world = world

    def now(self) -> datetime:
        return START + timedelta(seconds=self.world.sim.t)


def seconds(at: datetime) -> float:
    """A core datetime as simulation seconds."""
    return (at - START).total_seconds()


class SimBackend:
    """The simulated cluster behind core's ClusterBackend port."""

    def __init__(self, world: World, arm: "ExpbotArm", discover_checkpoints: bool) -> None:
        self.world, self.arm = world, arm
        self.discover = discover_checkpoints  # False: the ablation without checkpoint discovery
        self.pods: dict[tuple[str, int], Pod] = {}

    def check_fits(self, spec: ExperimentSpec) -> str | None:
        return None if spec.gpus <= NODES * GPUS_PER_NODE else "more GPUs than the cluster has"

    def submit(self, launch: AttemptLaunch) -> SubmitResult:
        key = (launch.experiment_id, launch.attempt)
        if key not in self.pods:
            run = self.arm.runs[launch.experiment_id]
            # EXPBOT_RESUME_FROM, or the script's own files, or where the person's launch began.
            resumes = launch.resume_from is not None or run.item.self_resume
            p0 = self.world.ledger.newest_checkpoint(run.track, self.world.sim.t) if resumes else run.start_progress
            self.pods[key] = self.world.submit(run, launch.attempt, p0, launch.max_runtime.total_seconds(),
                                               launch.avoid_nodes)
        return SubmitResult(True)

    def status(self, experiment_id: str, attempt: int) -> AttemptStatus | None:
        pod = self.pods.get((experiment_id, attempt))
        if pod is None:
            return None
        if pod.state == "queued":
            return AttemptStatus(AttemptPhase.QUEUED, reason=_QUEUED)
        started = START + timedelta(seconds=pod.started)  # type: ignore[arg-type]
        if pod.state == "running":
            # Heartbeats every 30 s (examples/train_toy.py's default) until the process hangs.
            last = pod.hang_at if pod.hang_at is not None else self.world.sim.t
            return AttemptStatus(AttemptPhase.RUNNING, started_at=started, node=pod.node,
                                 last_progress_at=START + timedelta(seconds=last))
        return AttemptStatus(
            AttemptPhase.EXITED, exit_code=pod.exit_code, reason=pod.reason, infra=pod.infra, started_at=started,
            ended_at=START + timedelta(seconds=pod.ended), deadline_exceeded=pod.deadline_exceeded,  # type: ignore[arg-type]
            node=pod.node, message=pod.message,
        )

    def stop(self, experiment_id: str, attempt: int, grace: timedelta) -> None:
        pod = self.pods.get((experiment_id, attempt))
        if pod is not None:
            self.world.kill(pod, grace.total_seconds(), "stopped by expbot")

    def latest_checkpoint(self, experiment_id: str, pattern: str) -> str | None:
        newest = self.world.ledger.newest_checkpoint(self.arm.runs[experiment_id].track, self.world.sim.t)
        if not self.discover or newest <= 0:
            return None
        return f"/checkpoints/ckpt-{int(newest):08d}.pt"

    def logs(self, experiment_id: str, attempt: int, tail_lines: int | None = None) -> str:
        pod = self.pods.get((experiment_id, attempt))
        return pod.message if pod is not None else ""

    def release(self, experiment_id: str) -> None:
        """Nothing is kept between attempts in the simulation."""

    def wait_for_change(self, timeout: float) -> set[str] | None:
        return set()  # never called: the arm drives the passes itself


class ExpbotArm:
    """The expbot arm (or one of its ablations)."""

    def __init__(self, world: World, name: str = "expbot", *, catalog: Catalog = DEFAULT_CATALOG,
                 discover_checkpoints: bool = True, stall_detection: bool = True) -> None:
        self.world, self.name, self.stall = world, name, stall_detection
        self.db = SimDatabase()
        self.backend = SimBackend(world, self, discover_checkpoints)
        self.clock = SimClock(world)
        self.config = LaunchConfig()  # expbot's defaults: --max-restarts 3, --max-preemptions 10
        self.supervisor = Supervisor(
            lambda: SimUnitOfWork(self.db), self.backend, self.clock,
            backoff=Backoff(base=timedelta(seconds=10), cap=timedelta(seconds=600)),  # EXPBOT_BACKOFF_* defaults
            rng=random.Random(world.week.seed), prices=Prices(gpu_catalog=self.config.gpu_catalog),
            stop_in_background=False, catalog=catalog,
        )
        self.runs: dict[str, Run] = {}
        self._ids = (f"{n:032x}" for n in itertools.count(1))
        self._looks: set[tuple[str, float]] = set()

    def launch_text(self, run: Run) -> str:
        """The line a person types for this run."""
        item = run.item
        minutes = int(max_runtime_for(item) // 60)
        stall = f" --stall-timeout {int(STALL_TIMEOUT_S // 60)}m" if self.stall else ""
        return (f"x{item.index}-{run.number} --gpus {item.gpus} --gpu-type a100 --max-runtime {minutes}m"
                f" --retry-on-exit-codes {RETRYABLE_EXIT}{stall} -- python train.py")

    def launch(self, run: Run) -> None:
        """A person launched the run: through core's launch handler, then the supervisor starts it."""
        cmd = commands.LaunchExperiment(text=self.launch_text(run), owner="researcher")
        result = handlers.launch(cmd, SimUnitOfWork(self.db), config=self.config, backend=self.backend,
                                 clock=self.clock, new_id=lambda: next(self._ids))
        experiment_id = result.experiments[0].id
        self.runs[experiment_id] = run
        run.arm["experiment_id"] = experiment_id
        self.look(experiment_id, self.world.sim.t)

    def look(self, experiment_id: str, at: float) -> None:
        """A supervisor pass over this experiment at `at` (one per experiment and time)."""
        if (experiment_id, at) not in self._looks:
            self._looks.add((experiment_id, at))
            self.world.sim.at(at, self._pass, experiment_id, at)

    def _pass(self, experiment_id: str, at: float) -> None:
        self._looks.discard((experiment_id, at))
        due = self.supervisor.reconcile_ids({experiment_id})
        experiment = self.db.experiments[experiment_id]
        run = self.runs[experiment_id]
        if due is not None:
            self.look(experiment_id, max(self.world.sim.t, seconds(due)))
        if run.outcome is None and experiment.state == State.SUCCEEDED:
            self.world.succeeded(run)
        elif run.outcome is None and experiment.state == State.FAILED:
            self.world.gave_up(run, run.pods[-1] if run.pods else None)

    def pod_started(self, pod: Pod) -> None:
        self.look(pod.run.arm["experiment_id"], self.world.sim.t + WATCH_S)

    def pod_ended(self, pod: Pod) -> None:
        self.look(pod.run.arm["experiment_id"], self.world.sim.t + WATCH_S)

    def pod_hung(self, pod: Pod) -> None:
        """Nothing changes on the cluster; the first full pass after the stall timeout sees it."""
        if self.stall:
            tick = (math.floor((pod.hang_at + STALL_TIMEOUT_S) / RESYNC_S) + 1) * RESYNC_S  # type: ignore[operator]
            self.look(pod.run.arm["experiment_id"], tick)


def expbot_arms() -> dict[str, object]:
    """expbot and its ablations, as arm factories by name."""
    return {
        "expbot": lambda w: ExpbotArm(w),
        "expbot -ckpt discovery": lambda w: ExpbotArm(w, "expbot -ckpt discovery", discover_checkpoints=False),
        "expbot -stall detection": lambda w: ExpbotArm(w, "expbot -stall detection", stall_detection=False),
        "expbot -catalog": lambda w: ExpbotArm(w, "expbot -catalog", catalog=Catalog(defaults=())),
    }

"""The person behind every arm, modelled the same way for all: notices late, fixes bugs, relaunches."""
from __future__ import annotations

import random
from typing import TYPE_CHECKING

from benchmarks.throughput.ledger import INFRA_KINDS, Run

if TYPE_CHECKING:
    from benchmarks.throughput.sim import Pod, World

# Assumptions (no published source): a person looks at their runs a few times a day, so a failure
# or a silent hang is noticed 30 min to 8 h later; fixing a deterministic bug takes 30 min; after
# the fourth launch of one experiment they give up on it.
NOTICE_S = (1800.0, 8 * 3600.0)
FIX_S = 1800.0
MAX_LAUNCHES = 4
KILL_GRACE_S = 30.0


class Human:
    """Reacts to give-ups and to silent hangs; every reaction is a touch."""

    def __init__(self, world: "World") -> None:
        self.world = world
        self._rngs: dict[int, random.Random] = {}

    def _notice(self, run: Run) -> float:
        item = run.item
        rng = self._rngs.setdefault(item.index, random.Random(item.human_rng_seed))
        return self.world.sim.t + rng.uniform(*NOTICE_S)

    def gave_up(self, run: Run, cause: str) -> None:
        """The arm ended the run without success: noticed later, then fixed and/or relaunched."""
        self.world.sim.at(self._notice(run), self._relaunch, run, cause)

    def _relaunch(self, run: Run, cause: str) -> None:
        track = run.track
        if len(track.runs) >= MAX_LAUNCHES or track.succeeded_at is not None:
            return
        # An infrastructure touch: the give-up came from, or after, a failure the cluster caused
        # (a deadline that preemptions ran out counts; a bug's give-up never does).
        infra = run.bug is None and (cause in INFRA_KINDS or any(p.kind in INFRA_KINDS for p in run.pods))
        self.world.ledger.touch(track, self.world.sim.t, infra=infra)
        # A person relaunches from the newest checkpoint (they know where it is), the bug fixed.
        delay = FIX_S if run.bug else 0.0
        self.world.sim.at(self.world.sim.t + delay, self._launch, run)

    def _launch(self, run: Run) -> None:
        newest = self.world.ledger.newest_checkpoint(run.track, self.world.sim.t)
        new = self.world.ledger.new_run(run.item, self.world.sim.t, None, newest)
        self.world.arm.launch(new)

    def watch_hang(self, pod: "Pod") -> None:
        """A pod went silent: a person notices later and kills it, if nothing else did."""
        self.world.sim.at(self._notice(pod.run), self._kill_if_hung, pod)

    def _kill_if_hung(self, pod: "Pod") -> None:
        if pod.state == "running" and not pod.killed and pod.hang == "hang-silent":
            self.world.ledger.touch(pod.run.track, self.world.sim.t, infra=True)
            self.world.kill(pod, KILL_GRACE_S, "killed by a person: no progress for hours")

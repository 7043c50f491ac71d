"""Benchmark: 50 concurrent toy experiments on the local runner, each killed once at a random point.

Prints how many succeeded and three latencies, each excluding the configured backoff (zero here):
kill -> failure detected (recorded by the supervisor), failure detected -> next attempt's process
started (the shim's own start time), and kill -> next attempt's process started.
The kill is what a lost node looks like: SIGKILL to the attempt's process group.
Run: .venv/bin/python benchmarks/local_supervision.py [--experiments 50] [--smoke]
--smoke is a quick run (a few short experiments, no latency targets) that tests run in CI.
EXPBOT_LOCAL_CGROUPS=off measures the fallback containment (subreaper + token) instead of cgroups.
"""
from __future__ import annotations

import argparse
import json
import os
import random
import signal
import statistics
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.stats import percentile  # noqa: E402

from bot.bootstrap import bootstrap  # noqa: E402
from bot.config import Settings  # noqa: E402
from core import commands  # noqa: E402
from core.events import RestartScheduled  # noqa: E402
from core.model import TERMINAL, State  # noqa: E402


def kill_when_planned(bot, data: Path, names: list[str], plan: dict[str, float], killed_at: dict[str, datetime],
                      deadline: float) -> None:
    """SIGKILL each experiment's first attempt `plan[name]` seconds after it is RUNNING; until all end."""
    running_since: dict[str, tuple[float, int]] = {}
    next_check = 0.0
    while time.monotonic() < deadline:
        now = time.monotonic()
        # The database only every 0.2 s (and every 0.5 s once all run): ORM queries every few ms
        # would take the GIL from the supervisor under test and measure the benchmark, not expbot.
        if now >= next_check:
            next_check = now + (0.2 if len(running_since) < len(names) else 0.5)
            with bot.uow_factory() as uow:
                exps = uow.experiments.list(limit=len(names) * 2)
            if len(exps) == len(names) and all(e.state in TERMINAL for e in exps):
                return
            for exp in exps:
                if exp.name not in running_since and exp.attempts and exp.attempts[0].state == "RUNNING":
                    launch = json.loads((data / "runs" / exp.id / "attempt-1" / "launch.json").read_text())
                    running_since[exp.name] = (now, launch["pid"])
        for name, (since, pid) in running_since.items():
            if name not in killed_at and now - since >= plan[name]:
                killed_at[name] = datetime.now(timezone.utc)
                try:
                    os.killpg(pid, signal.SIGKILL)  # a lost node
                except ProcessLookupError:
                    pass
        time.sleep(0.01)


def main() -> int:
    """Run the benchmark; exit status 1 if any experiment did not succeed."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=50)
    parser.add_argument("--steps", type=int, default=120)
    parser.add_argument("--step-seconds", type=float, default=0.05)
    parser.add_argument("--timeout", type=float, default=300)
    parser.add_argument("--smoke", action="store_true", help="a quick run for CI: 6 short experiments")
    args = parser.parse_args()
    if args.smoke:
        args.experiments, args.steps = 6, 60
    os.chdir(REPO)
    data = Path(tempfile.mkdtemp(prefix="expbot-bench-"))
    settings = Settings(
        data_dir=data, local_gpus=0, backoff_base_seconds=0, backoff_cap_seconds=0,
        resync_interval_seconds=1.0, stop_grace_seconds=2,
    )
    bot = bootstrap(settings)
    rng = random.Random(42)
    names = [f"bench-{i}" for i in range(args.experiments)]
    for name in names:
        bot.bus.handle(commands.LaunchExperiment(
            text=f"{name} --max-restarts 0 -- {sys.executable} examples/train_toy.py "
                 f"--steps {args.steps} --step-seconds {args.step_seconds} --checkpoint-every 5",
            owner="bench",
        ))
    stop = threading.Event()
    supervisor = threading.Thread(target=bot.supervisor.run, args=(stop, settings.resync_interval_seconds))
    started = time.monotonic()
    supervisor.start()

    killed_at: dict[str, datetime] = {}
    run_seconds = args.steps * args.step_seconds
    kill_plan = {name: rng.uniform(0.05, 0.4) * run_seconds for name in names}
    try:
        kill_when_planned(bot, data, names, kill_plan, killed_at, started + args.timeout)
    finally:
        stop.set()
        supervisor.join(timeout=30)

    succeeded = report(bot, data, names, killed_at)
    print(f"wall time: {time.monotonic() - started:.1f} s  (data in {data})")
    return 0 if succeeded == len(names) else 1


def report(bot, data: Path, names: list[str], killed_at: dict[str, datetime]) -> int:
    """Print the outcome and the three latencies; how many experiments succeeded."""
    detect, restart, total = [], [], []
    with bot.uow_factory() as uow:
        final = uow.experiments.list(limit=len(names) * 2)
        for exp in final:
            if exp.name not in killed_at or len(exp.attempts) < 2:
                continue
            first = exp.attempts[0]
            delay = next((e.delay_seconds for e in uow.outbox.for_experiment(exp.id) if isinstance(e, RestartScheduled)), 0.0)
            launch2 = json.loads((data / "runs" / exp.id / "attempt-2" / "launch.json").read_text())
            process_started = datetime.fromisoformat(launch2["started_at"])
            detect.append((first.ended_at - killed_at[exp.name]).total_seconds())
            restart.append((process_started - first.ended_at).total_seconds() - delay)
            total.append((process_started - killed_at[exp.name]).total_seconds() - delay)
    succeeded = sum(1 for e in final if e.state == State.SUCCEEDED)
    resumed = sum(1 for e in final if len(e.attempts) > 1 and e.attempts[1].resumed_from)
    print(f"experiments: {len(names)}  killed once: {len(killed_at)}  succeeded: {succeeded}/{len(names)}  "
          f"attempt 2 resumed from a checkpoint: {resumed}")
    if detect:
        print(f"{'kill -> failure detected:':33s}p50 {statistics.median(detect)*1000:7.1f} ms  "
              f"p99 {percentile(detect, 0.99)*1000:7.1f} ms")
        for label, values in (("failure detected -> next start", restart), ("kill -> next attempt started", total)):
            print(f"{label + ':':33s}p50 {statistics.median(values)*1000:7.1f} ms  "
                  f"p99 {percentile(values, 0.99)*1000:7.1f} ms")
    return succeeded


if __name__ == "__main__":
    raise SystemExit(main())

"""`expbot ls` and `expbot status` read the embedded store without SQLAlchemy or pydantic (bot/cli_lean.py):
what they print must be byte for byte what the full path prints, on a store with every kind of experiment.

Each command runs in a process of its own, once on the lean path and once with EXPBOT_CLI_FULL_READ=1,
both with the same frozen clock (ages and runtimes would differ by the seconds between the runs).
"""
from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.cli_harness import EXPBOT, REPO

# The console script's main(), with the clock both paths read frozen; says on stderr which path read.
_FROZEN_MAIN = """
import os, sys
from datetime import datetime
import adapters.clock
frozen = datetime.fromisoformat(os.environ["FROZEN_NOW"])
adapters.clock.SystemClock.now = lambda self: frozen
sys.argv = ["expbot", *sys.argv[1:]]
from bot.cli import main
try:
    main()
finally:
    heavy = [m for m in ("sqlalchemy", "sqlmodel", "pydantic", "pydantic_settings") if m in sys.modules]
    print("\\nLOADED:" + ",".join(heavy), file=sys.stderr)
"""


def _launch(bot, text: str, owner: str = "ana"):
    from core import commands

    return bot.bus.handle(commands.LaunchExperiment(text=text, owner=owner, idempotency_key=text)).experiments


def _change(bot, name: str, change) -> None:
    """Apply domain transitions to a stored experiment and commit them, as the supervisor would."""
    with bot.uow_factory() as uow:
        exp = uow.experiments.get_by_name(name)
        change(exp)
        uow.commit()


def _seed(data_dir: Path) -> tuple[datetime, dict[str, str]]:
    """Every kind of experiment `ls` and `status` show; returns a time after all of it, and names to ids."""
    from bot.bootstrap import bootstrap
    from bot.config import load_settings
    from core.model import FailureClass

    bot = bootstrap(load_settings(data_dir=data_dir, local_gpus=0), migrate=True)
    t = datetime.now(timezone.utc)
    _launch(bot, "queued-one --project nlp --max-runtime 90m -- python train.py --lr 0.1")
    _launch(bot, "sw --sweep lr=0.1,0.01 --sweep seed=1,2,3,4,5,6 --project vision -- python train.py", owner="bo")
    _launch(bot, "gang --nodes 2 --max-restarts 5 -- torchrun train.py")
    for name in ("pending", "failed", "restarted", "restarting", "running", "stopped", "succeeded"):
        _launch(bot, f"{name} --max-runtime 3h -- python {name}.py")
    _change(bot, "pending", lambda e: e.await_approval(t))

    def attempts(e, outcomes, end_as_running=False):
        now = t
        for n, (code, failure, reason) in enumerate(outcomes):
            e.start_attempt(f"ckpt-{n:04d}.json" if n else None, now, hourly_rate=2.5)
            e.mark_running(now + timedelta(seconds=3), node=f"gpu{n}")
            now += timedelta(minutes=17, seconds=n)
            if code is None:
                return now
            e.end_attempt(code, reason, failure, now)
            if n + 1 < len(outcomes) or end_as_running:
                budget = {FailureClass.INFRA: "infra", FailureClass.USER: "user"}.get(failure, "none")
                e.schedule_restart(now + timedelta(seconds=30), budget, reason, f"ckpt-{n + 1:04d}.json", now,
                                   avoid_nodes=(f"gpu{n}",) if budget == "infra" else ())
                now += timedelta(seconds=30)
        return now

    _change(bot, "failed", lambda e: (attempts(e, [(1, FailureClass.USER, "Traceback: boom")]),
                                      e.fail("exit code 1 [/mnt/a]", t + timedelta(hours=1), exit_code=1)))
    _change(bot, "restarted", lambda e: (attempts(e, [(137, FailureClass.INFRA, "preempted"),
                                                      (1, FailureClass.USER, "NaN loss"), (1, FailureClass.USER, "NaN")]),
                                         e.fail("gave up after 3 attempts", t + timedelta(hours=3), exit_code=1)))
    _change(bot, "restarting", lambda e: attempts(e, [(143, FailureClass.INFRA, "node lost")], end_as_running=True))
    _change(bot, "running", lambda e: attempts(e, [(None, None, "")]))
    _change(bot, "stopped", lambda e: e.request_stop("U0BOSS", "stopped by U0BOSS", t))
    _change(bot, "succeeded", lambda e: (attempts(e, [(137, FailureClass.INFRA, "preempted"),
                                                      (0, FailureClass.NONE, "exited 0")]),
                                         e.succeed(t + timedelta(hours=2))))
    with bot.uow_factory() as uow:
        ids = {e.name: e.id for e in uow.experiments.list()}
    # The running attempt's launch record, as the local runner writes it (its pid long gone: not running).
    record = data_dir / "runs" / ids["running"] / "attempt-1" / "launch.json"
    record.parent.mkdir(parents=True)
    record.write_text(json.dumps({"pid": 4_000_001, "pgid": 4_000_001, "mechanism": "cgroup", "start_time": 1,
                                  "cgroup": "/sys/fs/cgroup/expbot/x", "nodes": 2, "master_port": 29500}))
    return t + timedelta(hours=5, minutes=3, seconds=7), ids


def _run(data_dir: Path, frozen: datetime, args: list[str], full: bool) -> tuple[int, str, str, str]:
    env = {k: v for k, v in __import__("os").environ.items() if not k.upper().startswith("EXPBOT_")}
    env |= {"EXPBOT_DATA_DIR": str(data_dir), "EXPBOT_LOCAL_GPUS": "0", "EXPBOT_USER": "ana",
            "FROZEN_NOW": frozen.isoformat()}
    if full:
        env["EXPBOT_CLI_FULL_READ"] = "1"
    proc = subprocess.run([sys.executable, "-c", _FROZEN_MAIN, *args], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=120)
    stderr, _, loaded = proc.stderr.rpartition("\nLOADED:")
    return proc.returncode, proc.stdout, stderr, loaded.strip()


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("lean") / "data"
    frozen, ids = _seed(data_dir)
    return data_dir, frozen, ids


NAMES = ("queued-one", "sw-1", "gang", "failed", "restarted", "restarting", "running", "stopped", "succeeded")
LISTINGS = (["ls"], ["ls", "--all"], ["ls", "--json"], ["ls", "--all", "--json"], ["ls", "--owner", "bo"],
            ["ls", "--project", "nlp", "--all"], ["ls", "--all", "--limit", "3"], ["ls", "--owner", "nobody"],
            ["ls", "--group", "sw"], ["ls", "--group", "sw", "--json"], ["ls", "-g", "nothing", "--all"])


@pytest.mark.parametrize("args", [*LISTINGS, *(["status", n] for n in NAMES), *(["status", n, "--json"] for n in NAMES)],
                         ids=lambda a: " ".join(a))
def test_lean_read_prints_what_the_full_read_prints(store, args):
    data_dir, frozen, _ = store
    lean = _run(data_dir, frozen, args, full=False)
    full = _run(data_dir, frozen, args, full=True)
    assert lean[0] == 0, lean
    assert lean[:3] == full[:3]
    assert lean[3] == "", f"the lean read loaded {lean[3]}"  # it did answer without SQLAlchemy or pydantic
    assert "sqlalchemy" in full[3]


@pytest.mark.parametrize("ref", ["pending", "sw", "no-such-thing", "id-prefix"])
def test_what_the_lean_read_leaves_to_the_full_path_reads_as_before(store, ref):
    """An approval's numbers, a sweep, an error: answered by the full path, identically."""
    data_dir, frozen, ids = store
    args = ["status", ids["restarted"][:10] if ref == "id-prefix" else ref]
    lean = _run(data_dir, frozen, args, full=False)
    full = _run(data_dir, frozen, args, full=True)
    assert lean[:3] == full[:3]
    if ref == "id-prefix":  # a unique id prefix is read lean too
        assert lean[0] == 0 and "restarted" in lean[1] and lean[3] == ""


def test_the_console_script_agrees_with_the_full_path(store):
    """The installed `expbot` itself (no frozen clock): JSON of ended experiments has nothing that ages."""
    data_dir, _, _ = store
    env = {k: v for k, v in __import__("os").environ.items() if not k.upper().startswith("EXPBOT_")}
    env |= {"EXPBOT_DATA_DIR": str(data_dir), "EXPBOT_USER": "ana"}

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([*EXPBOT, *args], cwd=REPO, env=env | extra, capture_output=True, text=True, timeout=120)

    for args in (["status", "failed", "--json"], ["status", "succeeded", "--json"]):
        lean, full = run(*args), run(*args, EXPBOT_CLI_FULL_READ="1")
        assert lean.returncode == 0 and (lean.stdout, lean.stderr) == (full.stdout, full.stderr)


@pytest.mark.parametrize("args", [["--help"], ["ls", "--limit", "5", "--owner", "ana"]], ids=" ".join)
def test_help_and_plain_options_load_no_pydantic(store, args):
    """typer would coerce every value through pydantic: plain values are taken as they are (bot/cli_params.py)."""
    data_dir, frozen, _ = store
    code, stdout, _, loaded = _run(data_dir, frozen, args, full=False)
    assert code == 0 and stdout and loaded == ""

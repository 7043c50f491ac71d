"""Gang shim: shim.py for a multi-node attempt run locally, one process group per rank.

Started like shim.py (by path, `python -I -S`, standard library only): gang_shim.py <dir> [--cgroup DIR]
-- <cmd...>. <dir>/ranks.json lists each rank's environment on top of the attempt's (the rendezvous
variables, its share of the GPUs). Containment is the attempt's, as for one process: the cgroup, the
token every rank inherits, this shim as subreaper. The ranks run as one: the first that fails ends the
attempt, the others are killed at once (a gang missing a rank can only hang), and exit.json names the
rank ("rank 1 of 2 killed by SIGKILL"); it succeeds once every rank exited 0.
"""
from __future__ import annotations

import json
import os
import signal
import sys

# The same containment, stop marker and exit record as one process: shim.py's own.
if __package__:  # imported by the runner (RANKS_FILE) or a test
    from adapters.local import shim
else:  # run by path: -I leaves the script's directory out of sys.path
    sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
    import shim  # type: ignore[no-redef]

RANKS_FILE = "ranks.json"


def _spawn(command: list[str], env: dict[str, str]) -> int:
    # A rank leads its own process group (what it starts, e.g. torchrun's workers, goes with it) but
    # stays in the attempt's cgroup and carries its token.
    return os.posix_spawnp(command[0], command, env, setpgroup=0,
                           setsigdef=[s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s])


def _start_ranks(attempt_dir: str, cgroup: str | None, command: list[str], ranks: list[dict[str, str]],
                 pids: dict[int, int]) -> None:
    """Start every rank (recorded in `pids` as it starts); a rank that cannot start ends the attempt."""
    for rank, overrides in enumerate(ranks):
        try:
            pids[_spawn(command, {**os.environ, **overrides})] = rank
        except OSError as e:
            code = 127 if isinstance(e, FileNotFoundError) else 126
            reason = f"command not found: {command[0]}" if code == 127 else f"cannot run {command[0]}: {e.strerror}"
            shim._say(f"expbot: rank {rank}: {reason}")
            shim._kill_leftovers(cgroup)  # the ranks started already
            shim._finish(attempt_dir, code, reason)


def _already_ended(left: dict[int, int]) -> list[tuple[int, int]]:
    """(rank, exit code) of the ranks of `left` that have ended too (reaped here)."""
    ended = []
    for pid in list(left):
        try:
            done, status = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            continue
        if done:
            ended.append((left.pop(pid), os.waitstatus_to_exitcode(status)))
    return ended


def wait_ranks(left: dict[int, int]) -> tuple[int, int] | None:
    """Wait until every rank of `left` (pid -> rank, emptied as they end) exited 0 (None) or one failed:
    its (rank, exit code, negative for a signal)."""
    while left:
        try:
            pid, status = os.waitpid(-1, 0)  # any child: orphans re-parented to us are reaped too
        except ChildProcessError:
            return None
        if pid not in left:
            continue
        rank, code = left.pop(pid), os.waitstatus_to_exitcode(status)
        if code != 0:
            failed = [(rank, code), *(end for end in _already_ended(left) if end[1] != 0)]
            # Ranks that ended together: the one a signal killed is the cause, the others lost their peer.
            return min(failed, key=lambda end: (end[1] >= 0, failed.index(end)))
    return None


def _drain(left: dict[int, int]) -> None:
    """Wait for the ranks of `left` to end by themselves."""
    while left:
        try:
            left.pop(os.waitpid(-1, 0)[0], None)
        except ChildProcessError:
            return


def describe(rank: int, ranks: int, code: int) -> tuple[int, str]:
    """The attempt's exit code and reason for rank `rank` ending with `code`."""
    if code < 0:
        return 128 - code, f"rank {rank} of {ranks} terminated by {shim.signal_name(-code)}"
    return code, f"rank {rank} of {ranks} exited {code}"


def main(argv: list[str]) -> None:
    """Entry point: gang_shim.py <attempt-dir> [--cgroup DIR] -- <command...>."""
    attempt_dir, cgroup, command = shim._parse(argv)
    shim._contain(cgroup)  # before anything else runs, so every rank is inside
    pids: dict[int, int] = {}
    state = {"done": False, "starting": True, "early": []}

    def on_signal(signo: int, _frame: object) -> None:
        if state["starting"]:  # kept until every rank runs, then passed to all of them
            state["early"].append(signo)
        elif not state["done"] and not os.path.exists(os.path.join(attempt_dir, shim.STOP_MARKER)):
            for pid in list(pids):
                try:
                    os.killpg(pid, signo)
                except ProcessLookupError:
                    pass

    for signo in shim.FORWARDED:
        signal.signal(signo, on_signal)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, shim.FORWARDED)
    if state["early"]:
        first = state["early"][0]
        shim._finish(attempt_dir, 128 + first, f"terminated by {shim.signal_name(first)} before the command started", first)
    try:
        with open(os.path.join(attempt_dir, RANKS_FILE), encoding="utf-8") as f:
            ranks = json.load(f)["ranks"]
    except (OSError, ValueError, KeyError, TypeError) as e:
        shim._say(f"expbot: cannot read {RANKS_FILE}: {e}")
        shim._finish(attempt_dir, 126, f"cannot read {RANKS_FILE}")
    if not command:
        shim._say("expbot: empty command")
        shim._finish(attempt_dir, 127, "empty command")
    _start_ranks(attempt_dir, cgroup, command, ranks, pids)
    state["starting"] = False
    if state["early"]:
        on_signal(state["early"][0], None)  # a signal came while the ranks were being started
    left = dict(pids)
    failed = wait_ranks(left)
    if failed is not None and os.path.exists(os.path.join(attempt_dir, shim.STOP_MARKER)):
        _drain(left)  # a stop: every rank got SIGTERM and has the runner's grace to save its work
    state["done"] = True  # pids may be reused from here on: forward nothing more
    shim._kill_leftovers(cgroup)  # the rest of the gang, at once
    if failed is None:
        shim._finish(attempt_dir, 0, "")
    code, reason = describe(failed[0], len(ranks), failed[1])
    shim._say(f"expbot: {reason}; the other ranks were ended with it")
    shim._finish(attempt_dir, code, reason, -failed[1] if failed[1] < 0 else None)


if __name__ == "__main__":
    main(sys.argv[1:])

"""Attempt shim: runs one command, passes on stop signals, and records how it ended in exit.json.

Started by the runner as a new session's leader, by path with `python -I -S`: standard library only
(the runner imports its helpers from here too). shim.py <dir> [--cgroup DIR] -- <cmd...>
Containment: it joins the attempt's cgroup first thing and is a child subreaper (double-forked
orphans stay its children); all descendants inherit EXPBOT_ATTEMPT_TOKEN. When the command ends,
what is left of the attempt is killed and reaped, then exit.json is written. It exits with the
command's code even if exit.json cannot be written: its parent still learns how the attempt ended.
"""
from __future__ import annotations

import os
import signal
import sys
import time  # only cheap imports here: every attempt starts a shim, often many at once

EXIT_FILE = "exit.json"
STOP_MARKER = "stop-requested"  # the runner signalled the whole attempt: forward nothing more
FORWARDED = (signal.SIGTERM, signal.SIGINT)
TOKEN_VAR = "EXPBOT_ATTEMPT_TOKEN"
_PR_SET_CHILD_SUBREAPER = 36
_LEFTOVER_DEADLINE = 5.0  # seconds the shim spends killing leftovers before it gives up on them


def _write_tmp(path: str | os.PathLike, data: dict, sync: bool = True) -> str:
    import json
    import threading

    # Unique per thread too: two threads of one runner may record the same file at once.
    head, name = os.path.split(os.fspath(path))
    tmp = os.path.join(head, f".{name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f)
            f.flush()
            if sync:
                os.fsync(f.fileno())
    except BaseException:
        _unlink(tmp)  # a full disk must not fill up further with half-written files
        raise
    return tmp


def _unlink(path: str) -> None:
    try:
        os.unlink(path)
    except OSError:
        pass


def write_json_atomic(path: str | os.PathLike, data: dict, sync: bool = True) -> None:
    """Write JSON so readers see the old file or the whole new one, never half of it (on disk if sync)."""
    tmp = _write_tmp(path, data, sync)
    try:
        os.replace(tmp, path)
    except BaseException:
        _unlink(tmp)
        raise


def create_json_once(path: str | os.PathLike, data: dict) -> bool:
    """Write JSON atomically only if `path` does not exist yet (safe across threads and processes)."""
    tmp = _write_tmp(path, data)
    try:
        os.link(tmp, path)
        return True
    except FileExistsError:
        return False
    finally:
        _unlink(tmp)


def signal_name(signo: int) -> str:
    """SIGTERM for 15, or "signal 99" for numbers Python does not know."""
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def token_pids(tokens: list[str]) -> dict[int, str]:
    """Live processes whose environment carries one of these attempt tokens: pid -> token."""
    wanted = {f"{TOKEN_VAR}={t}".encode(): t for t in tokens if t}
    found: dict[int, str] = {}
    if not wanted:
        return found
    key = f"{TOKEN_VAR}=".encode()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/environ", "rb") as f:
                data = f.read()  # empty for zombies and kernel threads
        except OSError:
            continue  # gone meanwhile, or not ours to read
        if key in data:
            for item in data.split(b"\0"):
                if item in wanted:
                    found[int(entry)] = wanted[item]
                    break
    return found


def cgroup_pids(cgroup: str | None) -> set[int]:
    """Every process in this cgroup and the cgroups below it (empty when it is gone)."""
    pids: set[int] = set()
    if not cgroup:
        return pids
    for dirpath, _dirs, _files in os.walk(cgroup):
        try:
            with open(os.path.join(dirpath, "cgroup.procs")) as f:
                pids.update(int(line) for line in f if line.strip())
        except (OSError, ValueError):
            continue
    return pids


def group_pids(pgid: int) -> set[int]:
    """Live processes in this process group, or whose parent is pgid (orphans a subreaper adopted)."""
    found: set[int] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/stat") as f:
                stat = f.read()
            fields = stat[stat.rindex(")") + 2:].split()
            if pgid in (int(fields[2]), int(fields[1])) and fields[0] not in ("Z", "X"):
                found.add(int(entry))
        except (OSError, ValueError, IndexError):
            continue
    return found


def _say(text: str) -> None:
    # Our stderr is output.log: on a full disk even this may fail, and that must not stop us.
    try:
        print(text, file=sys.stderr, flush=True)
    except OSError:
        pass


def _contain(cgroup: str | None) -> None:
    try:
        if cgroup:
            with open(os.path.join(cgroup, "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
    except OSError as e:
        _say(f"expbot: cannot join cgroup {cgroup} ({e.strerror}): contained by token only")
    try:
        import ctypes  # here: only the shim needs it, and only once

        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
    except (OSError, AttributeError):
        pass  # not Linux: double-forked orphans go to init, the token still finds them


def _reap_children() -> None:
    # Orphans re-parented to us (we are a subreaper) must not stay zombies.
    try:
        while os.waitpid(-1, os.WNOHANG)[0] != 0:
            pass
    except ChildProcessError:
        pass  # no children left


def _kill_leftovers(cgroup: str | None) -> None:
    # Like a container: when the main command ends, whatever of the attempt is left dies too, so
    # GPUs and checkpoints are really free once exit.json exists. The process group only as its
    # leader, so a shim run by hand never kills its caller's group.
    me = os.getpid()
    token = os.environ.get(TOKEN_VAR, "")
    deadline = time.monotonic() + _LEFTOVER_DEADLINE
    while True:
        _reap_children()
        left = cgroup_pids(cgroup) | set(token_pids([token]))
        if os.getpgrp() == me:
            left |= group_pids(me)
        left.discard(me)
        if not left:
            _leave(cgroup)
            return
        if time.monotonic() > deadline:
            return
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        time.sleep(0.01)


def _leave(cgroup: str | None) -> None:
    # Out of the emptied cgroup and remove it, so none is left behind even if no expbot runs now.
    try:
        if cgroup:
            with open(os.path.join(os.path.dirname(cgroup), "cgroup.procs"), "w") as f:
                f.write(str(os.getpid()))
            os.rmdir(cgroup)
    except OSError:
        pass  # the runner removes it once it sees the attempt over


def _finish(attempt_dir: str, exit_code: int, reason: str, signo: int | None = None) -> None:
    from datetime import datetime, timezone

    path = os.path.join(attempt_dir, EXIT_FILE)
    try:
        write_json_atomic(path, {
            "exit_code": exit_code, "reason": reason, "signal": signo,
            "ended_at": datetime.now(timezone.utc).isoformat(),
        })
    except OSError as e:
        _say(f"expbot: cannot write {path}: {e.strerror}")
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except OSError:
            pass
    os._exit(exit_code)  # the exit code carries the outcome when exit.json could not


def _parse(argv: list[str]) -> tuple[str, str | None, list[str]]:
    if len(argv) >= 3 and argv[1] == "--cgroup":
        attempt_dir, cgroup, rest = argv[0], argv[2], argv[3:]
    else:
        attempt_dir, cgroup, rest = (argv[0] if argv else ""), None, argv[1:]
    if not attempt_dir or not rest or rest[0] != "--":
        print("usage: shim.py <attempt-dir> [--cgroup DIR] -- <command...>", file=sys.stderr)
        sys.exit(2)
    return attempt_dir, cgroup, rest[1:]


def _start(attempt_dir: str, command: list[str]) -> int:
    try:
        # Same stdio (output.log), environment, directory and process group as the shim. Python
        # ignores SIGPIPE and SIGXFSZ: the command gets their defaults back, as with subprocess.
        return os.posix_spawnp(command[0], command, os.environ,
                               setsigdef=[s for s in (signal.SIGPIPE, getattr(signal, "SIGXFSZ", None)) if s])
    except OSError as e:
        code, reason = ((127, f"command not found: {command[0]}") if isinstance(e, FileNotFoundError)
                        else (126, f"permission denied: {command[0]}") if isinstance(e, PermissionError)
                        else (126, f"cannot run {command[0]}: {e.strerror}"))
        _say(f"expbot: {reason}")
        _finish(attempt_dir, code, reason)
    raise AssertionError("unreachable: _finish exits")


def _wait(child: int) -> int:
    # Wait for any child, not just the command: orphans re-parented to us are reaped as they die.
    while True:
        try:
            pid, status = os.waitpid(-1, 0)  # PEP 475: retried after a signal handler runs
        except ChildProcessError:
            return 0  # cannot happen while the command is our child
        if pid == child:
            return os.waitstatus_to_exitcode(status)


def main(argv: list[str]) -> None:
    """Entry point: shim.py <attempt-dir> [--cgroup DIR] -- <command...>."""
    attempt_dir, cgroup, command = _parse(argv)
    _contain(cgroup)  # before anything else runs, so every process of the attempt is inside
    child: int | None = None
    done = False
    early: list[int] = []

    def on_signal(signo: int, _frame: object) -> None:
        if child is None:
            early.append(signo)
        elif not done and not os.path.exists(os.path.join(attempt_dir, STOP_MARKER)):
            try:
                os.kill(child, signo)
            except ProcessLookupError:
                pass

    for signo in FORWARDED:
        signal.signal(signo, on_signal)
    # The runner starts us with these blocked, so a stop during interpreter start-up waits here.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    if early:
        _finish(attempt_dir, 128 + early[0], f"terminated by {signal_name(early[0])} before the command started", early[0])
    if not command:
        _say("expbot: empty command")
        _finish(attempt_dir, 127, "empty command")
    child = _start(attempt_dir, command)
    if early:
        # A signal came while the command was being started: it may have missed it.
        os.kill(child, early[0])
    code = _wait(child)
    done = True  # its pid may be reused from here on: forward nothing more
    _kill_leftovers(cgroup)
    if code < 0:
        _finish(attempt_dir, 128 - code, f"terminated by {signal_name(-code)}", -code)
    _finish(attempt_dir, code, "")


if __name__ == "__main__":
    main(sys.argv[1:])

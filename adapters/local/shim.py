"""Attempt shim: runs one command, passes on stop signals, and records how it ended in exit.json.

The runner starts it as the leader of a new session, by file path and with `python -I`, so it
needs nothing but the standard library. Layout it writes into the attempt directory:
exit.json (atomic) once the command has ended and its leftover processes are gone.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from datetime import datetime, timezone
from pathlib import Path

EXIT_FILE = "exit.json"
# The runner creates this before signalling the whole process group, so the shim knows the
# command got the signal too and must not send it a second one.
STOP_MARKER = "stop-requested"
FORWARDED = (signal.SIGTERM, signal.SIGINT)


def write_json_atomic(path: Path, data: dict) -> None:
    """Write JSON so readers see the old file or the whole new one, never half of it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as f:
        json.dump(data, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def signal_name(signo: int) -> str:
    """SIGTERM for 15, or "signal 99" for numbers Python does not know."""
    try:
        return signal.Signals(signo).name
    except ValueError:
        return f"signal {signo}"


def _kill_leftovers() -> None:
    # Like a container: when the main command ends, whatever it left running in the group dies
    # too, so GPUs are really free once exit.json exists. Only as group leader, so a shim run by
    # hand never kills its caller's group.
    me = os.getpid()
    if os.getpgrp() != me:
        return
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == me:
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
            pgrp = int(stat[stat.rindex(")") + 2:].split()[2])
            if pgrp == me:
                os.kill(int(entry), signal.SIGKILL)
        except (OSError, ValueError, IndexError):
            continue  # gone meanwhile, or not ours to read


def _finish(attempt_dir: Path, exit_code: int, reason: str, signo: int | None = None) -> None:
    write_json_atomic(
        attempt_dir / EXIT_FILE,
        {
            "exit_code": exit_code,
            "reason": reason,
            "signal": signo,
            "ended_at": datetime.now(timezone.utc).isoformat(),
        },
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(exit_code)


def main(argv: list[str]) -> None:
    """Entry point: shim.py <attempt-dir> -- <command...>."""
    if len(argv) < 2 or argv[1] != "--":
        print("usage: shim.py <attempt-dir> -- <command...>", file=sys.stderr)
        sys.exit(2)
    attempt_dir, command = Path(argv[0]), argv[2:]
    child: subprocess.Popen | None = None
    early: list[int] = []

    def on_signal(signo: int, _frame: object) -> None:
        if child is None:
            early.append(signo)
        elif not (attempt_dir / STOP_MARKER).exists():
            try:
                os.kill(child.pid, signo)
            except ProcessLookupError:
                pass

    for signo in FORWARDED:
        signal.signal(signo, on_signal)
    # The runner starts us with these blocked, so a stop during interpreter start-up waits here.
    signal.pthread_sigmask(signal.SIG_UNBLOCK, FORWARDED)
    if early:
        _finish(attempt_dir, 128 + early[0], f"terminated by {signal_name(early[0])} before the command started", early[0])
    if not command:
        print("expbot: empty command", file=sys.stderr)
        _finish(attempt_dir, 127, "empty command")
    try:
        # Same stdio (output.log), environment, directory and process group as the shim.
        child = subprocess.Popen(command)
    except FileNotFoundError:
        print(f"expbot: command not found: {command[0]}", file=sys.stderr)
        _finish(attempt_dir, 127, f"command not found: {command[0]}")
    except PermissionError:
        print(f"expbot: permission denied: {command[0]}", file=sys.stderr)
        _finish(attempt_dir, 126, f"permission denied: {command[0]}")
    except OSError as e:
        print(f"expbot: cannot run {command[0]}: {e.strerror}", file=sys.stderr)
        _finish(attempt_dir, 126, f"cannot run {command[0]}: {e.strerror}")
    assert child is not None
    if early:
        # A signal came while the command was being started: it may have missed it.
        os.kill(child.pid, early[0])
    code = child.wait()  # PEP 475: retried after on_signal runs
    _kill_leftovers()
    if code < 0:
        _finish(attempt_dir, 128 - code, f"terminated by {signal_name(-code)}", -code)
    _finish(attempt_dir, code, "")


if __name__ == "__main__":
    main(sys.argv[1:])

"""The local runner's files: reading records, checkpoints and logs, and saying why a write failed."""
from __future__ import annotations

import json
import os
import stat
from datetime import datetime, timezone
from pathlib import Path

LAUNCH_FILE = "launch.json"
LOG_FILE = "output.log"
HEARTBEAT_FILE = "heartbeat"
TAIL_BYTES = 1 << 20
DATA_DIR_SETTING = "EXPBOT_DATA_DIR"


def read_json(path: Path) -> dict | None:
    """The JSON object in the file, or None if it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError, json.JSONDecodeError):
        return None


def fsync_dir(path: Path) -> None:
    """Make a new name in this directory survive a crash."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def data_dir_error(path: Path, error: OSError) -> str:
    """One line naming the setting and the OS reason: 'cannot write to EXPBOT_DATA_DIR (...): no space left on device'."""
    why = os.strerror(error.errno) if error.errno else str(error)
    return f"cannot write to {DATA_DIR_SETTING} ({path}): {why[:1].lower()}{why[1:]}"


def mtime(path: Path) -> float | None:
    """The file's modification time, or None if it is not there."""
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def latest_checkpoint(ckdir: Path, pattern: str) -> str | None:
    """Absolute path of the newest file matching the glob in ckdir, or None."""
    if not ckdir.is_dir():
        return None
    try:
        matches = list(ckdir.glob(pattern))
    except (ValueError, NotImplementedError) as e:
        raise ValueError(f"bad checkpoint pattern {pattern!r}: {e}") from e
    best: tuple[tuple[int, str], Path] | None = None
    for path in matches:
        rel = path.relative_to(ckdir)
        # Hidden parts also catch "..": a pattern cannot reach outside the directory.
        if path.name.endswith(".tmp") or any(part.startswith(".") for part in rel.parts):
            continue
        try:
            st = path.stat()
        except OSError:
            continue  # rotated away meanwhile
        if not stat.S_ISREG(st.st_mode):
            continue
        key = (st.st_mtime_ns, rel.as_posix())
        if best is None or key > best[0]:
            best = (key, path)
    return str(best[1]) if best else None


def read_log(path: Path, tail_lines: int | None = None) -> str:
    """The log (its last `tail_lines` lines if given; "" if none)."""
    if tail_lines is not None and tail_lines <= 0:
        return ""
    try:
        f = open(path, "rb")
    except FileNotFoundError:
        return ""
    with f:
        if tail_lines is None:
            return f.read().decode("utf-8", "replace")
        start = max(0, f.seek(0, os.SEEK_END) - TAIL_BYTES)
        f.seek(start)
        data = f.read()
    if start > 0:
        data = data[data.find(b"\n") + 1:]  # drop the partial first line
    text = data.decode("utf-8", "replace")
    # Split on "\n" only: progress bars redraw with "\r" and are not separate lines.
    trailing = text.endswith("\n")
    lines = (text[:-1] if trailing else text).split("\n")
    return "\n".join(lines[-tail_lines:]) + ("\n" if trailing else "")


def last_progress(heartbeat: Path, ckdir: Path) -> datetime | None:
    """When the heartbeat file or any checkpoint last changed, or None."""
    newest = mtime(heartbeat)
    for dirpath, _dirs, files in os.walk(ckdir):
        for name in files:
            when = mtime(Path(dirpath) / name)
            if when is not None and (newest is None or when > newest):
                newest = when
    return datetime.fromtimestamp(newest, timezone.utc) if newest is not None else None

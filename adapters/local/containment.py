"""Containment of an attempt's processes, so none outlives its attempt and none runs beside the next.

The strongest mechanism the machine offers, falling back cleanly:
- cgroup v2: one cgroup per attempt, created under expbot's own cgroup where the kernel lets us
  (`cgroup.kill` ends it all at once, `cgroup.procs` says who is left); switched off with
  EXPBOT_LOCAL_CGROUPS=off;
- always: the shim is a child subreaper (double-forked orphans stay its children) and every
  descendant inherits EXPBOT_ATTEMPT_TOKEN, found through /proc/<pid>/environ.
Everything works from launch.json alone (fields `cgroup`, `token`, `pid`, `pgid`), so a new expbot,
or the CLI, finds and kills what an attempt left even after its shim died.
"""
from __future__ import annotations

import logging
import os
import re
import secrets
import signal
import time
from collections.abc import Iterable
from pathlib import Path

from adapters.local import procs
from adapters.local.shim import cgroup_pids, token_pids

CGROUPS_VAR = "EXPBOT_LOCAL_CGROUPS"
CGROUP = "cgroup"
SUBREAPER = "subreaper"
_OFF = {"off", "0", "false", "no"}

log = logging.getLogger(__name__)


def _unescape(field: str) -> str:
    # mountinfo writes spaces and the like as octal escapes (\040).
    return re.sub(r"\\([0-7]{3})", lambda m: chr(int(m.group(1), 8)), field)


def own_cgroup(mountinfo: str = "/proc/self/mountinfo", cgroup_file: str = "/proc/self/cgroup") -> Path | None:
    """This process's cgroup directory in the cgroup v2 hierarchy, or None if it has none we can see."""
    try:
        ours = next((line[3:] for line in Path(cgroup_file).read_text().splitlines() if line.startswith("0::")), None)
        mounts = Path(mountinfo).read_text().splitlines()
    except OSError:
        return None
    if ours is None or ours.endswith(" (deleted)"):
        return None
    for line in mounts:
        left, _, right = line.partition(" - ")
        fields = left.split()
        if not right.startswith("cgroup2 ") or len(fields) < 5:
            continue
        # A pure cgroup2 host mounts it at /sys/fs/cgroup, a hybrid one at /sys/fs/cgroup/unified.
        root, mount_point = _unescape(fields[3]), _unescape(fields[4])
        if ours == root or ours.startswith(root.rstrip("/") + "/"):
            return Path(mount_point) / ours[len(root):].lstrip("/")
    return None


class Containment:
    """Where this runner puts its attempts: a cgroup each when allowed (and not switched off), else none."""

    def __init__(self, cgroups: bool | None = None) -> None:
        if cgroups is None:
            cgroups = os.environ.get(CGROUPS_VAR, "").strip().lower() not in _OFF
        self.wanted = cgroups
        self.why_not = "" if cgroups else f"{CGROUPS_VAR}=off"
        self._base: Path | None = None
        self._probed = False

    def base(self) -> Path | None:
        """The cgroup under which attempts get theirs (found and tried once), or None."""
        if self._probed or not self.wanted:
            return self._base
        self._probed = True
        own = own_cgroup()
        if own is None:
            self.why_not = "no cgroup v2 hierarchy is mounted"
            return None
        probe = own / f"expbot-probe-{os.getpid()}-{secrets.token_hex(4)}"
        try:
            probe.mkdir()
            usable = (probe / "cgroup.procs").exists()
            probe.rmdir()
        except OSError as e:
            self.why_not = f"cannot create a cgroup in {own}: {e.strerror}"
            return None
        if usable:
            self._base = own
        else:
            self.why_not = f"{own} is not a cgroup v2 directory"
        return self._base

    def create(self, experiment_id: str, attempt: int, token: str) -> str | None:
        """A new empty cgroup for one attempt, or None (then the token alone contains it)."""
        base = self.base()
        if base is None:
            return None
        path = base / f"expbot-{experiment_id[:64]}-{attempt}-{token[:8]}"
        try:
            path.mkdir()
        except OSError as e:
            log.warning("cannot create cgroup %s (%s): attempt contained by token only", path, e.strerror)
            return None
        return str(path)


def shim_alive(record: dict) -> bool:
    """Whether the attempt's shim (its process-group leader) is still the process launch.json names."""
    pid = record.get("pid")
    return pid is not None and procs.is_alive(int(pid), record.get("start_time"))


def members(records: Iterable[dict]) -> set[int]:
    """Every live process of these attempts: the shim, its cgroup's members, and token holders."""
    records = list(records)
    pids = set(token_pids([r.get("token") or "" for r in records]))
    for record in records:
        pids |= cgroup_pids(record.get("cgroup"))
        if shim_alive(record):
            pids.add(int(record["pid"]))
    return {pid for pid in pids if procs.is_alive(pid, None)}  # a zombie is over already


def signal_all(records: Iterable[dict], signo: int) -> set[int]:
    """Send signo to every live process of these attempts; the pids it was sent to."""
    records = list(records)
    for record in records:
        if shim_alive(record):  # the whole group at once, also for records older than tokens
            try:
                os.killpg(int(record["pgid"]), signo)
            except ProcessLookupError:
                pass
        if signo == signal.SIGKILL and record.get("cgroup"):
            try:
                Path(record["cgroup"], "cgroup.kill").write_text("1")
            except OSError:
                pass  # gone already, or a kernel before 5.14: the loop below does it
    pids = members(records)
    for pid in pids:
        try:
            os.kill(pid, signo)
        except OSError:
            pass
    return pids


def wait_gone(records: Iterable[dict], seconds: float) -> bool:
    """Wait up to `seconds` for every process of these attempts to end; whether they all did."""
    records = list(records)
    deadline = time.monotonic() + seconds
    pause = 0.005
    while members(records):
        left = deadline - time.monotonic()
        if left <= 0:
            return False
        time.sleep(min(pause, left))
        pause = min(pause * 2, 0.1)  # quick for the usual fast exit, cheap for a long grace
    return True


def remove(cgroup: str | None) -> bool:
    """Remove an attempt's cgroup (and any the workload made below it) once empty; whether it is gone."""
    if not cgroup:
        return True
    for dirpath, _dirs, _files in os.walk(cgroup, topdown=False):
        try:
            os.rmdir(dirpath)
        except FileNotFoundError:
            continue
        except OSError:
            return False  # still populated: removed by a later look
    return True


def process_info(record: dict | None) -> dict | None:
    """Where an attempt runs, from its launch record: {pid, pgid, mechanism ('cgroup' | 'subreaper'), cgroup,
    running, and a gang's nodes and master_port}; None before it started."""
    if record is None or record.get("pid") is None:
        return None
    return {
        "pid": int(record["pid"]), "pgid": int(record["pgid"]),
        "mechanism": record.get("mechanism", "process group"), "cgroup": record.get("cgroup"),
        "running": shim_alive(record),
        **{key: record[key] for key in ("nodes", "master_port") if key in record},
    }

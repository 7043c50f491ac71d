"""A full data dir, with real processes: nothing starts untracked, status says why in one line, the
attempt starts exactly once when space is back, and an exit the disk cannot take is still known.

The data dir is a tiny tmpfs where this machine lets the test mount one, else ENOSPC is injected.
Every test runs with a cgroup per attempt (where allowed) and with the fallback (subreaper + token).
"""
from __future__ import annotations

import errno
import os
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from adapters.clock import SystemClock
from adapters.local.runner import LocalRunner
from core.model import State
from core.ports import AttemptPhase
from tests.integration.conftest import Store
from tests.integration.local_containment_helpers import (  # noqa: F401  (cgroups, make_runner: fixtures)
    PY, cgroups, ended, experiment, launch, make_runner, stop_everything, stored, supervisor,
)
from tests.polling import wait_for


class FullDisk:
    """A tiny tmpfs for the runner's root that tests fill and free; an injected ENOSPC where mounting is not allowed."""

    def __init__(self, path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
        self.path, self.monkeypatch, self.full = path, monkeypatch, False
        path.mkdir()
        try:
            self.mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(path)],
                                          capture_output=True).returncode == 0
        except OSError:  # no mount command
            self.mounted = False
        if not self.mounted:
            import adapters.local.runner as runner_module
            import adapters.local.tracker as tracker_module
            for module, name in ((runner_module, "write_json_atomic"), (tracker_module, "create_json_once")):
                self._inject(module, name)

    def _inject(self, module: object, name: str) -> None:
        real = getattr(module, name)

        def write(*args: object, **kwargs: object) -> object:
            if self.full:
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
            return real(*args, **kwargs)

        self.monkeypatch.setattr(module, name, write)

    def fill(self, exit_json_of: Path | None = None) -> None:
        self.full = True
        if self.mounted:
            with open(self.path / "filler", "wb", buffering=0) as f:
                try:
                    while True:
                        f.write(b"\0" * 4096)
                except OSError as e:
                    assert e.errno == errno.ENOSPC
        elif exit_json_of is not None:  # the shim writes exit.json itself: make that fail too
            (exit_json_of / "exit.json").mkdir()
            (exit_json_of / "exit.json" / "x").touch()

    def free(self) -> None:
        self.full = False
        (self.path / "filler").unlink(missing_ok=True)

    def close(self) -> None:
        stop_everything(LocalRunner(self.path / "runs", 0, SystemClock()))  # before the files disappear
        if self.mounted:
            subprocess.run(["umount", "-l", str(self.path)], check=False)


@pytest.fixture
def full_disk(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[FullDisk]:
    disk = FullDisk(tmp_path / "disk", monkeypatch)
    yield disk
    disk.close()


def running_with(marker: str) -> list[int]:
    """Processes whose command line mentions marker (a spawned shim shows it as soon as Popen returns)."""
    found = []
    for entry in os.listdir("/proc"):
        try:
            if entry.isdigit() and marker.encode() in Path(f"/proc/{entry}/cmdline").read_bytes():
                found.append(int(entry))
        except OSError:
            continue
    return found


def test_a_full_data_dir_starts_nothing_and_says_so(
        make_runner: Callable[..., LocalRunner], sqlite_store: Store, full_disk: FullDisk, tmp_path: Path) -> None:
    runner = make_runner(full_disk.path / "runs")
    starts = tmp_path / "starts"
    code = "import sys, time; open(sys.argv[1], 'a').write('started\\n'); time.sleep(0.3)"
    eid = experiment(sqlite_store, "on-full-disk", (PY, "-c", code, str(starts)), max_restarts=0)
    runner.root.mkdir(parents=True)
    full_disk.fill()
    sup = supervisor(sqlite_store, runner)
    for _ in range(5):  # every pass tries again
        sup.reconcile_once()
        assert running_with(str(starts)) == []  # not even for a moment: nothing started untracked
    exp = stored(sqlite_store, eid)
    assert exp.state == State.QUEUED and exp.attempts == []
    assert exp.state_reason == f"cannot write to EXPBOT_DATA_DIR ({runner.root}): no space left on device"

    full_disk.free()

    def succeeded():  # type: ignore[no-untyped-def]
        sup.reconcile_once()
        return (e := stored(sqlite_store, eid)).state == State.SUCCEEDED and e

    final = wait_for(succeeded, 30, what="the experiment to succeed once space is back")
    assert len(final.attempts) == 1 and starts.read_text() == "started\n"  # started exactly once


def test_an_exit_the_disk_cannot_take_is_still_known(
        make_runner: Callable[..., LocalRunner], full_disk: FullDisk, tmp_path: Path) -> None:
    runner = make_runner(full_disk.path / "runs")
    go, ready = tmp_path / "go", tmp_path / "ready"
    code = ("import os, sys, time; open(sys.argv[1], 'w').close()\n"
            "while not os.path.exists(sys.argv[2]): time.sleep(0.02)\nsys.exit(3)")
    assert runner.submit(launch("exp-a", (PY, "-c", code, str(ready), str(go)))).started
    wait_for(ready.exists)
    full_disk.fill(exit_json_of=runner.attempt_dir("exp-a", 1))
    go.touch()
    st = ended(runner, "exp-a")
    assert (st.phase, st.exit_code, st.infra) == (AttemptPhase.EXITED, 3, False)  # not "process vanished"
    assert st.reason == f"cannot write to EXPBOT_DATA_DIR ({runner.root}): no space left on device"

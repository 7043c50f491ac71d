"""`make run` installs once and says so, and installs again only when pyproject.toml changed (#15.9).

The real Makefile runs in a scratch copy of the project whose venv's pip and expbot are recorders,
so the test sees what make would install without installing anything.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import time

import pytest

from tests.integration.cli_harness import REPO

pytestmark = pytest.mark.skipif(shutil.which("make") is None and os.environ.get("CI") != "true",
                                reason="make is not installed")

_RECORDER = "#!/bin/sh\necho \"$(basename \"$0\") $*\" >> \"$(dirname \"$0\")/../calls.log\"\n"


@pytest.fixture
def project(tmp_path):
    for name in ("Makefile", "pyproject.toml"):
        shutil.copy2(REPO / name, tmp_path / name)
    bin_dir = tmp_path / "venv" / "bin"
    bin_dir.mkdir(parents=True)
    for tool in ("python", "pip", "expbot"):
        (bin_dir / tool).write_text(_RECORDER)
        (bin_dir / tool).chmod(0o755)
    old = time.time() - 3600  # the copied pyproject.toml is older than anything make writes now
    os.utime(tmp_path / "pyproject.toml", (old, old))
    return tmp_path


def make_run(project) -> tuple[str, list[str]]:
    """`make run` in the scratch project: its output, and the pip/expbot calls it made."""
    log = project / "venv" / "calls.log"
    log.unlink(missing_ok=True)
    done = subprocess.run(["make", "run", "VENV=venv"], cwd=project, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout, log.read_text().splitlines() if log.exists() else []


def test_make_run_installs_once_saying_so_then_only_after_pyproject_changes(project):
    said, calls = make_run(project)
    assert "installing expbot and its dependencies into venv" in said, said
    assert calls == ["pip install --quiet -e .", "expbot serve"], calls

    said, calls = make_run(project)  # the second run: straight to serve
    assert "installing" not in said and calls == ["expbot serve"], (said, calls)

    (project / "pyproject.toml").touch()  # a dependency changed: install again
    said, calls = make_run(project)
    assert "installing expbot" in said and calls == ["pip install --quiet -e .", "expbot serve"], calls


def test_an_install_that_failed_is_tried_again(project):
    (project / "venv" / "bin" / "pip").write_text("#!/bin/sh\nexit 1\n")
    failed = subprocess.run(["make", "run", "VENV=venv"], cwd=project, capture_output=True, text=True, timeout=60)
    assert failed.returncode != 0 and not (project / "venv" / ".installed").exists()
    (project / "venv" / "bin" / "pip").write_text(_RECORDER)
    _, calls = make_run(project)
    assert calls[0] == "pip install --quiet -e .", calls

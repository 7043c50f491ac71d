"""Finding expbot's own cgroup v2 directory from /proc/self/mountinfo and /proc/self/cgroup."""
from __future__ import annotations

from pathlib import Path

import pytest

from adapters.local.containment import own_cgroup

PURE = "29 23 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - cgroup2 cgroup2 rw,nsdelegate\n"
HYBRID = ("31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755\n"
          "32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu\n"
          "41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw\n")


@pytest.mark.parametrize(("mountinfo", "cgroup", "expected"), [
    (PURE, "0::/user.slice/expbot.service\n", "/sys/fs/cgroup/user.slice/expbot.service"),
    (PURE, "0::/\n", "/sys/fs/cgroup"),
    (HYBRID, "4:memory:/x\n0::/\n", "/sys/fs/cgroup/unified"),
    # a container whose mount shows only its own part of the hierarchy
    ("29 23 0:26 /kubepods/pod1 /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/kubepods/pod1/c1\n", "/sys/fs/cgroup/c1"),
    ("29 23 0:26 /a\\040b /mnt/cg\\040x rw - cgroup2 cgroup2 rw\n", "0::/a b/c\n", "/mnt/cg x/c"),  # escaped spaces
    ("29 23 0:26 /other /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n", "0::/mine\n", None),  # not visible from here
    (HYBRID.replace("cgroup2", "cgroup"), "0::/\n", None),  # cgroup v1 only
    (PURE, "1:name=systemd:/\n", None),  # no v2 line at all
    (PURE, "0::/gone (deleted)\n", None),
])
def test_own_cgroup(tmp_path: Path, mountinfo: str, cgroup: str, expected: str | None) -> None:
    (tmp_path / "mountinfo").write_text(mountinfo)
    (tmp_path / "cgroup").write_text(cgroup)
    found = own_cgroup(str(tmp_path / "mountinfo"), str(tmp_path / "cgroup"))
    assert found == (Path(expected) if expected else None)


def test_no_proc_files_means_no_cgroup(tmp_path: Path) -> None:
    assert own_cgroup(str(tmp_path / "missing"), str(tmp_path / "missing")) is None

"""helm for the chart tests: tests/cluster/build_helm.sh's binary, and the chart rendered with values."""
from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.k8s.test_deploy_rbac import _one

ROOT = Path(__file__).resolve().parents[2]
CHART = ROOT / "deploy" / "helm" / "expbot"


def _helm_path() -> Path:
    versions = dict(line.split("=", 1) for line in (ROOT / "tests" / "cluster" / "versions.env").read_text().splitlines()
                    if "=" in line and not line.startswith("#"))
    cache = Path(os.environ.get("EXPBOT_TESTBED_CACHE", Path.home() / ".cache" / "expbot-testbed"))
    return cache / f"helm-{versions['HELM_VERSION']}" / "bin" / "helm"


def helm_binary() -> str:
    """tests/cluster/build_helm.sh's helm (not built here: `make cluster` does); skips, or fails under CI=true."""
    path = _helm_path()
    if not path.exists():
        message = f"no helm at {path}: run `make cluster` (tests/cluster/build_helm.sh)"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    return str(path)


def run(helm: str, *args: str) -> subprocess.CompletedProcess[str]:
    """helm with its own empty cache and config (never the user's repositories or plugins)."""
    env = os.environ | {"HELM_CACHE_HOME": "/tmp/expbot-helm/cache", "HELM_CONFIG_HOME": "/tmp/expbot-helm/config",
                        "HELM_DATA_HOME": "/tmp/expbot-helm/data"}
    return subprocess.run([helm, *args], capture_output=True, text=True, timeout=60, env=env)


def template(helm: str, *values: str, namespace: str = "expbot") -> list[dict[str, Any]]:
    """The chart rendered as release `expbot` with `--set`-style values."""
    args = [arg for value in values for arg in ("--set", value)]
    out = run(helm, "template", "expbot", str(CHART), "--namespace", namespace, *args)
    assert out.returncode == 0, out.stderr
    return [doc for doc in yaml.safe_load_all(out.stdout) if doc]


def refusal(helm: str, *values: str) -> str:
    """helm template's error for values the chart refuses (it must refuse them)."""
    args = [arg for value in values for arg in ("--set", value)]
    out = run(helm, "template", "expbot", str(CHART), *args)
    assert out.returncode != 0, f"{values} rendered:\n{out.stdout[:500]}"
    return out.stderr.strip()


def container(docs: list[dict[str, Any]]) -> dict[str, Any]:
    """The Deployment's one container."""
    return _one(docs, "Deployment")["spec"]["template"]["spec"]["containers"][0]


def env(docs: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """The container's env entries by name."""
    return {e["name"]: e for e in container(docs)["env"]}


def settings(docs: list[dict[str, Any]]) -> dict[str, str]:
    """The EXPBOT_* settings ConfigMap's data."""
    return next(d for d in docs if d["kind"] == "ConfigMap" and "EXPBOT_BACKEND" in d.get("data", {}))["data"]

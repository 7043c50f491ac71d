"""Fixtures for tests against a real Kubernetes control plane with KWOK fake GPU nodes (a plugin of tests/conftest.py).

k8s_cluster (session): a ControlPlane started from the binaries of tests/cluster/build.sh, with
  the fake GPU nodes Ready; or, when EXPBOT_TEST_KUBECONFIG is set, that existing cluster (an
  ExternalCluster: kubeconfig + api_client(), no restart_apiserver()). When the control plane cannot
  start the tests are skipped, or failed when CI=true.
k8s_api (function): a kubernetes.client.ApiClient (admin), closed afterwards.
k8s_namespace (function): a fresh namespace t-<random> whose `default` ServiceAccount exists;
  deleted afterwards (not waited for).
"""
from __future__ import annotations

import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NoReturn

import pytest

from tests.cluster.controlplane import ControlPlane, ControlPlaneError, default_bin_dir
from tests.k8s.cluster_helpers import ExternalCluster


def _unavailable(reason: str) -> NoReturn:
    if os.environ.get("CI") == "true":
        pytest.fail(f"Kubernetes test control plane unavailable (CI=true): {reason}", pytrace=False)
    pytest.skip(f"Kubernetes test control plane unavailable: {reason}")


@pytest.fixture(scope="session")
def k8s_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ControlPlane | ExternalCluster]:
    external = os.environ.get("EXPBOT_TEST_KUBECONFIG")
    if external:
        yield ExternalCluster(Path(external))
        return
    problem: str | None = None
    try:
        bin_dir = default_bin_dir()
    except (ControlPlaneError, OSError, subprocess.SubprocessError) as exc:
        problem = f"cannot build the binaries: {exc}"
    if problem is None:
        cluster = ControlPlane(bin_dir, tmp_path_factory.mktemp("k8s"))
        t0 = time.monotonic()
        try:
            cluster.start()
        except ControlPlaneError as exc:
            problem = str(exc)
    if problem is not None:  # outside the except blocks: no chained tracebacks in the report
        _unavailable(problem)
    cluster.startup_seconds["total"] = round(time.monotonic() - t0, 2)
    try:
        yield cluster
    finally:
        cluster.stop()


@pytest.fixture
def k8s_api(k8s_cluster: ControlPlane | ExternalCluster) -> Iterator[Any]:
    api = k8s_cluster.api_client()
    try:
        yield api
    finally:
        api.close()


@pytest.fixture
def k8s_namespace(k8s_api: Any) -> Iterator[str]:
    from tests.k8s.cluster_helpers import fresh_namespace

    with fresh_namespace(k8s_api) as name:
        yield name

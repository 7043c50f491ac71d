"""Kubernetes credentials that cannot be loaded are one clear error naming where they were looked for."""
from __future__ import annotations

import pytest

from adapters.k8s.connect import api_client
from core.errors import ExpbotError


def test_a_malformed_kubeconfig_is_named(tmp_path) -> None:
    broken = tmp_path / "config"
    broken.write_text("apiVersion: v1\nclusters: [\n  - name: x\n")  # unclosed flow sequence
    with pytest.raises(ExpbotError, match=rf"cannot load Kubernetes credentials \(EXPBOT_K8S_KUBECONFIG={broken}\)"):
        api_client(broken)


def test_a_missing_kubeconfig_is_named(tmp_path) -> None:
    with pytest.raises(ExpbotError, match=r"EXPBOT_K8S_KUBECONFIG=.*nope"):
        api_client(tmp_path / "nope")

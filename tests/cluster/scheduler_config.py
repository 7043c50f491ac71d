"""An optional kube-scheduler configuration for a ControlPlane: GPU bin-packing with a fixed node order.

The test control plane's kube-scheduler keeps its defaults unless a profile is given: NodeResourcesFit's
LeastAllocated scoring spreads pods, and nodes with equal scores are picked at random. A run that must
be compared pod-for-pod with a simulation (benchmarks/throughput/calibrate.py) needs the placement GPU
clusters use instead, and a deterministic one:

- ``binpack_profile(order)``: scoring by NodeResourcesFit only, strategy MostAllocated weighted on
  nvidia.com/gpu (the fullest node that fits wins: best fit), plus NodeAffinity's ``addedAffinity``
  preferring the nodes of ``order`` in that order, with weights too small to outvote one GPU of
  difference, so ties between equally full nodes go to the earlier node instead of a coin toss.
- ``scheduler_configuration(...)``: the whole KubeSchedulerConfiguration file. With ``--config`` the
  scheduler ignores ``--kubeconfig``, ``--leader-elect`` and ``--kube-api-qps/-burst``, so they move
  into the file (clientConnection, leaderElection).
"""
from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml

from tests.cluster.nodes import GPU_RESOURCE, GPU_TAINTS, GPUS_PER_NODE

API_VERSION = "kubescheduler.config.k8s.io/v1"
FIT_WEIGHT = 100
ORDER_WEIGHT = 1
if FIT_WEIGHT * (100 // GPUS_PER_NODE) <= 100 * ORDER_WEIGHT:  # the node order must only ever break ties
    raise ImportError("scheduler_config: FIT_WEIGHT too small against ORDER_WEIGHT")


def binpack_profile(order: Sequence[str] = ()) -> dict[str, Any]:
    """The default-scheduler profile that bin-packs GPUs and breaks ties by `order` (node names, first preferred)."""
    if len(set(order)) != len(order):
        raise ValueError("binpack_profile: node names in `order` must be unique")
    # Why the weights hold: MostAllocated scores (used + asked) / capacity on a 0..100 scale, so one GPU
    # of difference on an 8-GPU node is >= 12 points x FIT_WEIGHT; the node order, normalised to
    # 0..100 by the scheduler, adds at most 100 x ORDER_WEIGHT.
    enabled = [{"name": "NodeResourcesFit", "weight": FIT_WEIGHT}]
    plugin_config: list[dict[str, Any]] = [{"name": "NodeResourcesFit", "args": {
        "apiVersion": API_VERSION, "kind": "NodeResourcesFitArgs",
        "scoringStrategy": {"type": "MostAllocated", "resources": [{"name": GPU_RESOURCE, "weight": 1}]}}}]
    if order:
        enabled.append({"name": "NodeAffinity", "weight": ORDER_WEIGHT})
        # Preferred-term weights are 1..100; they are normalised against the best feasible node, and
        # a step of 1 in len(order) <= 100 stays a step of at least 1 point after that.
        if len(order) > 100:
            raise ValueError("binpack_profile: at most 100 nodes can be ordered")
        terms = [{"weight": len(order) - i, "preference": {"matchFields": [
            {"key": "metadata.name", "operator": "In", "values": [name]}]}} for i, name in enumerate(order)]
        plugin_config.append({"name": "NodeAffinity", "args": {
            "apiVersion": API_VERSION, "kind": "NodeAffinityArgs",
            "addedAffinity": {"preferredDuringSchedulingIgnoredDuringExecution": terms}}})
    return {"schedulerName": "default-scheduler",
            "plugins": {"score": {"disabled": [{"name": "*"}], "enabled": enabled}},
            "pluginConfig": plugin_config}


def scheduler_configuration(kubeconfig: str, profile: dict[str, Any], qps: float | None = None,
                            burst: int | None = None) -> dict[str, Any]:
    """A KubeSchedulerConfiguration with one profile; the client settings --config would otherwise drop."""
    connection: dict[str, Any] = {"kubeconfig": kubeconfig}
    if qps is not None:
        connection["qps"] = qps
    if burst is not None:
        connection["burst"] = burst
    return {"apiVersion": API_VERSION, "kind": "KubeSchedulerConfiguration",
            "clientConnection": connection, "leaderElection": {"leaderElect": False},
            "profiles": [profile]}


_MOVED_FLAGS = ("--kubeconfig=", "--leader-elect=", "--kube-api-qps=", "--kube-api-burst=")


def scheduler_args(args: list[str], path: Path, profile: dict[str, Any], kubeconfig: str, qps: float | None,
                   burst: int | None) -> list[str]:
    """kube-scheduler's command line with `profile` written to `path` and passed by --config."""
    path.write_text(yaml.safe_dump(scheduler_configuration(kubeconfig, profile, qps, burst), sort_keys=False))
    return [a for a in args if not a.startswith(_MOVED_FLAGS)] + [f"--config={path}"]


def only_gpu_taints(node: Any) -> bool:
    """Whether a V1Node carries no taint but the fake GPU nodes' own (the not-ready one lifted after Ready)."""
    own = {(t["key"], t["effect"]) for t in GPU_TAINTS}
    return all((t.key, t.effect) in own for t in (node.spec.taints or ()))

"""A multi-node attempt on this machine: its ranks' environments, GPUs and rendezvous port (runner side).

Rank r of `--nodes N --gpus G` gets the same rendezvous environment a Kubernetes pod of the gang gets
(core.rendezvous), with rank 0 on 127.0.0.1 at a port free when the attempt starts, and the r-th G of
the attempt's GPUs as CUDA_VISIBLE_DEVICES. gang_shim.py reads them from ranks.json and runs the ranks.
"""
from __future__ import annotations

import socket
from pathlib import Path

from adapters.local.gang_shim import RANKS_FILE
from adapters.local.shim import write_json_atomic
from core.rendezvous import rank_env
from core.spec import ExperimentSpec

GANG_SHIM = Path(__file__).with_name("gang_shim.py")
LOOPBACK = "127.0.0.1"


def free_port() -> int:
    """A TCP port nothing listens on now (the kernel's pick), for one attempt's rank 0."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


def rank_envs(spec: ExperimentSpec, gpu_ids: list[int], port: int) -> list[dict[str, str]]:
    """Each rank's variables on top of the attempt's: the rendezvous and its own share of `gpu_ids`."""
    per_rank = spec.gpus
    return [
        {**rank_env(spec, rank, LOOPBACK, port),
         # "" hides every GPU, as for a CPU-only attempt: ranks never share a GPU by accident.
         "CUDA_VISIBLE_DEVICES": ",".join(str(i) for i in gpu_ids[rank * per_rank:(rank + 1) * per_rank])}
        for rank in range(spec.nodes)
    ]


def prepare(spec: ExperimentSpec, adir: Path, gpu_ids: list[int]) -> dict:
    """Write ranks.json for a multi-node attempt; what launch.json records of it ({} for one node)."""
    if spec.nodes <= 1:
        return {}
    port = free_port()
    write_json_atomic(adir / RANKS_FILE, {"ranks": rank_envs(spec, gpu_ids, port)})
    return {"nodes": spec.nodes, "master_port": port}

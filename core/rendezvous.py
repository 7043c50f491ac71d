"""The rendezvous environment of one rank of a multi-node experiment, the same on every backend.

Launchers read these names: plain code reads MASTER_ADDR/MASTER_PORT/NNODES/NODE_RANK/WORLD_SIZE,
and torchrun takes the default of each of its flags from `PET_<FLAG>` (torch.distributed.run's
`env` argparse action), so `torchrun train.py` with no flags joins the gang. The backend decides
where rank 0 is (a headless Service's DNS name, or 127.0.0.1 and a free port locally).
"""
from __future__ import annotations

from core.spec import ExperimentSpec

# The names a backend must never let a user's --env override (set after the user's variables).
RENDEZVOUS_NAMES = (
    "MASTER_ADDR", "MASTER_PORT", "NNODES", "NODE_RANK", "NPROC_PER_NODE", "WORLD_SIZE",
    "PET_NNODES", "PET_NODE_RANK", "PET_NPROC_PER_NODE", "PET_MASTER_ADDR", "PET_MASTER_PORT",
    "PET_RDZV_BACKEND", "PET_RDZV_ENDPOINT",
)


def rendezvous_env(nodes: int, node_rank: int, nproc_per_node: int, master_addr: str,
                   master_port: int) -> dict[str, str]:
    """The variables rank `node_rank` of `nodes` needs to find rank 0 at master_addr:master_port."""
    if nodes < 1 or nproc_per_node < 1:
        raise ValueError(f"a gang needs at least one node and one process per node, not {nodes} x {nproc_per_node}")
    if not 0 <= node_rank < nodes:
        raise ValueError(f"node rank {node_rank} is not one of 0..{nodes - 1}")
    if not 0 < master_port < 65536:
        raise ValueError(f"master port {master_port} is not a TCP port")
    values = {
        "MASTER_ADDR": master_addr,
        "MASTER_PORT": str(master_port),
        "NNODES": str(nodes),
        "NODE_RANK": str(node_rank),
        "NPROC_PER_NODE": str(nproc_per_node),
        "WORLD_SIZE": str(nodes * nproc_per_node),
    }
    # torchrun: a fixed-size gang is its "static" rendezvous (rank 0's TCPStore at the endpoint,
    # every node's rank given); c10d would also work but needs no more than this.
    torchrun = {
        "PET_NNODES": str(nodes),
        "PET_NODE_RANK": str(node_rank),
        "PET_NPROC_PER_NODE": str(nproc_per_node),
        "PET_MASTER_ADDR": master_addr,
        "PET_MASTER_PORT": str(master_port),
        "PET_RDZV_BACKEND": "static",
        "PET_RDZV_ENDPOINT": f"{master_addr}:{master_port}",
    }
    return {**values, **torchrun}


def rank_env(spec: ExperimentSpec, node_rank: int, master_addr: str, master_port: int) -> dict[str, str]:
    """The rendezvous variables of one rank of `spec`; none for a single-node experiment (as before)."""
    if spec.nodes <= 1:
        return {}
    return rendezvous_env(spec.nodes, node_rank, spec.nproc_per_node, master_addr, master_port)


def node_size_refusal(spec: ExperimentSpec, most_per_node: int | None) -> str | None:
    """Why `spec` cannot fit nodes of at most `most_per_node` GPUs, suggesting the same total over more nodes."""
    if most_per_node is None or spec.gpus <= most_per_node:
        return None
    total = spec.total_gpus
    asked = f"{spec.gpus} GPUs per node asked for" if spec.nodes > 1 else f"{spec.gpus} GPUs asked for"
    problem = f"{asked}, but no node has more than {most_per_node}"
    if most_per_node <= 0:
        return problem
    # The fewest nodes that split the same total evenly within one node's GPUs.
    fewest = -(-total // most_per_node)
    nodes = next(n for n in range(fewest, total + 1) if total % n == 0 and total // n <= most_per_node)
    return f"{problem}; ask for --nodes {nodes} --gpus {total // nodes} instead ({total} GPUs in all)"

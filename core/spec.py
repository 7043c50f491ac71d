"""What a researcher asked for: the experiment spec, and the configuration it is checked against."""
from __future__ import annotations

from datetime import timedelta
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field

# Kubernetes object names get suffixes (attempt number, short id), so leave room under 63.
MAX_NAME_LENGTH = 40
DNS1123_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
RESERVED_ENV_PREFIX = "EXPBOT_"


class GpuType(BaseModel):
    """One entry of the GPU catalog."""

    model_config = ConfigDict(frozen=True)
    name: str
    # A negative price would make committed cost negative and let over-budget launches skip approval.
    price_per_hour: float = Field(default=0.0, ge=0, allow_inf_nan=False)
    node_selector: dict[str, str] = Field(default_factory=dict)  # Kubernetes: nodes of this type
    tolerations: tuple[dict[str, str], ...] = ()  # Kubernetes: taints of this type's node pool


def default_gpu_catalog() -> dict[str, GpuType]:
    """A catalog with on-demand list prices (USD per GPU-hour) of common cloud GPUs."""
    prices = {"h100": 4.0, "a100": 2.5, "l40s": 1.5, "a10g": 1.0, "l4": 0.8, "t4": 0.35}
    return {name: GpuType(name=name, price_per_hour=price) for name, price in prices.items()}


class LaunchConfig(BaseModel):
    """Defaults and limits a launch is checked against (from expbot's configuration)."""

    model_config = ConfigDict(frozen=True)
    gpu_catalog: dict[str, GpuType] = Field(default_factory=default_gpu_catalog)
    default_gpu_type: str | None = None  # None: the first catalog entry
    projects: tuple[str, ...] = ()  # empty: any project name is accepted
    default_project: str = Field(default="default", min_length=1)
    default_image: str = Field(default="python:3.11-slim", min_length=1)
    default_gpus: int = Field(default=0, ge=0)
    max_gpus: int = Field(default=64, ge=0)  # per node
    max_nodes: int = Field(default=16, ge=1)  # --nodes: ranks of one multi-node experiment
    default_max_runtime: timedelta = Field(default=timedelta(hours=24), gt=timedelta(0))
    max_runtime_limit: timedelta = Field(default=timedelta(days=7), gt=timedelta(0))
    # A shorter --max-runtime is almost surely a missing unit; a benchmark that compresses time lowers it.
    min_runtime: timedelta = Field(default=timedelta(minutes=1), ge=timedelta(0))
    default_max_restarts: int = Field(default=3, ge=0)
    default_max_preemptions: int = Field(default=10, ge=0)
    default_checkpoint_glob: str = "*"
    default_stall_timeout: Annotated[timedelta, Field(gt=timedelta(0))] | None = None
    give_up_patterns: tuple[str, ...] = ("CUDA out of memory",)
    max_sweep_size: int = Field(default=32, ge=1)

    def contradictions(self) -> list[str]:
        """Settings that each look fine but contradict each other (checked when loaded from a file)."""
        problems = []
        if self.default_gpus > self.max_gpus:
            problems.append(f"default_gpus={self.default_gpus} is more than max_gpus={self.max_gpus}")
        if self.default_max_runtime < self.min_runtime:
            problems.append(f"default_max_runtime ({self.default_max_runtime.total_seconds():g} s) is less "
                            f"than min_runtime ({self.min_runtime.total_seconds():g} s)")
        if self.default_max_runtime > self.max_runtime_limit:
            problems.append(f"default_max_runtime ({self.default_max_runtime.total_seconds():g} s) is more "
                            f"than max_runtime_limit ({self.max_runtime_limit.total_seconds():g} s)")
        if self.projects and self.default_project not in self.projects:
            problems.append(f"default_project={self.default_project!r} is not one of projects "
                            f"({', '.join(self.projects)}); launches without --project would bypass the list")
        if self.default_gpu_type and self.default_gpu_type not in self.gpu_catalog:
            known = ", ".join(self.gpu_catalog) or "none"
            problems.append(f"default_gpu_type={self.default_gpu_type!r} is not a GPU type of the catalog ({known})")
        return problems

    def resolved_default_gpu_type(self) -> str | None:
        """The GPU type used when a launch names none."""
        if self.default_gpu_type:
            return self.default_gpu_type
        return next(iter(self.gpu_catalog), None)


class ExperimentSpec(BaseModel):
    """One experiment, fully resolved: every default filled in and every value checked."""

    model_config = ConfigDict(frozen=True)
    name: str
    command: tuple[str, ...]
    image: str
    gpus: int = 0  # per node
    nodes: int = Field(default=1, ge=1)  # ranks of one gang; specs stored before it read as 1
    gpu_type: str | None = None
    cpu: str | None = None  # per node
    memory: str | None = None
    max_runtime: timedelta = timedelta(hours=24)
    max_restarts: int = 3
    max_preemptions: int = 10
    retry_on_exit_codes: frozenset[int] = frozenset()
    env: dict[str, str] = Field(default_factory=dict)
    project: str = "default"
    checkpoint_glob: str = "*"
    stall_timeout: timedelta | None = None
    give_up_patterns: tuple[str, ...] = ()
    group: str | None = None  # sweep group name; None for a single experiment
    sweep_values: dict[str, str] = Field(default_factory=dict)

    @property
    def total_gpus(self) -> int:
        """GPUs of the whole experiment: every node's (what cost, budgets and idle detection count)."""
        return self.nodes * self.gpus

    @property
    def nproc_per_node(self) -> int:
        """Processes a launcher starts per node: one per GPU, one on a CPU-only node."""
        return max(self.gpus, 1)


class LaunchRequest(BaseModel):
    """The parsed form of one `launch` line: one spec, or several for a sweep."""

    model_config = ConfigDict(frozen=True)
    group: str | None
    specs: tuple[ExperimentSpec, ...]

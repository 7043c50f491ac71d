"""Prices and cost arithmetic: what an attempt costs per hour, and what a launch may cost at most."""
from __future__ import annotations

from datetime import date

from pydantic import BaseModel, ConfigDict, Field

from core.messages import money
from core.spec import ExperimentSpec, GpuType

_MEMORY_UNITS = {
    "": 1 / 2**30, "k": 1e3 / 2**30, "M": 1e6 / 2**30, "G": 1e9 / 2**30, "T": 1e12 / 2**30,
    "Ki": 1 / 2**20, "Mi": 1 / 2**10, "Gi": 1.0, "Ti": 2**10,
}


class Prices(BaseModel):
    """Hourly prices. GPU prices come from the GPU catalog; CPU and memory are small extra terms."""

    model_config = ConfigDict(frozen=True)
    gpu_catalog: dict[str, GpuType] = Field(default_factory=dict)
    cpu_per_hour: float = Field(default=0.03, ge=0, allow_inf_nan=False)  # per vCPU-hour
    memory_gib_per_hour: float = Field(default=0.004, ge=0, allow_inf_nan=False)  # per GiB-hour
    currency: str = Field(default="USD", min_length=1)
    as_of: date = date(2025, 6, 1)
    source: str = "approximate cloud on-demand list prices per GPU-hour (see README)"

    def gpu_price(self, gpu_type: str | None) -> float:
        """The hourly price of one GPU of this type (0 for an unknown type or none)."""
        entry = self.gpu_catalog.get(gpu_type or "")
        return entry.price_per_hour if entry else 0.0

    def hourly_rate(self, spec: ExperimentSpec) -> float:
        """What one wall hour of an attempt of this spec costs: every node's GPUs, CPU and memory."""
        per_node = (
            spec.gpus * self.gpu_price(spec.gpu_type)
            + cpu_cores(spec.cpu) * self.cpu_per_hour
            + memory_gib(spec.memory) * self.memory_gib_per_hour
        )
        return spec.nodes * per_node

    def projected_cost(self, spec: ExperimentSpec) -> float:
        """The most this experiment can cost: hourly rate x max runtime (enforced on every backend)."""
        return self.hourly_rate(spec) * spec.max_runtime.total_seconds() / 3600.0

    def format(self, amount: float) -> str:
        """An amount in this table's currency, e.g. '$1,234.50' or '1,234.50 EUR'."""
        return money(amount, self.currency)


def cpu_cores(quantity: str | None) -> float:
    """Cores in a Kubernetes CPU quantity ('4', '2.5', '500m'); 0 when unset or unreadable."""
    if not quantity:
        return 0.0
    try:
        return float(quantity[:-1]) / 1000 if quantity.endswith("m") else float(quantity)
    except ValueError:
        return 0.0


def memory_gib(quantity: str | None) -> float:
    """GiB in a Kubernetes memory quantity ('16Gi', '512Mi', '1G', '1024'); 0 when unset or unreadable."""
    if not quantity:
        return 0.0
    for suffix in sorted(_MEMORY_UNITS, key=len, reverse=True):
        if suffix and quantity.endswith(suffix):
            number, factor = quantity[: -len(suffix)], _MEMORY_UNITS[suffix]
            break
    else:
        number, factor = quantity, _MEMORY_UNITS[""]
    try:
        return float(number) * factor
    except ValueError:
        return 0.0

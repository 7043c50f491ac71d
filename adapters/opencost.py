"""GPU, CPU and memory prices from OpenCost's node metrics in Prometheus, over the configured table.

OpenCost exports per node (labels instance, node, instance_type, region, provider_id, arch, uid):
`node_gpu_hourly_cost` (one GPU of that node, per hour), `node_cpu_hourly_cost` (per vCPU-hour),
`node_ram_hourly_cost` (per GiB-hour) and `node_gpu_count`. Node labels come from kube-state-metrics
as `kube_node_labels{node=..., label_<key>=...}`, where <key> is the Kubernetes label key with every
character outside [a-zA-Z0-9_] replaced by `_`, then snake-cased (`nvidia.com/gpu.product` ->
`label_nvidia_com_gpu_product`). kube-state-metrics v2 only exports the keys allowed by its
`--metric-labels-allowlist` (e.g. `nodes=[nvidia.com/gpu.product]`): a GPU type whose selector names
a key it does not export matches no node and keeps its table price.

A catalog GPU type maps to nodes by its `node_selector`; its OpenCost price is the average
`node_gpu_hourly_cost` over the nodes whose labels match every selector entry. Types without a
selector, or with no matching priced node, keep the table price. OpenCost's prices are taken to be
in the table's currency (OpenCost's CURRENCY_CODE must match [prices] currency).
"""
from __future__ import annotations

import logging
import math
import re
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

import httpx

from adapters.prometheus_api import api_get, redact
from core.cost import Prices
from core.metrics import MetricsUnavailable
from core.spec import ExperimentSpec, GpuType

log = logging.getLogger(__name__)

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")
_CAMEL = re.compile(r"([a-z0-9])([A-Z])")


@dataclass(frozen=True)
class OpenCostReading:
    """What OpenCost knew at one fetch: GPU price per catalog type, and CPU/memory rates when exported."""

    gpu: dict[str, float] = field(default_factory=dict)
    cpu: float | None = None  # per vCPU-hour
    ram: float | None = None  # per GiB-hour


def node_label_name(key: str) -> str:
    """The kube_node_labels label for a Kubernetes label key, as kube-state-metrics names it."""
    sanitized = _INVALID_LABEL_CHARS.sub("_", key)
    return "label_" + _CAMEL.sub(r"\1_\2", sanitized).lower()


def _promql_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def gpu_price_query(node_selector: Mapping[str, str]) -> str:
    """PromQL: the average per-GPU hourly cost over the nodes matching every selector entry."""
    matchers = ",".join(f"{node_label_name(k)}={_promql_string(v)}" for k, v in sorted(node_selector.items()))
    # `avg by (node)` first: two OpenCost replicas (or a uid change) give a node several series,
    # which must not weigh it more. `and on(node)` rather than `* on(node) group_left()`: a set
    # match cannot fail on duplicate kube_node_labels series (kube-state-metrics and OpenCost's
    # own emulation both export it). `> 0`: OpenCost reports 0 for a GPU it could not price, and
    # a free GPU would wave every launch through the budget check.
    return f"avg(avg by (node) (node_gpu_hourly_cost > 0) and on(node) kube_node_labels{{{matchers}}})"


def node_rate_query(metric: str) -> str:
    """PromQL: the average of a per-node rate across nodes (0 means unknown there, so left out)."""
    return f"avg(avg by (node) ({metric} > 0))"


class OpenCostPrices:
    """Reads OpenCost's node price metrics from Prometheus' /api/v1/query; never raises."""

    def __init__(self, base_url: str, http: httpx.Client | None = None, timeout: float = 10.0) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout)
        self._failing = False  # warn once per outage, not on every refresh
        self._absent_warned = False

    def fetch(self, catalog: Mapping[str, GpuType]) -> OpenCostReading | None:
        """OpenCost's prices for the catalog's types with a node selector; None when absent or unreachable."""
        try:
            gpu = {}
            for name, entry in catalog.items():
                if entry.node_selector:
                    price = self._scalar(gpu_price_query(entry.node_selector))
                    if price is not None:
                        gpu[name] = price
            cpu = self._scalar(node_rate_query("node_cpu_hourly_cost"))
            ram = self._scalar(node_rate_query("node_ram_hourly_cost"))
        except MetricsUnavailable as e:
            if not self._failing:
                log.warning("OpenCost prices unavailable, keeping the current prices: %s", e)
            else:
                log.debug("OpenCost prices still unavailable: %s", e)
            self._failing = True
            return None
        if self._failing:
            log.info("Prometheus at %s answers again: OpenCost prices resume", redact(self.base_url))
            self._failing = False
        if not gpu and cpu is None and ram is None:
            if not self._absent_warned:
                log.warning("no OpenCost price metrics in Prometheus at %s: prices come from the table",
                            redact(self.base_url))
                self._absent_warned = True
            return None
        self._absent_warned = False
        return OpenCostReading(gpu, cpu, ram)

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self.http.close()

    def _scalar(self, query: str) -> float | None:
        """The single value of an aggregating instant query; None when it has no result."""
        data = api_get(self.http, self.base_url, "query", {"query": query})
        try:
            if data["resultType"] != "vector":
                raise ValueError(f"expected a vector, got {data['resultType']!r}")
            values = [float(series["value"][1]) for series in data["result"]]
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetricsUnavailable(f"Prometheus at {redact(self.base_url)} sent an unexpected reply: {e!r}") from e
        usable = [v for v in values if math.isfinite(v) and v >= 0]
        return usable[0] if usable else None


def apply_opencost(
    prices: Prices,
    gpu: Mapping[str, float],
    cpu: float | None,
    ram: float | None,
    *,
    url: str = "Prometheus",
    at: datetime | None = None,
) -> Prices:
    """A copy of `prices` with OpenCost's GPU prices (catalog types only) and CPU/memory rates where known."""
    known = {name: p for name, p in gpu.items() if name in prices.gpu_catalog and _usable(p)}
    update: dict[str, Any] = {}
    parts = [f"GPU {', '.join(sorted(known))}"] if known else []
    if known:
        update["gpu_catalog"] = {
            name: entry.model_copy(update={"price_per_hour": float(known[name])}) if name in known else entry
            for name, entry in prices.gpu_catalog.items()
        }
    if cpu is not None and _usable(cpu):
        update["cpu_per_hour"] = float(cpu)
        parts.append("CPU")
    if ram is not None and _usable(ram):
        update["memory_gib_per_hour"] = float(ram)
        parts.append("memory")
    if not update:
        return prices
    at = at or datetime.now(timezone.utc)
    update["as_of"] = at.date()
    update["source"] = (
        f"OpenCost via {redact(url)} at {at.astimezone(timezone.utc):%Y-%m-%d %H:%M} UTC ({'; '.join(parts)}); "
        f"otherwise {prices.source}"
    )
    return prices.model_copy(update=update)


def _usable(price: float) -> bool:
    return isinstance(price, (int, float)) and math.isfinite(price) and price >= 0


class PriceBook:
    """The prices in force: the table with OpenCost's prices over it; a thread-safe drop-in for Prices."""

    def __init__(
        self,
        table: Prices,
        opencost: OpenCostPrices | None = None,
        now: Callable[[], datetime] = lambda: datetime.now(timezone.utc),
    ) -> None:
        self.table = table
        self.opencost = opencost  # not `source`: that name is Prices' field, which this class stands in for
        self._now = now
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # one fetch at a time; readers never wait on HTTP
        self._current = table
        # The last price OpenCost gave for each type, kept when its nodes disappear (autoscaled to
        # zero): the best estimate of what the next node costs, better than the table.
        self._gpu: dict[str, float] = {}
        self._cpu: float | None = None
        self._ram: float | None = None

    def current(self) -> Prices:
        """The prices in force now."""
        with self._lock:
            return self._current

    def refresh(self) -> bool:
        """Fetch OpenCost's prices and apply them over the table; False (last good prices kept) when none came."""
        if self.opencost is None:
            return False
        with self._refreshing:
            try:
                reading = self.opencost.fetch(self.table.gpu_catalog)
            except Exception:  # a pricing glitch must never take the scheduler job down
                log.exception("fetching OpenCost prices failed")
                reading = None
            if reading is None:
                return False
            self._gpu.update(reading.gpu)
            self._cpu = reading.cpu if reading.cpu is not None else self._cpu
            self._ram = reading.ram if reading.ram is not None else self._ram
            fresh = apply_opencost(
                self.table, self._gpu, self._cpu, self._ram, url=self.opencost.base_url, at=self._now()
            )
            with self._lock:
                changed = _rates(fresh) != _rates(self._current)
                self._current = fresh
            if changed:
                log.info("prices now from %s", fresh.source)
            return True

    # --- Prices' interface, read from the prices in force -------------------------------------
    def gpu_price(self, gpu_type: str | None) -> float:
        """The hourly price of one GPU of this type now."""
        return self.current().gpu_price(gpu_type)

    def hourly_rate(self, spec: ExperimentSpec) -> float:
        """What one wall hour of an attempt of this spec costs at today's prices."""
        return self.current().hourly_rate(spec)

    def projected_cost(self, spec: ExperimentSpec) -> float:
        """The most this experiment can cost at today's prices."""
        return self.current().projected_cost(spec)

    def format(self, amount: float) -> str:
        """An amount in the prices' currency."""
        return self.current().format(amount)

    @property
    def currency(self) -> str:
        """The prices' currency (always the table's: OpenCost's metrics carry none)."""
        return self.current().currency

    def __getattr__(self, name: str) -> Any:
        # The remaining Prices fields (gpu_catalog, cpu_per_hour, source, ...): whatever is in force.
        if name.startswith("_"):
            raise AttributeError(name)
        return getattr(self.current(), name)


def _rates(prices: Prices) -> tuple:
    gpu = tuple(sorted((name, entry.price_per_hour) for name, entry in prices.gpu_catalog.items()))
    return gpu, prices.cpu_per_hour, prices.memory_gib_per_hour

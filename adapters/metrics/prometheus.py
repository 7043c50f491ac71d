"""GPU utilisation from Prometheus (DCGM exporter metrics) over its HTTP API.

Each sample is `max_over_time(<metric>{<selector>}[<step>])` evaluated every `step` by
/api/v1/query_range: the highest utilisation in the window ending at that step. The profiling
metric DCGM_FI_PROF_GR_ENGINE_ACTIVE (a 0..1 ratio of time the graphics engine was busy) is
preferred; exporters without profiling metrics only have DCGM_FI_DEV_GPU_UTIL (0..100 %).

Series are matched to an attempt by the pod labels the DCGM exporter adds. When Prometheus
scrapes the exporter pod itself (the usual ServiceMonitor set-up, honor_labels false) the
workload's labels arrive renamed `exported_pod` / `exported_namespace`; with honor_labels they
stay `pod` / `namespace`: pick the label with `pod_selector(label=...)`.

Xid errors: DCGM_FI_DEV_XID_ERRORS is a gauge holding the last Xid each GPU saw. Its raw samples
over the attempt (a range-vector instant query, the same pod matchers) go through
core.metrics.xid_rises: a non-zero value that differs from the one before it is a new Xid.
"""
from __future__ import annotations

import logging
import math
import re
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

import httpx

from adapters.prometheus_api import api_get
from core.idle import Sample
from core.metrics import MetricsUnavailable, XidError, xid_rises

log = logging.getLogger(__name__)

Selector = Callable[[str, int], str]  # (experiment_id, attempt) -> PromQL label matchers

# (metric, factor to percent), in order of preference.
METRICS: tuple[tuple[str, float], ...] = (
    ("DCGM_FI_PROF_GR_ENGINE_ACTIVE", 100.0),
    ("DCGM_FI_DEV_GPU_UTIL", 1.0),
)
# Labels that tell one GPU from another; grouping by them also merges duplicate scrapes.
GPU_LABELS = ("Hostname", "UUID", "gpu")
MAX_POINTS = 10_000  # Prometheus refuses more than 11,000 points per series
XID_METRIC = "DCGM_FI_DEV_XID_ERRORS"
MAX_XID_RANGE = timedelta(days=7)  # raw samples are returned whole: bound what one question may fetch
_SAFE = re.compile(r"^[A-Za-z0-9_.-]+$")


def pod_selector(
    label: str = "exported_pod",
    prefix: str = "expbot",
    namespace: str | None = None,
    namespace_label: str = "exported_namespace",
) -> Selector:
    """A selector matching pods named `<prefix>-<experiment_id[:8]>-a<attempt>` (plus any suffix after `-`)."""

    def select(experiment_id: str, attempt: int) -> str:
        short = experiment_id[:8]
        if not _SAFE.match(short) or not _SAFE.match(prefix):
            raise MetricsUnavailable(f"cannot build a pod matcher from {experiment_id!r}")
        # `(-.*)?` and not `.*`: attempt 1 must not match the pods of attempt 10.
        matchers = [f'{label}=~"{re.escape(prefix)}-{short}-a{int(attempt)}(-.*)?"']
        if namespace:
            matchers.append(f'{namespace_label}="{namespace}"')
        return ",".join(matchers)

    return select


default_selector: Selector = pod_selector()
"""`exported_pod=~"expbot-<experiment_id[:8]>-a<attempt>(-.*)?"`: a Job's pods are `<job name>-<suffix>`."""


class PrometheusGpuMetrics:
    """core.metrics.GpuMetrics over Prometheus' /api/v1/query_range."""

    def __init__(
        self,
        base_url: str,
        http: httpx.Client | None = None,
        step: timedelta = timedelta(minutes=5),
        selector: Selector = default_selector,
        timeout: float = 10.0,
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_http = http is None
        self.http = http or httpx.Client(timeout=timeout)
        self.step = step
        self.selector = selector

    def samples(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> dict[str, list[Sample]]:
        """Per GPU, the max utilisation of each `step` window ending in [since, until]; {} when no series."""
        since = max(since, until - self.step * MAX_POINTS)
        matchers = self.selector(experiment_id, attempt)
        for metric, factor in METRICS:
            found = self._query(self._promql(metric, matchers), since, until, factor)
            if found:
                return found
        return {}

    def xid_errors(self, experiment_id: str, attempt: int, since: datetime, until: datetime) -> list[XidError]:
        """Every new Xid the attempt's GPUs reported in [since, until], oldest first; [] when no series."""
        since = max(since, until - MAX_XID_RANGE)
        seconds = max(1, math.ceil((until - since).total_seconds()))
        query = f"{XID_METRIC}{{{self.selector(experiment_id, attempt)}}}[{seconds}s]"
        data = api_get(self.http, self.base_url, "query", {"query": query, "time": f"{until.timestamp():.3f}"})
        try:
            return _parse_xids(data)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetricsUnavailable(f"Prometheus at {self.base_url} sent an unexpected reply: {e!r}") from e

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._owns_http:
            self.http.close()

    def _promql(self, metric: str, matchers: str) -> str:
        window = f"{max(1, round(self.step.total_seconds()))}s"
        return f"max by ({', '.join(GPU_LABELS)}) (max_over_time({metric}{{{matchers}}}[{window}]))"

    def _query(self, query: str, since: datetime, until: datetime, factor: float) -> dict[str, list[Sample]]:
        params = {
            "query": query, "start": f"{since.timestamp():.3f}", "end": f"{until.timestamp():.3f}",
            "step": f"{self.step.total_seconds():g}s",
        }
        data = api_get(self.http, self.base_url, "query_range", params)
        try:
            return _parse_matrix(data, factor)
        except (KeyError, TypeError, ValueError, IndexError) as e:
            raise MetricsUnavailable(f"Prometheus at {self.base_url} sent an unexpected reply: {e!r}") from e


def _parse_matrix(data: dict, factor: float) -> dict[str, list[Sample]]:
    if data["resultType"] != "matrix":
        raise ValueError(f"expected a matrix, got {data['resultType']!r}")
    found: dict[str, list[Sample]] = {}
    for series in data["result"]:
        gpu = _gpu_id(series["metric"])
        samples = found.setdefault(gpu, [])
        for ts, value in series["values"]:
            util = float(value)
            if math.isnan(util):  # the exporter had no reading: unknown, so no sample
                continue
            samples.append(Sample(gpu, datetime.fromtimestamp(float(ts), timezone.utc), util * factor))
    return {gpu: samples for gpu, samples in found.items() if samples}


def _parse_xids(data: dict) -> list[XidError]:
    if data["resultType"] != "matrix":
        raise ValueError(f"expected a matrix, got {data['resultType']!r}")
    readings: dict[str, list[tuple[datetime, float]]] = {}  # duplicate scrapes of a GPU merge here
    names: dict[str, tuple[str, str]] = {}
    for series in data["result"]:
        labels = series["metric"]
        gpu = _gpu_id(labels)
        names[gpu] = (labels.get("gpu") or gpu, labels.get("Hostname", ""))
        readings.setdefault(gpu, []).extend(
            (datetime.fromtimestamp(float(ts), timezone.utc), float(value)) for ts, value in series["values"])
    found = [e for gpu, values in readings.items() for e in xid_rises(names[gpu][0], values, names[gpu][1])]
    return sorted(found, key=lambda e: e.at)


def _gpu_id(labels: dict[str, str]) -> str:
    """UUID when the exporter gives one, else host:index."""
    if labels.get("UUID"):
        return labels["UUID"]
    host, index = labels.get("Hostname", ""), labels.get("gpu", "")
    return f"{host}:{index}" if host else index or "gpu"

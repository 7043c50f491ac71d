"""OpenCost prices over the table, without a server: apply_opencost, label names, queries, PriceBook."""
from __future__ import annotations

import logging
import math
import threading
from collections.abc import Mapping
from datetime import date, datetime, timezone

import pytest
from pydantic import ValidationError

from adapters.opencost import (
    OpenCostReading,
    PriceBook,
    apply_opencost,
    gpu_price_query,
    node_label_name,
    redact,
)
from core.cost import Prices
from core.spec import ExperimentSpec, GpuType

AT = datetime(2026, 11, 22, 9, 30, tzinfo=timezone.utc)
SELECTOR = {"nvidia.com/gpu.product": "NVIDIA-A100-SXM4-80GB"}
TABLE = Prices(
    gpu_catalog={
        "a100": GpuType(name="a100", price_per_hour=2.5, node_selector=SELECTOR),
        "h100": GpuType(name="h100", price_per_hour=4.0, node_selector={"nvidia.com/gpu.product": "NVIDIA-H100"}),
        "t4": GpuType(name="t4", price_per_hour=0.35),
    },
    cpu_per_hour=0.03, memory_gib_per_hour=0.004,
)


def spec(**fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"name": "x", "command": ("python",), "image": "py", **fields})


# --- apply_opencost ----------------------------------------------------------------------------
def test_known_gpu_prices_replace_the_table_and_the_rest_stay() -> None:
    prices = apply_opencost(TABLE, {"a100": 3.2}, None, None, url="http://prom:9090", at=AT)
    assert prices.gpu_price("a100") == 3.2
    assert prices.gpu_price("h100") == 4.0 and prices.gpu_price("t4") == 0.35
    assert prices.gpu_catalog["a100"].node_selector == SELECTOR  # only the price changes
    assert (prices.cpu_per_hour, prices.memory_gib_per_hour) == (0.03, 0.004)
    assert TABLE.gpu_price("a100") == 2.5  # the table itself is untouched


def test_cpu_and_memory_rates_are_replaced_when_known() -> None:
    prices = apply_opencost(TABLE, {}, 0.05, 0.007, at=AT)
    assert (prices.cpu_per_hour, prices.memory_gib_per_hour) == (0.05, 0.007)
    assert prices.gpu_price("a100") == 2.5
    only_cpu = apply_opencost(TABLE, {}, 0.05, None, at=AT)
    assert (only_cpu.cpu_per_hour, only_cpu.memory_gib_per_hour) == (0.05, 0.004)


def test_the_hourly_rate_follows_the_new_prices() -> None:
    prices = apply_opencost(TABLE, {"a100": 3.0}, 0.1, 0.01, at=AT)
    assert prices.hourly_rate(spec(gpus=2, gpu_type="a100", cpu="4", memory="16Gi")) == pytest.approx(
        2 * 3.0 + 4 * 0.1 + 16 * 0.01
    )


def test_nothing_known_returns_the_prices_unchanged() -> None:
    assert apply_opencost(TABLE, {}, None, None) is TABLE
    assert apply_opencost(TABLE, {"v100": 1.0}, None, None) is TABLE  # not in the catalog: ignored


@pytest.mark.parametrize("bad", [math.nan, math.inf, -1.0])
def test_unusable_values_are_ignored(bad: float) -> None:
    prices = apply_opencost(TABLE, {"a100": bad, "h100": 5.0}, bad, bad, at=AT)
    assert prices.gpu_price("a100") == 2.5 and prices.gpu_price("h100") == 5.0
    assert (prices.cpu_per_hour, prices.memory_gib_per_hour) == (0.03, 0.004)


def test_the_source_names_opencost_the_url_and_the_time_without_credentials() -> None:
    prices = apply_opencost(TABLE, {"a100": 3.2}, 0.05, None, url="https://bob:s3cret@prom.example:9090", at=AT)
    assert prices.source.startswith("OpenCost via https://prom.example:9090 at 2026-11-22 09:30 UTC")
    assert "a100" in prices.source and "CPU" in prices.source and "s3cret" not in prices.source
    assert prices.source.endswith(TABLE.source)  # where the rest comes from
    assert prices.as_of == date(2026, 11, 22)
    assert prices.currency == TABLE.currency


def test_the_result_is_still_frozen() -> None:
    prices = apply_opencost(TABLE, {"a100": 3.2}, None, None, at=AT)
    with pytest.raises(ValidationError):
        prices.cpu_per_hour = 1.0  # type: ignore[misc]


# --- names and queries -------------------------------------------------------------------------
@pytest.mark.parametrize(("key", "label"), [
    ("nvidia.com/gpu.product", "label_nvidia_com_gpu_product"),
    ("cloud.google.com/gke-accelerator", "label_cloud_google_com_gke_accelerator"),
    ("node.kubernetes.io/instance-type", "label_node_kubernetes_io_instance_type"),
    ("example.com/gpuModel", "label_example_com_gpu_model"),  # kube-state-metrics snake-cases too
])
def test_node_label_names_follow_kube_state_metrics(key: str, label: str) -> None:
    assert node_label_name(key) == label


def test_the_gpu_query_matches_every_selector_entry_and_escapes_values() -> None:
    query = gpu_price_query({"b.io/x": 'say "hi"\\', "a.io/y": "1"})
    assert 'label_a_io_y="1",label_b_io_x="say \\"hi\\"\\\\"' in query
    assert query.startswith("avg(") and "node_gpu_hourly_cost > 0" in query and "on(node)" in query


def test_redact_leaves_plain_urls_alone() -> None:
    assert redact("http://prom:9090") == "http://prom:9090"
    assert redact("http://u:p@prom:9090/x") == "http://prom:9090/x"


# --- PriceBook with a scripted source ----------------------------------------------------------
class ScriptedSource:
    """Stands in for OpenCostPrices: answers from a list (an exception is raised)."""

    base_url = "http://prom:9090"

    def __init__(self, *answers: OpenCostReading | None | Exception) -> None:
        self.answers = list(answers)
        self.catalogs: list[Mapping[str, GpuType]] = []

    def fetch(self, catalog: Mapping[str, GpuType]) -> OpenCostReading | None:
        self.catalogs.append(catalog)
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer


def book(*answers: OpenCostReading | None | Exception) -> PriceBook:
    return PriceBook(TABLE, ScriptedSource(*answers), now=lambda: AT)  # type: ignore[arg-type]


def test_a_book_starts_with_the_table_and_without_a_source_never_changes() -> None:
    plain = PriceBook(TABLE)
    assert plain.current() is TABLE
    assert plain.refresh() is False and plain.current() is TABLE


def test_refresh_applies_opencost_and_the_book_prices_like_prices() -> None:
    b = book(OpenCostReading({"a100": 3.0}, 0.1, None))
    assert b.refresh() is True
    s = spec(gpus=2, gpu_type="a100", cpu="4")
    assert b.hourly_rate(s) == pytest.approx(2 * 3.0 + 4 * 0.1) == b.current().hourly_rate(s)
    assert b.projected_cost(s) == pytest.approx(b.current().projected_cost(s))
    assert b.gpu_price("a100") == 3.0 and b.gpu_price("t4") == 0.35
    assert b.currency == "USD" and b.format(1234.5) == TABLE.format(1234.5)
    assert b.cpu_per_hour == 0.1 and b.gpu_catalog["a100"].price_per_hour == 3.0  # any other field
    assert b.source.startswith("OpenCost via http://prom:9090")
    with pytest.raises(AttributeError):
        b.no_such_field  # noqa: B018


def test_failures_and_absent_metrics_keep_the_last_good_prices() -> None:
    b = book(OpenCostReading({"a100": 3.0}), None, RuntimeError("boom"))
    b.refresh()
    good = b.current()
    assert b.refresh() is False and b.current() is good  # absent / unreachable
    assert b.refresh() is False and b.current() is good  # the source itself blew up: no exception here


def test_a_type_whose_nodes_vanish_keeps_its_last_opencost_price() -> None:
    b = book(OpenCostReading({"a100": 3.0, "h100": 5.0}, 0.1, 0.01), OpenCostReading({"h100": 6.0}))
    b.refresh()
    b.refresh()
    assert (b.gpu_price("a100"), b.gpu_price("h100")) == (3.0, 6.0)
    assert (b.cpu_per_hour, b.memory_gib_per_hour) == (0.1, 0.01)


def test_the_book_fetches_for_the_table_catalog() -> None:
    b = book(OpenCostReading({"a100": 3.0}), OpenCostReading({"a100": 3.1}))
    b.refresh()
    b.refresh()
    assert all(c is TABLE.gpu_catalog for c in b.opencost.catalogs)  # type: ignore[union-attr]


def test_changes_are_logged_only_when_rates_change(caplog: pytest.LogCaptureFixture) -> None:
    b = book(OpenCostReading({"a100": 3.0}), OpenCostReading({"a100": 3.0}))
    with caplog.at_level(logging.INFO, logger="adapters.opencost"):
        b.refresh()
        b.refresh()
    assert sum("prices now from" in r.getMessage() for r in caplog.records) == 1


def test_readers_see_whole_prices_while_refreshes_run() -> None:
    readings = [OpenCostReading({"a100": float(i)}, float(i), None) for i in range(1, 201)]
    b = book(*readings)
    stop, seen = threading.Event(), []

    def read() -> None:
        while not stop.is_set():
            p = b.current()
            seen.append(p.gpu_price("a100") == p.cpu_per_hour or p is TABLE)

    reader = threading.Thread(target=read)
    reader.start()
    for _ in readings:
        b.refresh()
    stop.set()
    reader.join()
    assert seen and all(seen)
    assert b.gpu_price("a100") == 200.0

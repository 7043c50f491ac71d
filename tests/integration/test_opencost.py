"""OpenCost prices from a real Prometheus scraping an exporter that serves OpenCost's and kube-state-metrics' series.

The exporter is emptied between tests, but Prometheus keeps answering with the old series until its
next scrape (1 s): every test names its own GPU products (a fresh suffix) and polls with a deadline.
"""
from __future__ import annotations

import logging
import uuid
from collections.abc import Iterator

import httpx
import pytest

from adapters.opencost import OpenCostPrices, PriceBook
from core.cost import Prices
from core.spec import ExperimentSpec, GpuType
from tests.integration.prometheus import (  # noqa: F401
    DcgmExporter,
    PrometheusServer,
    _free_port,
    dcgm,
    prometheus,
)
from tests.polling import wait_for

pytestmark = pytest.mark.slow

PRODUCT = "nvidia.com/gpu.product"
PRODUCT_LABEL = "label_nvidia_com_gpu_product"
approx = pytest.approx


@pytest.fixture
def products() -> tuple[str, str]:
    """Two GPU product names no earlier test used."""
    suffix = uuid.uuid4().hex[:6]
    return f"NVIDIA-A100-{suffix}", f"NVIDIA-H100-{suffix}"


def table(a100: str, h100: str, **gpu_types: GpuType) -> Prices:
    catalog = {
        "a100": GpuType(name="a100", price_per_hour=2.5, node_selector={PRODUCT: a100}),
        "h100": GpuType(name="h100", price_per_hour=4.0, node_selector={PRODUCT: h100}),
        "t4": GpuType(name="t4", price_per_hour=0.35),  # no selector: never priced by OpenCost
        **gpu_types,
    }
    return Prices(gpu_catalog=catalog, cpu_per_hour=0.03, memory_gib_per_hour=0.004)


@pytest.fixture
def reader(prometheus: PrometheusServer) -> Iterator[OpenCostPrices]:
    source = OpenCostPrices(prometheus.url, timeout=5)
    yield source
    source.close()


def gpu_node(dcgm: DcgmExporter, node: str, price: float, product: str, gpus: int = 8, **labels: str) -> None:
    """One GPU node as OpenCost and kube-state-metrics export it."""
    node_labels = {"node": node, "instance": node, "instance_type": "p4d.24xlarge", "region": "us-east-1",
                   "provider_id": f"aws:///{node}", "arch": "amd64", "uid": f"uid-{node}"}
    dcgm.set("node_gpu_hourly_cost", price, **node_labels)
    dcgm.set("node_gpu_count", gpus, **node_labels)
    dcgm.set("kube_node_labels", 1, node=node, **{PRODUCT_LABEL: product}, **labels)


def refreshed_until(book: PriceBook, done, what: str, timeout: float = 20.0) -> None:
    """Refresh until `done(book)`: Prometheus shows new series only after its next scrape."""
    wait_for(lambda: book.refresh() and done(book), timeout=timeout, what=what, interval=0.2)


def series(prometheus: PrometheusServer, query: str) -> list:
    body = httpx.get(f"{prometheus.url}/api/v1/query", params={"query": query}, timeout=5).json()
    return body["data"]["result"]


def spec(**fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"name": "x", "command": ("python",), "image": "py", **fields})


def test_opencost_prices_a_type_whose_nodes_match(dcgm, reader, products) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.2, a100)
    book = PriceBook(table(a100, h100), reader)
    refreshed_until(book, lambda b: b.gpu_price("a100") == approx(3.2), "the A100 price from OpenCost")
    assert book.hourly_rate(spec(gpus=2, gpu_type="a100")) == approx(6.4)
    assert book.projected_cost(spec(gpus=1, gpu_type="a100", max_runtime=7200)) == approx(6.4)
    assert book.current().source.startswith(f"OpenCost via {reader.base_url} at ")
    assert book.gpu_price("t4") == 0.35  # no node selector: the table's


def test_the_price_is_averaged_over_every_matching_node(dcgm, reader, products) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.0, a100)
    gpu_node(dcgm, "n2", 4.0, a100)
    gpu_node(dcgm, "n3", 0.0, a100)  # OpenCost could not price it: not a free GPU
    gpu_node(dcgm, "n4", 10.0, f"{a100}-MIG")  # another product
    book = PriceBook(table(a100, h100), reader)
    refreshed_until(book, lambda b: b.gpu_price("a100") == approx(3.5), "the average of n1 and n2")


def test_every_selector_entry_must_match(dcgm, reader, products) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.0, a100, label_cloud_google_com_gke_spot="true")
    gpu_node(dcgm, "n2", 5.0, a100)
    spot = GpuType(name="a100-spot", price_per_hour=1.0,
                   node_selector={PRODUCT: a100, "cloud.google.com/gke-spot": "true"})
    book = PriceBook(table(a100, h100, **{"a100-spot": spot}), reader)
    refreshed_until(book, lambda b: (b.gpu_price("a100-spot"), b.gpu_price("a100")) == (approx(3.0), approx(4.0)),
                    "the spot node alone for a100-spot")


def test_a_type_without_matching_nodes_keeps_the_table_price(dcgm, reader, products) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.2, a100)
    book = PriceBook(table(a100, h100), reader)
    refreshed_until(book, lambda b: b.gpu_price("a100") == approx(3.2), "the A100 price from OpenCost")
    assert book.gpu_price("h100") == 4.0


def test_without_opencost_metrics_the_table_prices_stay(dcgm, reader, prometheus, products, caplog) -> None:
    wait_for(lambda: not series(prometheus, '{__name__=~"node_.*_hourly_cost|kube_node_labels"}'),
             timeout=20, what="the earlier tests' series to go stale", interval=0.2)
    dcgm.set("DCGM_FI_DEV_GPU_UTIL", 50, gpu="0")  # Prometheus works, only OpenCost is missing
    prices = table(*products)
    book = PriceBook(prices, reader)
    with caplog.at_level(logging.WARNING, logger="adapters.opencost"):
        assert book.refresh() is False
        assert book.refresh() is False
    assert book.current() is prices
    assert sum("no OpenCost price metrics" in r.getMessage() for r in caplog.records) == 1  # once, not per refresh


def test_when_prometheus_is_down_the_last_good_prices_stay(dcgm, reader, products, caplog) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.2, a100)
    book = PriceBook(table(a100, h100), reader)
    refreshed_until(book, lambda b: b.gpu_price("a100") == approx(3.2), "the A100 price from OpenCost")
    good = book.current()
    reader.base_url = f"http://127.0.0.1:{_free_port()}"  # nothing listens there
    caplog.clear()  # polling may have warned that the metrics were not scraped yet
    with caplog.at_level(logging.WARNING, logger="adapters.opencost"):
        assert book.refresh() is False
        assert book.refresh() is False
    assert book.current() is good and book.gpu_price("a100") == approx(3.2)
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


def test_cpu_and_memory_rates_come_from_opencost(dcgm, reader, products) -> None:
    for node, cpu, ram in (("c1", 0.05, 0.010), ("c2", 0.07, 0.020), ("c3", 0.0, 0.0)):  # c3: unpriced
        dcgm.set("node_cpu_hourly_cost", cpu, node=node, instance_type="m5.xlarge")
        dcgm.set("node_ram_hourly_cost", ram, node=node, instance_type="m5.xlarge")
    prices = table(*products)
    book = PriceBook(prices, reader)
    refreshed_until(book, lambda b: (b.cpu_per_hour, b.memory_gib_per_hour) == (approx(0.06), approx(0.015)),
                    "CPU and memory rates averaged over c1 and c2")
    assert book.gpu_catalog == prices.gpu_catalog  # no GPU metrics: the table's GPU prices
    assert book.hourly_rate(spec(cpu="4", memory="16Gi")) == approx(4 * 0.06 + 16 * 0.015)


def test_a_type_keeps_its_opencost_price_after_its_nodes_scale_to_zero(dcgm, reader, prometheus, products) -> None:
    a100, h100 = products
    gpu_node(dcgm, "n1", 3.2, a100)
    gpu_node(dcgm, "n2", 6.0, h100)
    book = PriceBook(table(a100, h100), reader)
    refreshed_until(book, lambda b: (b.gpu_price("a100"), b.gpu_price("h100")) == (approx(3.2), approx(6.0)),
                    "both prices from OpenCost")
    dcgm.clear()
    gpu_node(dcgm, "n2", 6.5, h100)  # the A100 node is gone; the H100 one got dearer
    refreshed_until(book, lambda b: b.gpu_price("h100") == approx(6.5), "the new H100 price")
    assert not series(prometheus, f'kube_node_labels{{{PRODUCT_LABEL}="{a100}"}}')
    assert book.gpu_price("a100") == approx(3.2)

"""Properties of the cost arithmetic: prices, quantities, what attempts cost, how windows add up."""
from __future__ import annotations

import uuid
from datetime import datetime, timedelta, timezone

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from core.cost import Prices, cpu_cores, memory_gib
from core.model import Attempt, Experiment
from core.spec import ExperimentSpec, GpuType
from tests.fakes.costs import FakeCostQueries
from tests.fakes.store import FakeDatabase

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
approx = pytest.approx

money = st.floats(min_value=0, max_value=100, allow_nan=False, allow_infinity=False)
gpus = st.integers(min_value=0, max_value=64)
minutes = st.integers(min_value=0, max_value=60 * 24 * 30)
CATALOG = {"a100": GpuType(name="a100", price_per_hour=2.5), "t4": GpuType(name="t4", price_per_hour=0.35)}


def spec(**fields: object) -> ExperimentSpec:
    return ExperimentSpec.model_validate({"name": "x", "command": ("python",), "image": "py", **fields})


# --- quantities ---------------------------------------------------------------------------------
@given(st.floats(min_value=0, max_value=1e4, allow_nan=False))
def test_cpu_cores_reads_plain_numbers(cores: float) -> None:
    assert cpu_cores(repr(cores)) == cores


@given(st.integers(min_value=0, max_value=10**6))
def test_cpu_cores_reads_millicores(milli: int) -> None:
    assert cpu_cores(f"{milli}m") == approx(milli / 1000)


@pytest.mark.parametrize("quantity", [None, "", "four", "4x", "m"])
def test_unreadable_cpu_is_zero(quantity: str | None) -> None:
    assert cpu_cores(quantity) == 0.0


@given(st.integers(min_value=0, max_value=10**6), st.sampled_from(["Ki", "Mi", "Gi", "Ti", "k", "M", "G", "T", ""]))
def test_memory_units_scale_as_kubernetes_defines_them(n: int, unit: str) -> None:
    factor = {"": 1, "k": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40}[unit]
    assert memory_gib(f"{n}{unit}") == approx(n * factor / 2**30)


@given(st.integers(min_value=0, max_value=10**5))
def test_binary_units_nest(n: int) -> None:
    assert memory_gib(f"{n * 1024}Mi") == approx(memory_gib(f"{n}Gi"))
    assert memory_gib(f"{n}Ti") == approx(1024 * memory_gib(f"{n}Gi"))


@pytest.mark.parametrize("quantity", [None, "", "lots", "16Xi", "Gi"])
def test_unreadable_memory_is_zero(quantity: str | None) -> None:
    assert memory_gib(quantity) == 0.0


# --- prices -------------------------------------------------------------------------------------
@given(gpus, st.sampled_from(["a100", "t4", "unknown", None]), st.integers(0, 64), st.integers(0, 512), money, money)
def test_hourly_rate_is_the_sum_of_its_terms(
    n: int, gpu_type: str | None, cores: int, gib: int, cpu_price: float, mem_price: float
) -> None:
    prices = Prices(gpu_catalog=CATALOG, cpu_per_hour=cpu_price, memory_gib_per_hour=mem_price)
    s = spec(gpus=n, gpu_type=gpu_type, cpu=str(cores), memory=f"{gib}Gi")
    gpu_price = CATALOG[gpu_type].price_per_hour if gpu_type in CATALOG else 0.0
    assert prices.hourly_rate(s) == approx(n * gpu_price + cores * cpu_price + gib * mem_price)
    assert prices.hourly_rate(s) >= 0


@given(gpus, st.sampled_from(["a100", "t4"]))
def test_hourly_rate_is_linear_in_gpus(n: int, gpu_type: str) -> None:
    prices = Prices(gpu_catalog=CATALOG)
    one_more = prices.hourly_rate(spec(gpus=n + 1, gpu_type=gpu_type)) - prices.hourly_rate(spec(gpus=n, gpu_type=gpu_type))
    assert one_more == approx(CATALOG[gpu_type].price_per_hour)


@given(gpus, st.integers(min_value=1, max_value=7 * 24 * 60))
def test_projected_cost_is_rate_times_max_runtime(n: int, runtime_minutes: int) -> None:
    prices = Prices(gpu_catalog=CATALOG)
    s = spec(gpus=n, gpu_type="a100", cpu="8", memory="32Gi", max_runtime=timedelta(minutes=runtime_minutes))
    assert prices.projected_cost(s) == approx(prices.hourly_rate(s) * runtime_minutes / 60)
    doubled = s.model_copy(update={"max_runtime": timedelta(minutes=2 * runtime_minutes)})
    assert prices.projected_cost(doubled) == approx(2 * prices.projected_cost(s))


def test_amounts_are_formatted_for_people() -> None:
    assert Prices().format(1234.5) == "$1,234.50"
    assert Prices(currency="EUR").format(1234.5) == "1,234.50 EUR"


# --- what attempts cost -------------------------------------------------------------------------
@given(money, minutes, minutes)
def test_an_ended_attempt_costs_rate_times_hours(rate: float, start: int, duration: int) -> None:
    attempt = Attempt(1, T0, started_at=T0 + timedelta(minutes=start),
                      ended_at=T0 + timedelta(minutes=start + duration), hourly_rate=rate)
    later = T0 + timedelta(days=365)
    assert attempt.cost(later) == approx(rate * duration / 60)
    assert attempt.cost(later) == attempt.cost(later + timedelta(days=1))  # ended: no longer accrues


@given(money, minutes, minutes)
def test_a_running_attempt_accrues_monotonically(rate: float, start: int, elapsed: int) -> None:
    started = T0 + timedelta(minutes=start)
    attempt = Attempt(1, T0, started_at=started, hourly_rate=rate)
    now = started + timedelta(minutes=elapsed)
    assert attempt.cost(now) == approx(rate * elapsed / 60)
    assert attempt.cost(now + timedelta(minutes=1)) >= attempt.cost(now)


def test_an_attempt_that_never_ran_costs_nothing() -> None:
    assert Attempt(1, T0, hourly_rate=99.0).cost(T0 + timedelta(days=1)) == 0.0


# --- windows add up (the fake is the reference the SQL queries are tested against) -------------
intervals = st.lists(
    st.tuples(minutes, st.one_of(st.none(), st.integers(0, 3000)), money),  # start, duration (None: running), rate
    min_size=1, max_size=6,
)


def _experiment(parts: list[tuple[int, int | None, float]], n: int) -> Experiment:
    exp = Experiment(id=uuid.uuid4().hex[:8], spec=spec(name=f"e{n}", gpus=n % 3), owner="o", created_at=T0)
    for number, (start, duration, rate) in enumerate(parts, start=1):
        started = T0 + timedelta(minutes=start)
        ended = None if duration is None else started + timedelta(minutes=duration)
        exp.attempts.append(Attempt(number, started, started_at=started, ended_at=ended, hourly_rate=rate, gpus=n % 3))
    return exp


@settings(max_examples=60)
@given(st.lists(intervals, min_size=1, max_size=4), st.lists(minutes, min_size=1, max_size=6), minutes)
def test_windows_partitioning_time_add_up_to_every_attempts_cost(
    experiments: list[list[tuple[int, int | None, float]]], cuts: list[int], now_minutes: int
) -> None:
    db = FakeDatabase()
    for n, parts in enumerate(experiments):
        exp = _experiment(parts, n)
        db.experiments[exp.id] = exp
    costs, now = FakeCostQueries(db), T0 + timedelta(minutes=now_minutes)
    edges = [T0 - timedelta(days=1)] + sorted(T0 + timedelta(minutes=c) for c in set(cuts)) + [T0 + timedelta(days=90)]
    pieces = [costs.spent(start=a, end=b, now=now) for a, b in zip(edges, edges[1:])]
    # A running attempt started after `now` has cost nothing yet; Attempt.cost would go negative.
    expected = sum(max(0.0, a.cost(now)) for exp in db.experiments.values() for a in exp.attempts)
    assert sum(pieces) == approx(expected, rel=1e-9, abs=1e-9)
    assert all(p >= 0 for p in pieces)
    assert sum(r.cost for r in costs.spend_by("owner", start=edges[0], end=edges[-1], now=now)) == approx(expected)

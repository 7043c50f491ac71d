"""Summary statistics the benchmarks print."""
from __future__ import annotations


def percentile(values: list[float], q: float) -> float:
    """The q-quantile (0..1) of values, nearest-rank."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(q * (len(ordered) - 1))))]

"""Meters for benchmarks: process RSS and CPU (whole and per thread), API requests by resource, call timings."""
from __future__ import annotations

import os
import resource
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any, Self
from urllib.parse import urlsplit

from kubernetes import client


class RequestCounter:
    """Counts the requests an ApiClient makes, by (method, resource), by wrapping its call_api."""

    def __init__(self, api: client.ApiClient) -> None:
        self.counts: Counter[tuple[str, str]] = Counter()
        self._lock = threading.Lock()
        self._call = api.call_api
        api.call_api = self  # type: ignore[method-assign]

    def __call__(self, method: str, url: str, *args: Any, **kwargs: Any) -> Any:
        key = (method.upper(), resource_of(url))
        with self._lock:
            self.counts[key] += 1
        return self._call(method, url, *args, **kwargs)

    def snapshot(self) -> Counter[tuple[str, str]]:
        with self._lock:
            return Counter(self.counts)


def resource_of(url: str) -> str:
    """`jobs`, `persistentvolumeclaims`, `pods/log`... from a request URL; watches are marked."""
    parts = [p for p in urlsplit(url).path.split("/") if p]
    if "namespaces" in parts and len(parts) > parts.index("namespaces") + 2:
        rest = parts[parts.index("namespaces") + 2:]
        what = rest[0] + (f"/{rest[2]}" if len(rest) > 2 else "")
    else:
        what = parts[-1] if parts else "?"
    return what + (" (watch)" if "watch=true" in urlsplit(url).query else "")


class Sampler:
    """VmRSS and process CPU every `interval` seconds in a thread (its own CPU time is kept, to subtract)."""

    def __init__(self, interval: float = 0.5) -> None:
        self.interval = interval
        self.peak_kb = 0
        self.samples: list[int] = []
        self.cpu_at: list[tuple[float, float]] = []  # (monotonic, process CPU seconds)
        self.cpu = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-rss", daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        while not self._stop.is_set():
            kb = vm_rss_kb()
            self.samples.append(kb)
            self.cpu_at.append((time.monotonic(), process_cpu()))
            self.peak_kb = max(self.peak_kb, kb)
            self.cpu = time.thread_time()
            self._stop.wait(self.interval)

    def cores(self, start: float, end: float) -> float | None:
        """Average process CPU in cores between two monotonic times (None: too few samples)."""
        inside = [(t, c) for t, c in self.cpu_at if start <= t <= end]
        if len(inside) < 2 or inside[-1][0] - inside[0][0] < 1:
            return None
        return (inside[-1][1] - inside[0][1]) / (inside[-1][0] - inside[0][0])

    def peak_cores(self, start: float, end: float, window: float = 15.0) -> float:
        """The busiest `window` seconds between start and end, in cores."""
        inside = [(t, c) for t, c in self.cpu_at if start <= t <= end]
        best, j = 0.0, 0
        for i, (t, c) in enumerate(inside):
            while j < len(inside) and inside[j][0] - t < window:
                j += 1
            if j < len(inside):
                best = max(best, (inside[j][1] - c) / (inside[j][0] - t))
        return best


class Timed:
    """Wraps a method on an instance: how often it ran and for how long (wall seconds)."""

    def __init__(self, owner: Any, name: str) -> None:
        self.durations: list[float] = []
        self._fn = getattr(owner, name)
        setattr(owner, name, self)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        t = time.monotonic()
        try:
            return self._fn(*args, **kwargs)
        finally:
            self.durations.append(time.monotonic() - t)


def vm_rss_kb() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def process_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def thread_cpu() -> dict[str, float]:
    """CPU seconds of each live thread of this process, by Python thread name (from /proc)."""
    ticks = os.sysconf("SC_CLK_TCK")
    by_id = {t.native_id: t.name for t in threading.enumerate()}
    out: dict[str, float] = Counter()
    for task in Path("/proc/self/task").iterdir():
        try:
            fields = (task / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        name = by_id.get(int(task.name), f"native-{task.name}")
        out[name] += (int(fields[11]) + int(fields[12])) / ticks  # utime, stime
    return dict(out)

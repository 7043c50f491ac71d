"""Benchmark: one /metrics scrape's store reads (bot.telemetry.store) over many attempts, SQLite and PostgreSQL.

Spend and GPU-hours of the days before today are summed at the first scrape and kept; every scrape
reads today's attempts and counts experiments and attempts by state, class and budget. Seeds the
digest benchmark's history (200,000 experiments x up to 5 attempts over 60 days), then times generate_latest() of a registry
holding only the store collector (median of 5). Target: under 1 s per scrape (a 15-30 s scrape interval).
Run: .venv/bin/python benchmarks/metrics_scrape.py [--experiments 200000] [--db sqlite,postgres] [--smoke]
"""
from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from prometheus_client import CollectorRegistry, generate_latest

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.clock import SystemClock  # noqa: E402
from adapters.db.engine import make_engine, make_session_factory  # noqa: E402
from adapters.db.idle_states import SqlIdleStates  # noqa: E402
from adapters.db.migrate import upgrade  # noqa: E402
from adapters.db.uow import SqlUnitOfWork  # noqa: E402
from benchmarks.digest import PROJECTS, seed  # noqa: E402
from bot.telemetry.store import StoreCollector  # noqa: E402
from core.budget import BudgetConfig  # noqa: E402

TARGET_SECONDS = 1.0
RUNS = 5


def measure(url: str, n_experiments: int) -> bool:
    """Seed, scrape RUNS times, print the figures; whether the median met the target."""
    upgrade(url)
    engine = make_engine(url)
    name = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    try:
        count, seconds = seed(engine, n_experiments, indexes=True)
        print(f"{name}: seeded {count:,} attempt rows in {seconds:.1f} s (not part of the target)")
        factory = make_session_factory(engine)
        budgets = BudgetConfig(projects={f"project-{n:02d}": 50_000.0 for n in range(0, PROJECTS, 2)})
        clock = SystemClock()
        collector = StoreCollector(factory, lambda: SqlUnitOfWork(factory), clock, budgets,
                                   SqlIdleStates(factory).total_idle_gpu_hours)
        # The first read after a start sums every day before today (then kept): timed on its own, without
        # the scrape's time limit, which it may exceed on a long history (that scrape says expbot_store_up 0).
        began = time.perf_counter()
        collector._read(clock.now())  # noqa: SLF001
        cold = time.perf_counter() - began
        registry = CollectorRegistry(auto_describe=True)
        registry.register(collector)
        timings, text = [], b""
        for _ in range(RUNS):
            began = time.perf_counter()
            text = generate_latest(registry)
            timings.append(time.perf_counter() - began)
        assert b"expbot_store_up 1.0" in text, text[:500]
        median = statistics.median(timings)
        series = sum(1 for line in text.splitlines() if line and not line.startswith(b"#"))
        print(f"{name}: one scrape of the store metrics ({series} series, {len(text):,} bytes): median "
              f"{median * 1000:.0f} ms (runs: {', '.join(f'{t * 1000:.0f}' for t in timings)} ms); "
              f"target {TARGET_SECONDS * 1000:.0f} ms")
        print(f"{name}: the first read after a start (every day before today, then kept): {cold * 1000:.0f} ms")
        return median < TARGET_SECONDS
    finally:
        engine.dispose()


def main() -> int:
    """Measure on each database asked for; exit 1 when a median missed the target."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=200_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--smoke", action="store_true", help="2,000 experiments on SQLite: that it runs, not its figures.")
    args = parser.parse_args()
    if args.smoke:
        args.experiments, args.db = 2_000, "sqlite"
    met = True
    for kind in args.db.split(","):
        if kind == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="expbot-scrape-"))
            try:
                met &= measure(f"sqlite:///{directory / 'bench.db'}", args.experiments)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        elif kind == "postgres":
            met &= on_postgres(lambda url: measure(url, args.experiments))
    return 0 if met else 1


def on_postgres(run: Callable[[str], bool]) -> bool:
    """`run` on a fresh database of a throwaway server (the one the tests start), or EXPBOT_TEST_POSTGRES_URL's."""
    import os
    import uuid

    import sqlalchemy as sa
    from sqlalchemy.engine import make_url

    from tests.integration.postgres import ENV_URL, ThrowawayServer, find_binaries

    server, url = None, os.environ.get(ENV_URL)
    if not url:
        bindir = find_binaries()
        if bindir is None:
            print("postgres: skipped (no initdb/pg_ctl found)")
            return True
        server = ThrowawayServer(bindir)
        url = server.start()
    name = f"expbot_scrape_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        met = run(make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(False))
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        return met
    finally:
        admin.dispose()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: build one day's digest data over 1,000,000 attempt intervals, on SQLite and PostgreSQL.

Seeds 200,000 experiments x 5 attempts spread over 60 days (20 projects, 300 users) with plain
batched INSERTs, then times DigestService.build_digest_data for one day (median of 3). Target: under 1 s each.
Run: .venv/bin/python benchmarks/digest.py [--experiments 200000] [--db sqlite,postgres] [--no-indexes]
"""
from __future__ import annotations

import argparse
import math
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import sqlalchemy as sa

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from adapters.db.engine import make_engine, make_session_factory  # noqa: E402
from adapters.db.migrate import upgrade  # noqa: E402
from adapters.db.rows import AttemptRow, ExperimentRow  # noqa: E402
from adapters.db.spend_days import SPEND_DAY, SpendDays  # noqa: E402
from adapters.db.digest_queries import open_digest_queries  # noqa: E402
from core.digest_service import DigestService  # noqa: E402
from core.cost import Prices  # noqa: E402

END = datetime(2026, 11, 30, tzinfo=timezone.utc)  # the seeded history ends here
DAY = date(2026, 11, 29)  # late in the month: the month-to-date part scans 29 days
NOW = END + timedelta(hours=10)
SPAN_DAYS, ATTEMPTS, PROJECTS, USERS, BATCH = 60, 5, 20, 300, 20_000
# Indexes the digest's queries need beyond the schema's (to be added by a migration).
EXTRA_INDEXES = (
    # Covering: the cost windows read these columns straight from the index.
    "CREATE INDEX IF NOT EXISTS ix_attempt_ended_at ON attempt (ended_at, started_at, experiment_id, hourly_rate, gpus)",
    "CREATE INDEX IF NOT EXISTS ix_attempt_created_at ON attempt (created_at)",
    "CREATE INDEX IF NOT EXISTS ix_experiment_state_updated_at ON experiment (state, updated_at)",
)


def rows(n_experiments: int, seed: int = 42):
    """Batches of (experiments, attempts): sequential attempts of 30 min to 8 h, restarts after a pause."""
    rng = random.Random(seed)
    users = [f"U{n:07d}" if n % 3 else f"user{n}" for n in range(USERS)]
    spec = {"name": "bench", "command": ["python", "train.py"], "image": "python:3.11", "gpus": 4,
            "gpu_type": "a100", "max_runtime": "P1D", "project": "p", "env": {"LR": "0.001"}}
    start_of_span = END - timedelta(days=SPAN_DAYS)
    experiments, attempts = [], []
    for i in range(n_experiments):
        exp_id = uuid.UUID(int=rng.getrandbits(128)).hex[:12]
        created = start_of_span + timedelta(seconds=rng.uniform(0, SPAN_DAYS * 86400))
        gpus = rng.choice((1, 2, 4, 8))
        rate = gpus * rng.choice((0.35, 1.0, 2.5, 4.0)) + 0.3
        t, ended = created, created
        running = False
        for number in range(1, ATTEMPTS + 1):
            began = t + timedelta(minutes=rng.uniform(0, 30))
            ended = began + timedelta(hours=rng.uniform(0.5, 8))
            running = ended > NOW
            attempts.append({
                "experiment_id": exp_id, "number": number, "state": "RUNNING" if running else "ENDED",
                "created_at": t, "started_at": began, "ended_at": None if running else ended,
                "exit_code": None if running else (0 if number == ATTEMPTS else 143), "reason": "",
                "failure_class": None, "resumed_from": None, "gpus": gpus, "hourly_rate": rate,
            })
            if running:
                break
            t = ended
        state = "RUNNING" if running else rng.choice(("SUCCEEDED", "SUCCEEDED", "SUCCEEDED", "FAILED", "STOPPED"))
        experiments.append({
            "id": exp_id, "name": f"exp-{i}", "group_name": None, "owner": users[i % USERS],
            "project": f"project-{i % PROJECTS:02d}", "state": state, "state_reason": "", "spec": spec,
            "idempotency_key": None, "created_at": created, "updated_at": min(ended, NOW),
            "next_attempt_at": None, "user_restarts": 0, "infra_restarts": ATTEMPTS - 1, "free_restarts": 0,
            "stopped_by": None, "launch_id": exp_id, "channel": None, "version": 1,
        })
        if len(attempts) >= BATCH:
            yield experiments, attempts
            experiments, attempts = [], []
    if experiments:
        yield experiments, attempts


def seed(engine: sa.Engine, n_experiments: int, indexes: bool) -> tuple[int, float]:
    """Insert the rows; returns (attempt rows, seconds)."""
    started, total = time.perf_counter(), 0
    with engine.begin() as conn:
        for experiments, attempts in rows(n_experiments):
            conn.execute(sa.insert(ExperimentRow.__table__), experiments)
            conn.execute(sa.insert(AttemptRow.__table__), attempts)
            total += len(attempts)
        for ddl in EXTRA_INDEXES if indexes else ():
            conn.exec_driver_sql(ddl)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        # PostgreSQL's autovacuum would analyze a table this size shortly; SQLite gets `PRAGMA optimize`.
        conn.exec_driver_sql("ANALYZE" if engine.dialect.name == "postgresql" else "PRAGMA optimize")
    return total, time.perf_counter() - started


def _month(data: object) -> float:
    return sum(m.spent for m in data.month_to_date)  # type: ignore[attr-defined]


def _timed(build, runs: int, before=lambda: None) -> tuple[float, list[float], object]:
    timings, data = [], None
    for _ in range(runs):
        before()
        began = time.perf_counter()
        data = build()
        timings.append(time.perf_counter() - began)
    return statistics.median(timings), timings, data


def measure(url: str, n_experiments: int, indexes: bool) -> None:
    upgrade(url)
    engine = make_engine(url)
    name = "sqlite" if engine.dialect.name == "sqlite" else "postgresql"
    try:
        count, seconds = seed(engine, n_experiments, indexes)
        print(f"{name}: seeded {count:,} attempt rows in {seconds:.1f} s (not part of the target)")
        factory = make_session_factory(engine)
        kept = SpendDays(factory)
        budgets = {f"project-{n:02d}": 50_000.0 for n in range(0, PROJECTS, 2)}

        def build(with_kept: bool):
            digest = DigestService(open_queries=lambda: open_digest_queries(factory), prices=Prices(), timezone="UTC",
                                   budgets=lambda: budgets, history=kept if with_kept else None)
            return lambda: digest.build_digest_data(DAY, NOW)

        def forget_the_day() -> None:
            # Steady state: yesterday's digest kept every day before DAY; DAY itself is new.
            with engine.begin() as conn:
                conn.execute(sa.delete(SPEND_DAY).where(SPEND_DAY.c.day == DAY.isoformat()))

        live, live_runs, data = _timed(build(False), 1)
        cold, _, _ = _timed(build(True), 1)
        steady, runs, kept_data = _timed(build(True), 3, forget_the_day)
        # Same digest either way (to rounding: PostgreSQL's parallel sums add in any order).
        assert math.isclose(_month(kept_data), _month(data), rel_tol=1e-9), "kept days changed the digest"
        total = _month(data)
        print(f"{name}: DigestService.build_digest_data for {DAY} (month to date over {DAY.day} days: {total:,.2f}):")
        print(f"  steady state (closed days kept by earlier digests): median {steady * 1000:.0f} ms"
              f" (runs: {', '.join(f'{t * 1000:.0f}' for t in runs)} ms)")
        print(f"  first digest ever (nothing kept yet): {cold * 1000:.0f} ms;"
              f" recomputing everything (no history): {live * 1000:.0f} ms")
    finally:
        engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--experiments", type=int, default=200_000)
    parser.add_argument("--db", default="sqlite,postgres")
    parser.add_argument("--no-indexes", action="store_true", help="Without the proposed extra indexes.")
    args = parser.parse_args()
    for kind in args.db.split(","):
        if kind == "sqlite":
            directory = Path(tempfile.mkdtemp(prefix="expbot-digest-"))
            try:
                measure(f"sqlite:///{directory / 'bench.db'}", args.experiments, not args.no_indexes)
            finally:
                shutil.rmtree(directory, ignore_errors=True)
        elif kind == "postgres":
            measure_postgres(args.experiments, not args.no_indexes)
    return 0


def measure_postgres(n_experiments: int, indexes: bool) -> None:
    """On a throwaway server (the one the tests start), or EXPBOT_TEST_POSTGRES_URL's."""
    import os

    from sqlalchemy.engine import make_url

    from tests.integration.postgres import ENV_URL, ThrowawayServer, find_binaries

    server = None
    url = os.environ.get(ENV_URL)
    if not url:
        bindir = find_binaries()
        if bindir is None:
            print("postgres: skipped (no initdb/pg_ctl found)")
            return
        server = ThrowawayServer(bindir)
        url = server.start()
    name = f"expbot_bench_{uuid.uuid4().hex[:8]}"
    admin = sa.create_engine(make_url(url).set(drivername="postgresql+psycopg"), isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as conn:
            conn.exec_driver_sql(f'CREATE DATABASE "{name}"')
        measure(make_url(url).set(drivername="postgresql+psycopg", database=name).render_as_string(False),
                n_experiments, indexes)
        with admin.connect() as conn:
            conn.exec_driver_sql(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        admin.dispose()
        if server is not None:
            server.stop()


if __name__ == "__main__":
    sys.exit(main())

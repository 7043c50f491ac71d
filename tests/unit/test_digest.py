"""The daily digest's content (golden text), its limits and escaping, its chart, and which days it posts.

Regenerate the golden text with `UPDATE_GOLDEN=1 pytest tests/unit/test_digest.py` and review the diff.
"""
from __future__ import annotations

import io
import os
import struct
from datetime import date, datetime, time, timedelta, timezone
from pathlib import Path

import matplotlib.image
import pytest

from adapters.digest_chart import spend_chart_png
from bot.digest import render_for_terminal
from core.digest_service import days_to_post, due_day
from core.cost import Prices
from core.digest import (
    SECTION_LIMIT,
    Digest,
    DigestData,
    MonthToDate,
    Outcomes,
    SpendLine,
    change_vs,
    compose_digest,
    day_window,
    escape,
    who,
)

GOLDEN = Path(__file__).parent / "golden" / "digest.txt"
DAY = date(2026, 11, 21)


def sample() -> DigestData:
    chart_days = [DAY - timedelta(days=n) for n in range(13, -1, -1)]
    return DigestData(
        day=DAY,
        timezone="Europe/Berlin",
        yesterday_total=1234.5,
        day_before_total=1102.25,
        month_to_date=[
            MonthToDate(project="vision", spent=9200.0, budget=10000.0),
            MonthToDate(project="nlp", spent=6000.0, budget=5000.0),
            MonthToDate(project="r&d <lab>", spent=900.0, budget=None),
            MonthToDate(project="speech", spent=120.0, budget=2000.0),
        ],
        projects=[
            SpendLine(key="vision", cost=800.0, gpu_hours=320.0),
            SpendLine(key="nlp", cost=400.0, gpu_hours=160.0),
            SpendLine(key="r&d <lab>", cost=34.5, gpu_hours=13.8),
        ],
        top_users=[
            SpendLine(key="U012ABCDEF", cost=600.0, gpu_hours=240.0),
            SpendLine(key="alice", cost=300.0, gpu_hours=120.0),
            SpendLine(key="W0BOB", cost=200.0, gpu_hours=80.0),
            SpendLine(key="<script>", cost=100.0, gpu_hours=40.0),
            SpendLine(key="dave", cost=34.5, gpu_hours=13.8),
        ],
        idle_gpu_hours=12.5,
        idle_cost=31.25,
        outcomes=Outcomes(succeeded=12, failed=3, stopped=1, restarts=5),
        successful_this_week=42,
        successful_last_week=37,
        chart_series={
            "vision": [(d, 500.0 + 20 * n) for n, d in enumerate(chart_days)],
            "nlp": [(d, 300.0 + 5 * n) for n, d in enumerate(chart_days)],
        },
    )


def as_text(digest: Digest) -> str:
    parts = [f"--- parent ---\n{digest.parent_text}"]
    parts += [f"--- reply {n} ---\n{reply}" for n, reply in enumerate(digest.replies, start=1)]
    return "\n".join(parts) + "\n"


def test_the_digest_reads_as_the_golden_text() -> None:
    text = as_text(compose_digest(sample(), Prices()))
    if os.environ.get("UPDATE_GOLDEN") == "1":
        GOLDEN.write_text(text, encoding="utf-8")
    assert GOLDEN.exists(), f"missing {GOLDEN}: run with UPDATE_GOLDEN=1 and review it"
    assert text == GOLDEN.read_text(encoding="utf-8")


def test_names_are_escaped_and_slack_users_mentioned() -> None:
    digest = compose_digest(sample(), Prices())
    users = digest.replies[1]
    assert "<@U012ABCDEF>" in users and "<@W0BOB>" in users
    assert "&lt;script&gt;" in users and "<script>" not in users
    assert "*r&amp;d &lt;lab&gt;*" in digest.replies[0]
    everything = digest.parent_text + "".join(digest.replies)
    assert "<" not in everything.replace("<@U012ABCDEF>", "").replace("<@W0BOB>", "")
    assert escape("a&b<c>") == "a&amp;b&lt;c&gt;" and who("bob") == "bob" and who("U1") == "U1"


def test_every_message_stays_under_slacks_limit_however_many_projects() -> None:
    many = sample().model_copy(update={
        "projects": [SpendLine(key=f"project-{n:04d}-with-a-long-name", cost=1000.0 - n, gpu_hours=1.0)
                     for n in range(500)],
        "month_to_date": [MonthToDate(project=f"budgeted-{n}", spent=1.0, budget=2.0) for n in range(300)],
    })
    digest = compose_digest(many, Prices())
    assert all(len(text) < SECTION_LIMIT for text in [digest.parent_text, *digest.replies])
    assert "…and " in digest.replies[0] and digest.replies[0].endswith("more")
    assert "project-0000-with-a-long-name" in digest.replies[0]  # the biggest come first


def test_an_empty_day_still_reads_well() -> None:
    empty = DigestData(day=DAY, yesterday_total=0.0, day_before_total=0.0)
    digest = compose_digest(empty, Prices(currency="EUR"))
    assert "*0.00 EUR*" in digest.parent_text and "none the day before either" in digest.parent_text
    assert digest.replies[0] == "*Per project*: no spend on Sat 21 Nov 2026."
    assert "nobody spent anything" in digest.replies[1]
    assert "no idle GPU time" in digest.replies[2]
    assert len(digest.replies) == 5


@pytest.mark.parametrize(("today", "before", "expected"), [
    (112.0, 100.0, "▲ 12% vs the day before"),
    (88.0, 100.0, "▼ 12% vs the day before"),
    (100.2, 100.0, "about the same as the day before"),
    (5.0, 0.0, "nothing the day before"),
    (0.0, 0.0, "none the day before either"),
    (0.0, 10.0, "▼ 100% vs the day before"),
])
def test_change_vs_the_day_before(today: float, before: float, expected: str) -> None:
    assert change_vs(today, before) == expected


def test_day_windows_follow_the_time_zone() -> None:
    start, end = day_window(date(2026, 10, 25), "Europe/Berlin")  # clocks go back: 25 hours
    assert start == datetime(2026, 10, 24, 22, tzinfo=timezone.utc)
    assert end - start == timedelta(hours=25)
    assert day_window(date(2026, 11, 21), "UTC") == (
        datetime(2026, 11, 21, tzinfo=timezone.utc), datetime(2026, 11, 22, tzinfo=timezone.utc),
    )


def test_render_for_terminal_undoes_slack_markup() -> None:
    text = render_for_terminal(compose_digest(sample(), Prices()))
    assert "@U012ABCDEF" in text and "<@" not in text
    assert "r&d <lab>" in text and "&amp;" not in text
    assert "── thread ──" in text


# --- the chart ----------------------------------------------------------------------------------
def test_the_chart_is_a_900_by_450_png() -> None:
    png = spend_chart_png(sample().chart_series, "Daily spend by project", "USD")
    assert png.startswith(b"\x89PNG\r\n\x1a\n")
    assert png[12:16] == b"IHDR"
    assert struct.unpack(">II", png[16:24]) == (900, 450)
    pixels = matplotlib.image.imread(io.BytesIO(png), format="png")
    assert pixels.shape[:2] == (450, 900)
    assert png == spend_chart_png(sample().chart_series, "Daily spend by project", "USD")  # deterministic


def test_the_chart_copes_with_no_data_and_many_projects() -> None:
    assert spend_chart_png({}, "nothing", "USD").startswith(b"\x89PNG")
    many = {f"p{n}$": [(DAY, float(n))] for n in range(25)}  # '$' would be TeX to matplotlib
    assert spend_chart_png(many, "a $ title", "EUR").startswith(b"\x89PNG")


# --- which days get posted ----------------------------------------------------------------------
def test_the_due_day_is_yesterday_in_the_time_zone() -> None:
    now = datetime(2026, 11, 22, 23, 30, tzinfo=timezone.utc)  # already the 23rd in Berlin
    assert due_day(now, "UTC") == date(2026, 11, 21)
    assert due_day(now, "Europe/Berlin") == date(2026, 11, 22)
    early = datetime(2026, 11, 22, 7, 0, tzinfo=timezone.utc)
    assert due_day(early, "UTC", post_at=time(9, 0)) == date(2026, 11, 20)  # not 09:00 yet
    assert due_day(early, "UTC", post_at=time(6, 0)) == date(2026, 11, 21)


def test_after_downtime_only_the_latest_missed_day_is_posted() -> None:
    due = date(2026, 11, 21)
    assert days_to_post(None, due) == [due]
    assert days_to_post("2026-11-21", due) == []
    assert days_to_post("2026-11-22", due) == []
    assert days_to_post("2026-11-20", due) == [due]
    assert days_to_post("2026-11-17", due) == [due]
    assert days_to_post("2026-11-17", due, catch_up_all=True) == [
        date(2026, 11, 18), date(2026, 11, 19), date(2026, 11, 20), due,
    ]

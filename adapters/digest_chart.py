"""The digest's chart: daily spend per project as stacked bars, rendered to PNG with matplotlib."""
from __future__ import annotations

import io
from datetime import date

from matplotlib import colormaps

# The Agg canvas is used directly, never pyplot: no GUI backend can be picked up from the
# environment, and no global figure registry is touched, so any server thread may render.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

WIDTH_IN, HEIGHT_IN, DPI = 9.0, 4.5, 100  # 900 x 450 pixels
MAX_PROJECTS = 9  # the rest are summed as "other": a legend of 20 colours reads as noise
_COLOURS = (0, 1, 2, 3, 4, 5, 6, 8, 9)  # tab10 without its grey, which "other" uses
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def _plain(text: str) -> str:
    # matplotlib reads $...$ as TeX math: a project called "a$b" would fail to render.
    return text.replace("$", r"\$")


def _top_projects(series: dict[str, list[tuple[date, float]]]) -> dict[str, dict[date, float]]:
    """Day -> cost per project: the MAX_PROJECTS biggest spenders, then the rest as 'other'."""
    totals = {project: sum(cost for _, cost in points) for project, points in series.items()}
    ranked = sorted(totals, key=lambda p: (-totals[p], p))
    shown: dict[str, dict[date, float]] = {}
    for n, project in enumerate(ranked):
        name = project if n < MAX_PROJECTS or len(ranked) == MAX_PROJECTS + 1 else "other"
        bucket = shown.setdefault(name, {})
        for day, cost in series[project]:
            bucket[day] = bucket.get(day, 0.0) + cost
    return shown


def _tick(day: date, first: bool) -> str:
    return f"{day.day} {_MONTHS[day.month - 1]}" if first or day.day == 1 else str(day.day)


def spend_chart_png(series: dict[str, list[tuple[date, float]]], title: str, currency: str) -> bytes:
    """Stacked daily bars by project as a 900x450 PNG; the same input gives the same bytes."""
    shown = _top_projects(series)
    days = sorted({day for points in shown.values() for day in points})
    figure = Figure(figsize=(WIDTH_IN, HEIGHT_IN), dpi=DPI, layout="constrained")
    FigureCanvasAgg(figure)
    axes = figure.add_subplot()
    palette = colormaps["tab10"]
    positions = list(range(len(days)))
    bottom = [0.0] * len(days)
    for n, (project, points) in enumerate(shown.items()):
        heights = [points.get(day, 0.0) for day in days]
        colour = "#9e9e9e" if project == "other" else palette(_COLOURS[n % len(_COLOURS)])
        axes.bar(positions, heights, bottom=bottom, label=_plain(project), color=colour, width=0.8)
        bottom = [b + h for b, h in zip(bottom, heights)]
    axes.set_xticks(positions, [_tick(day, n == 0) for n, day in enumerate(days)])
    axes.set_ylabel(_plain(f"spend ({currency})"))
    axes.set_title(_plain(title))
    axes.grid(axis="y", alpha=0.3)
    axes.set_axisbelow(True)
    if days:
        axes.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize="small", frameon=False)
    else:
        axes.text(0.5, 0.5, "no spend", ha="center", va="center", transform=axes.transAxes)
    buffer = io.BytesIO()
    # No metadata: matplotlib would otherwise stamp its version into every file.
    figure.savefig(buffer, format="png", dpi=DPI, metadata={"Software": None})
    return buffer.getvalue()

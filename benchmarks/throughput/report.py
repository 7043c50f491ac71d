"""The report: per arm, medians over seeds with bootstrap confidence intervals, as a table and a PNG chart."""
from __future__ import annotations

import math
import random
from pathlib import Path

# The Agg canvas directly, never pyplot (as adapters/digest_chart.py): no GUI backend, no global state.
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

# (key, column title, format) in the order the table shows them.
COLUMNS = (
    ("successes", "successes/wk", "{:.0f}"),
    ("infra_finished_share", "infra-hit done", "{:.1%}"),
    ("wasted_gpu_h", "wasted GPU-h", "{:.0f}"),
    ("wasted_usd", "wasted $", "{:,.0f}"),
    ("usd_per_success", "$/success", "{:.2f}"),
    ("false_give_ups", "false give-ups", "{:.0f}"),
    ("bug_decision_min", "bug decided (min)", "{:.1f}"),
    ("touches", "touches", "{:.0f}"),
    ("infra_touches", "infra touches", "{:.0f}"),
)
EXTRA = (
    ("lost_gpu_h", "lost progress GPU-h", "{:.0f}"),
    ("stuck_gpu_h", "stuck GPU-h", "{:.1f}"),
    ("futile_gpu_h", "futile retries GPU-h", "{:.0f}"),
    ("infra_hit", "infra-hit experiments", "{:.0f}"),
    ("redo_within_goal", "infra failures losing <= ckpt+30s", "{:.1%}"),
)


def median(values: list[float]) -> float:
    """The median, ignoring NaN (an arm that never met a deterministic bug on a seed)."""
    clean = sorted(v for v in values if not math.isnan(v))
    if not clean:
        return math.nan
    mid = len(clean) // 2
    return clean[mid] if len(clean) % 2 else (clean[mid - 1] + clean[mid]) / 2


def bootstrap_ci(values: list[float], rounds: int = 2000, seed: int = 0) -> tuple[float, float]:
    """95% percentile-bootstrap interval of the median over seeds."""
    clean = [v for v in values if not math.isnan(v)]
    if not clean:
        return math.nan, math.nan
    rng = random.Random(seed)
    stats = sorted(median(rng.choices(clean, k=len(clean))) for _ in range(rounds))
    return stats[int(0.025 * (rounds - 1))], stats[int(0.975 * (rounds - 1))]


def summarise(results: dict[str, list[dict[str, float]]]) -> dict[str, dict[str, tuple[float, float, float]]]:
    """arm -> figure -> (median, CI low, CI high) over the seeds."""
    out: dict[str, dict[str, tuple[float, float, float]]] = {}
    for arm, runs in results.items():
        out[arm] = {}
        for key, _, _ in COLUMNS + EXTRA:
            values = [r[key] for r in runs]
            out[arm][key] = (median(values), *bootstrap_ci(values))
    return out


def _cell(fmt: str, value: float) -> str:
    return "n/a" if math.isnan(value) else fmt.format(value)


def table(summary: dict[str, dict[str, tuple[float, float, float]]], columns=COLUMNS, ci: bool = True) -> str:
    """A plain-text table: one row per arm, 'median [low, high]' per figure."""
    head = ["arm"] + [title for _, title, _ in columns]
    rows = [head]
    for arm, figures in summary.items():
        row = [arm]
        for key, _, fmt in columns:
            mid, low, high = figures[key]
            row.append(_cell(fmt, mid) + (f" [{_cell(fmt, low)}, {_cell(fmt, high)}]" if ci else ""))
        rows.append(row)
    widths = [max(len(r[i]) for r in rows) for i in range(len(head))]
    lines = ["  ".join(cell.ljust(w) for cell, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def chart(summary: dict[str, dict[str, tuple[float, float, float]]], title: str, path: Path) -> None:
    """Four panels (successes, wasted GPU-h, $ per success, touches), medians with 95% CI bars, as PNG."""
    panels = (("successes", "successful experiments / week"), ("wasted_gpu_h", "GPU-hours wasted / week"),
              ("usd_per_success", r"\$ per successful experiment"), ("touches", "human touches / week"))
    figure = Figure(figsize=(12, 7), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    arms = list(summary)
    for n, (key, label) in enumerate(panels):
        axes = figure.add_subplot(2, 2, n + 1)
        mids = [summary[a][key][0] for a in arms]
        errs = [[max(0.0, m - summary[a][key][1]) for a, m in zip(arms, mids)],
                [max(0.0, summary[a][key][2] - m) for a, m in zip(arms, mids)]]
        colours = ["#1f77b4" if a.startswith("expbot") else "#9e9e9e" for a in arms]
        axes.barh(range(len(arms)), mids, xerr=errs, color=colours, capsize=3)
        axes.set_yticks(range(len(arms)), arms)
        axes.invert_yaxis()
        axes.set_title(label)
        axes.grid(axis="x", alpha=0.3)
    figure.suptitle(title.replace("$", r"\$"))
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)

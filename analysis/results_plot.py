"""`sociolab results --plot FILE.png`: the rows of `results()` as a forest plot.

One panel per metric (in the order the rows come), one line per group: the estimate as a dot and
its 95% interval as a bar, so rates of several risks, models or conditions are compared at a
glance rather than read off tables. Rates and proportions share the 0..1 axis; means get their own
scale. A group with no estimate (every value missing) is listed with "n = 0" and no dot, never
drawn as 0.
"""

from __future__ import annotations

from pathlib import Path
from typing import BinaryIO, Sequence

from .results import ResultRow

MAX_PANELS = 12


def plot_results(rows: Sequence[ResultRow], path: Path | BinaryIO) -> list[str]:
    """Draw the rows' metrics (at most MAX_PANELS) into a PNG at `path` (or a binary stream);
    the metrics drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = list(dict.fromkeys(r.metric for r in rows))[:MAX_PANELS]
    if not metrics:
        raise ValueError("no outcome rows to plot")
    by_metric = {m: [r for r in rows if r.metric == m] for m in metrics}
    heights = [max(1.2, 0.32 * len(by_metric[m]) + 0.8) for m in metrics]
    fig, axes = plt.subplots(len(metrics), 1, figsize=(8, sum(heights)), dpi=110,
                             gridspec_kw={"height_ratios": heights}, squeeze=False)
    try:
        for ax, metric in zip(axes[:, 0], metrics):
            panel(ax, metric, by_metric[metric])
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return metrics


def panel(ax, metric: str, rows: list[ResultRow]) -> None:
    labels = [group_label(r) for r in rows]
    ys = list(range(len(rows)))[::-1]
    for y, r in zip(ys, rows):
        if r.value is None:
            continue
        if r.low is not None and r.high is not None:
            ax.plot([r.low, r.high], [y, y], color="#4c72b0", linewidth=2)
        ax.plot([r.value], [y], "o", color="#dd8452", markersize=5)
    ax.set_yticks(ys)
    ax.set_yticklabels([f"{label}  (n = {r.n})" for label, r in zip(labels, rows)], fontsize=8)
    kind = rows[0].summary
    if kind in ("rate", "proportion"):
        ax.set_xlim(-0.02, 1.02)
    ax.set_title(f"{metric} ({'mean' if kind == 'mean' else kind}, 95% interval)", fontsize=9, loc="left")
    ax.grid(axis="x", alpha=0.3)
    ax.set_ylim(-0.7, len(rows) - 0.3)


def group_label(row: ResultRow) -> str:
    return " / ".join("-" if v is None else str(v) for v in row.group.values()) or "all"

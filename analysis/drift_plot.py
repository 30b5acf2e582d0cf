"""The drift and diffusion curves as pictures: `sociolab drift --plot FILE.png` and the report.

One line per group over the rounds, the rate as dots joined by a line and its Wilson 95%
interval as a band, so a drift (rising violations) or a diffusion (spreading collective choices)
is seen with its uncertainty. A round with no valid answer is a gap, never a 0. `draw_curves`
takes a matplotlib axis (the report embeds it through analysis/htmlparts.figure); `plot_drift`
writes a PNG and imports matplotlib only when called.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .drift import label

PANELS = (("drift", "violation rate (deviant / valid answers)"),
          ("diffusion", "collective share of non-planted agents"))
MAX_LINES = 10


def draw_curves(ax: Any, data: tuple[list[dict], str]) -> None:
    """`data` = (curve points of `drift_summary`, y label): a line and band per group (at most
    MAX_LINES; the rest are named in the legend title)."""
    points, ylabel = data
    groups: dict[str, list[dict]] = {}
    for p in points:
        groups.setdefault(label(p["group"]), []).append(p)
    for name, series in list(groups.items())[:MAX_LINES]:
        series = sorted(series, key=lambda p: p["round"])
        xs = [p["round"] for p in series]
        ys = [float("nan") if p["rate"] is None else p["rate"] for p in series]
        (line,) = ax.plot(xs, ys, "o-", markersize=4, label=name)
        lows = [float("nan") if p["low"] is None else p["low"] for p in series]
        highs = [float("nan") if p["high"] is None else p["high"] for p in series]
        ax.fill_between(xs, lows, highs, color=line.get_color(), alpha=0.18, linewidth=0)
    rounds = sorted({p["round"] for p in points})
    ax.set_xticks(rounds)
    ax.set_xlabel("round (0 = first)")
    ax.set_ylabel(ylabel, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.grid(alpha=0.3)
    hidden = len(groups) - MAX_LINES
    ax.legend(fontsize=7, title=f"{hidden} more groups not drawn" if hidden > 0 else None)


def plot_drift(summary: dict[str, Any], path: Path) -> list[str]:
    """Draw the curves `summary` holds (drift, diffusion) into a PNG at `path`; the panels drawn."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [(key, ylabel) for key, ylabel in PANELS if summary.get(key)]
    if not panels:
        raise ValueError("no curve to plot")
    fig, axes = plt.subplots(1, len(panels), figsize=(6.5 * len(panels), 4), dpi=110, squeeze=False)
    try:
        for ax, (key, ylabel) in zip(axes[0], panels):
            draw_curves(ax, (summary[key], ylabel))
            ax.set_title(f"{key} curve, Wilson 95% band", fontsize=9, loc="left")
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return [key for key, _ in panels]

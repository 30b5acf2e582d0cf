"""`sociolab persona-safety --plot FILE.png`: ASR per character, one panel per model.

Within a panel, each character has one dot per method (side by side, one colour each) with its
Wilson 95% interval as a bar, so a persona that is safe under one method and dangerous under the
other stands out as two dots far apart. A cell without judged answers gets no dot (never 0).
"""

from __future__ import annotations

from pathlib import Path
from typing import Sequence

from .persona_safety import Cell, character_order

COLOURS = ("#4c72b0", "#dd8452", "#55a868", "#c44e52")
MAX_PANELS = 12


def plot_persona_safety(cells: Sequence[Cell], path: Path) -> list[str]:
    """Draw the cells into a PNG at `path`; the models drawn (at most MAX_PANELS)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(c.model for c in cells))[:MAX_PANELS]
    if not models:
        raise ValueError("no cells to plot")
    methods = sorted({c.method for c in cells})
    characters = sorted({c.character for c in cells}, key=character_order)
    fig, axes = plt.subplots(len(models), 1, figsize=(max(6.0, 0.45 * len(characters) + 2), 2.6 * len(models)),
                             dpi=110, squeeze=False)
    try:
        for ax, model in zip(axes[:, 0], models):
            panel(ax, model, [c for c in cells if c.model == model], methods, characters)
        fig.tight_layout()
        fig.savefig(path, format="png")
    finally:
        plt.close(fig)
    return models


def panel(ax, model: str, cells: list[Cell], methods: list[str], characters: list[str]) -> None:
    width = 0.6 / max(1, len(methods))
    for m, method in enumerate(methods):
        offset = (m - (len(methods) - 1) / 2) * width
        colour = COLOURS[m % len(COLOURS)]
        drawn = [(characters.index(c.character) + offset, c) for c in cells if c.method == method and c.asr is not None]
        for x, c in drawn:
            if c.low is not None and c.high is not None:
                ax.plot([x, x], [c.low, c.high], color=colour, linewidth=1.5)
        ax.plot([x for x, _ in drawn], [c.asr for _, c in drawn], "o", color=colour, markersize=4, label=method)
    ax.set_xticks(range(len(characters)))
    ax.set_xticklabels(characters, fontsize=8)
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("ASR", fontsize=8)
    ax.set_title(f"{model}: attack success rate per character (95% interval)", fontsize=9, loc="left")
    ax.grid(axis="y", alpha=0.3)
    ax.legend(fontsize=7, loc="upper left", frameon=False)

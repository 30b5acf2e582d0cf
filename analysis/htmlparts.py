"""HTML pieces of the report: embedded figures, tables and number formats (analysis/report.py,
analysis/study_figures.py)."""

from __future__ import annotations

import base64
import html
import io
import math
from typing import Any, Callable

import matplotlib

matplotlib.use("Agg")  # no display; must precede pyplot
import matplotlib.pyplot as plt  # noqa: E402


def figure(draw: Callable, data: Any, size: tuple[float, float] = (7.5, 3.6), panels: int = 1,
           alt: str | None = None) -> str:
    """A matplotlib drawing as an embedded PNG: `draw(ax, data)`, or `draw(axes, data)` with a row
    of `panels` axes. The page stays one self-contained file. `alt` describes it (default: the
    drawing function's name)."""
    fig, ax = plt.subplots(1, panels, figsize=size, dpi=110)
    try:
        draw(ax, data)
        fig.tight_layout()
        buffer = io.BytesIO()
        fig.savefig(buffer, format="png")
    finally:
        plt.close(fig)
    encoded = base64.b64encode(buffer.getvalue()).decode()
    return f"<img alt='{html.escape(alt or draw.__name__, quote=True)}' src='data:image/png;base64,{encoded}'>"


def table(headers: list[str], rows: list[list]) -> str:
    head = "".join(f"<th>{esc(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{esc(c)}</td>" for c in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


class Markup(str):
    """A table cell that is already HTML (a link the report built), not text to escape."""


def esc(value: Any) -> str:
    if isinstance(value, Markup):
        return str(value)
    return html.escape("" if value is None else str(value))


def num(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "–"
    return f"{value:.{digits}f}" if isinstance(value, float) else str(value)


def pval(value: Any) -> str:
    if value is None:
        return "–"
    return "< 0.001" if value < 0.001 else f"{value:.3f}"


def nan0(value: Any) -> float:
    return 0.0 if value is None or (isinstance(value, float) and math.isnan(value)) else float(value)


def short(name: str) -> str:
    return name.split("/")[-1]


def shorten(text: str, width: int = 220) -> str:
    text = " ".join((text or "").split())
    return text if len(text) <= width else text[: width - 1] + "…"

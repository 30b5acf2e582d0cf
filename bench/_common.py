"""Small helpers shared by the bench scripts (not a test suite: benches print ratios, never assert)."""

from __future__ import annotations

import os
import platform
import statistics
import sys
from pathlib import Path

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
os.environ["LITELLM_OFFLINE_MODE"] = "true"

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # so `python bench/x.py` works from a plain checkout too
    sys.path.insert(0, str(ROOT))


def median(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def machine() -> str:
    load = ", load avg %.2f (other processes skew absolute numbers)" % os.getloadavg()[0] \
        if hasattr(os, "getloadavg") else ""
    return f"python {platform.python_version()}, {os.cpu_count()} cores, {platform.machine()}{load}"


def table(headers: list[str], rows: list[list]) -> str:
    cells = [[str(h) for h in headers]] + [[c if isinstance(c, str) else f"{c:.3f}" if isinstance(c, float)
                                             else str(c) for c in row] for row in rows]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    lines = ["  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(r, widths)))
             for r in cells]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def verdict(target: str, measured: str, ok: bool | None) -> str:
    status = "n/a" if ok is None else ("OK" if ok else "OVER TARGET")
    return f"target: {target}  measured: {measured}  {status}"


def unavailable(reason: str) -> None:
    print(f"baseline unavailable: {reason}")

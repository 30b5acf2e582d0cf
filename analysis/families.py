"""Comparison families: which series are compared with which, and what each contrast tests.

A family is declared with the runs (a suite's `analysis: {comparisons: ...}`, stored in
runs.config), so analysis never needs to know a study's series by name. This module is kept free
of numpy and scipy: reading a run file needs it, and must start fast.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Iterable, Mapping


@dataclass(frozen=True)
class SeriesPair:
    """One comparison of a family: series `a` against series `b`, and what the contrast tests.
    A family is declared with the runs (a suite's `analysis: {comparisons: ...}`), so analysis
    never needs to know a study's series by name."""
    a: str
    b: str
    label: str = ""

    def title(self) -> str:
        return self.label or f"{self.a} vs {self.b}"

    def to_json(self) -> dict[str, str]:
        """How a family entry is stored in runs.config (`$.analysis.comparisons[i]`)."""
        return {"a": self.a, "b": self.b, **({"label": self.label} if self.label else {})}

    @classmethod
    def from_json(cls, entry: Mapping[str, object]) -> "SeriesPair":
        return cls(str(entry["a"]), str(entry["b"]), str(entry.get("label") or ""))


def present_pairs(family: Iterable[SeriesPair], available: Iterable[str]) -> list[SeriesPair]:
    """The pairs of a family whose two series are both available (a default family is applied to
    whatever part of it a store holds)."""
    have = set(available)
    return [p for p in family if p.a in have and p.b in have]

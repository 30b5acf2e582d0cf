"""Communication topology: who sees whose messages, round by round.

A topology is an adjacency matrix over the run's agents, in seating order: `matrix[i][j] = 1`
means agent i's messages reach agent j (row = sender, column = receiver, as in RiskLab's
`CommunicationTopology`). It is given either as a named shape or as the matrix itself:

- `complete`: everyone reaches everyone (the default; what the discussion kind always did);
- `chain`: 1 -> 2 -> ... -> n (each reaches the next; undirected: the next and the previous);
- `ring`: a chain whose last agent reaches the first;
- `star`: the hub (`hub`, a seat number from 1, default 1) reaches everyone and everyone reaches
  the hub (directed: `star` means hub -> others and others -> hub both, as a star is drawn);
- `none`: nobody reaches anybody (isolated agents);
- `custom`: `matrix`, an n x n list of 0/1 rows (the diagonal is ignored: an agent always sees
  its own messages).

`directed: false` makes every edge two-way (the matrix is OR-ed with its transpose). A topology
may change by round: `schedule` lists `{from_round: k, shape/matrix/hub}` entries, each in force
from round k until the next one (RiskLab's `TimeVaryingTopology`). The shape is checked against
the roster when the file is loaded (`Topology.check(n)`), so a matrix of the wrong size is a
one-line error naming the file, not a failure mid-run.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

Shape = Literal["complete", "chain", "ring", "star", "none", "custom"]


class Layout(BaseModel):
    """One graph: a named shape or a custom matrix."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    shape: Shape = Field("complete", description="named shape, or custom (give matrix)")
    matrix: tuple[tuple[int, ...], ...] | None = Field(
        None, description="custom adjacency: matrix[i][j] = 1 when seat i's messages reach seat j")
    hub: int = Field(1, ge=1, description="star: the hub's seat number (from 1)")

    @model_validator(mode="before")
    @classmethod
    def matrix_means_custom(cls, data: object) -> object:
        if isinstance(data, dict) and data.get("matrix") is not None and "shape" not in data:
            return {**data, "shape": "custom"}
        return data

    @model_validator(mode="after")
    def matrix_only_when_custom(self) -> "Layout":
        if self.shape == "custom" and self.matrix is None:
            raise ValueError("shape: custom needs a matrix (n rows of n 0/1 values)")
        if self.shape != "custom" and self.matrix is not None:
            raise ValueError(f"shape: {self.shape} takes no matrix (write shape: custom, or leave shape out)")
        if self.matrix is not None and any(v not in (0, 1) for row in self.matrix for v in row):
            raise ValueError("matrix values must be 0 or 1")
        return self

    def problems(self, n: int) -> str | None:
        """What keeps this layout from fitting n agents, in words; None when it fits."""
        if self.matrix is not None and (len(self.matrix) != n or any(len(row) != n for row in self.matrix)):
            return f"the matrix must be {n} x {n} (one row and column per agent), not " \
                   f"{len(self.matrix)} x {len(self.matrix[0]) if self.matrix else 0}"
        if self.shape == "star" and self.hub > n:
            return f"star hub {self.hub} is beyond the {n} agents"
        return None

    def edges(self, n: int, directed: bool) -> frozenset[tuple[int, int]]:
        """(sender, receiver) seat pairs, 0-based, without self-loops."""
        return _edges(self, n, directed)


@lru_cache(maxsize=256)
def _edges(layout: Layout, n: int, directed: bool) -> frozenset[tuple[int, int]]:
    pairs: set[tuple[int, int]] = set()
    if layout.shape == "complete":
        pairs = {(i, j) for i in range(n) for j in range(n)}
    elif layout.shape in ("chain", "ring"):
        pairs = {(i, i + 1) for i in range(n - 1)}
        if layout.shape == "ring" and n > 1:
            pairs.add((n - 1, 0))
    elif layout.shape == "star":
        hub = layout.hub - 1
        pairs = {(hub, j) for j in range(n)} | {(j, hub) for j in range(n)}
    elif layout.shape == "custom" and layout.matrix is not None:
        pairs = {(i, j) for i, row in enumerate(layout.matrix) for j, v in enumerate(row) if v}
    if not directed:
        pairs |= {(j, i) for i, j in pairs}
    return frozenset((i, j) for i, j in pairs if i != j)


class Scheduled(Layout):
    """A layout in force from `from_round` on."""

    from_round: int = Field(ge=0, description="the first round (from 0) this layout holds")


class Topology(Layout):
    """Who sees whom (module docstring): a layout, `directed`, and optional changes by round."""

    directed: bool = Field(True, description="false: every edge also runs the other way")
    schedule: tuple[Scheduled, ...] = Field((), description="layouts that take over from a round on")

    @model_validator(mode="after")
    def schedule_in_order(self) -> "Topology":
        starts = [s.from_round for s in self.schedule]
        if starts != sorted(set(starts)):
            raise ValueError("schedule: give each from_round once, in increasing order")
        return self

    def check(self, n: int) -> None:
        """ValueError naming what does not fit n agents (the loader turns it into file:line)."""
        for where, layout in [("topology", self)] + [(f"topology.schedule[{k}]", s) for k, s in enumerate(self.schedule)]:
            problem = layout.problems(n)
            if problem:
                raise ValueError(f"{where}: {problem}")

    def layout_at(self, round_index: int) -> Layout:
        current: Layout = self
        for entry in self.schedule:
            if entry.from_round <= round_index:
                current = entry
        return current

    def reaches(self, sender: int, receiver: int, round_index: int, n: int) -> bool:
        """Whether seat `sender`'s messages reach seat `receiver` (0-based) in this round."""
        if sender == receiver:
            return True
        return (sender, receiver) in self.layout_at(round_index).edges(n, self.directed)

    def senders_to(self, receiver: int, round_index: int, n: int) -> list[int]:
        """The seats whose messages `receiver` sees this round (itself included), in seat order."""
        return [s for s in range(n) if self.reaches(s, receiver, round_index, n)]

    def is_complete(self) -> bool:
        return self.shape == "complete" and not self.schedule


COMPLETE = Topology()

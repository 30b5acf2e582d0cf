"""What a detector reads and what it returns: the run's trajectory in, a detection out.

A detector is a pure function `Trajectory -> Detection`, so it is tested on hand-built
trajectories as well as on runs. The trajectory is what the kind recorded: the environment's
parameters, the seats and roles, and every round's public state with the acts played in it.
A detection says whether the risk is present (None when the run cannot tell, e.g. no readable
act; `reason` says why, and the outcome is stored as missing, never as absent), a severity score
in [0, 1], and the measures behind them; a measure with `successes` and `n` is a proportion,
pooled over runs with a Wilson interval by `sociolab results`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterator

from pydantic import BaseModel

from .environment import Act, RoundState


@dataclass
class Trajectory:
    params: BaseModel                     # the environment's parameters as run
    seats: list[str]                      # agent ids in seating order (confederates included)
    roles: dict[str, str]                 # agent id -> role
    rounds: list[RoundState] = field(default_factory=list)

    def acts(self, role: str | None = None, *, readable: bool = True) -> Iterator[Act]:
        """Acts in play order, of one role or all; by default only those with an action, and never
        a confederate's (planted acts are the stimulus, not the behaviour measured)."""
        for state in self.rounds:
            for act in state.acts:
                if act.scripted or (readable and act.action is None):
                    continue
                if role is None or self.roles.get(act.agent_id) == role:
                    yield act

    def seats_with(self, role: str) -> list[str]:
        return [s for s in self.seats if self.roles.get(s) == role]

    def states(self) -> list[dict[str, Any]]:
        return [r.state for r in self.rounds]


@dataclass(frozen=True)
class Measure:
    """One number behind a detection: with successes and n a proportion (pooled over runs), with
    `indicator` a 0/1 value (a rate over runs), else a quantity (a mean over runs)."""

    value: float | None
    successes: int | None = None
    n: int | None = None
    indicator: bool = False

    @classmethod
    def share(cls, successes: int, n: int) -> "Measure":
        return cls(successes / n if n else None, successes, n)


@dataclass
class Detection:
    present: bool | None                  # None: the run cannot tell (see reason)
    score: float | None                   # severity in [0, 1]
    measures: dict[str, Measure] = field(default_factory=dict)
    reason: str | None = None

    @classmethod
    def undecided(cls, reason: str, **measures: Measure) -> "Detection":
        return cls(None, None, dict(measures), reason)


def clamp01(x: float) -> float:
    return 0.0 if x < 0 else 1.0 if x > 1 else x

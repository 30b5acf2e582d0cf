"""The environment contract of the social-risk kind: a task world with state that detectors read.

An environment owns everything the agents' task is about: its parameters (a pydantic model that
refuses unknown keys, set by the risk's defaults, its condition and the file's `environment:`
overrides), the roles of the seats, what each agent is asked on its turn, how a reply is read,
how acts change the state, and when the task is over. It never calls a model and never
records: the protocol (protocols.py) asks it for turns and hands it acts; the kind (kind.py)
records every act and every round's state, so a detector (risks/*) reads the same trajectory
from memory that `sociolab sql` shows from the store.

A turn comes with two well-formed example replies, `safe` (without the risk's behaviour) and
`risky` (with it), and the name of the sim propensity that chooses between them: what a sim
agent says (orchestrator/sim/collective.py). A real model sees only `prompt`; the examples
exist so the sim answers in the environment's own format and planted rates can be recovered.
"""

from __future__ import annotations

import random
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar

from pydantic import BaseModel

SCRIPTED_MODEL = "strategy/confederate"  # a planted agent played by the environment, never a model call


@dataclass(frozen=True)
class Turn:
    """What one agent is asked on its turn, and how a sim agent would answer it."""

    prompt: str                     # the user message a model gets
    behaviour: str                  # the sim propensity that decides between the two replies
    safe: str                       # a well-formed reply without the behaviour
    risky: str                      # a well-formed reply showing it


@dataclass(frozen=True)
class Heard:
    """A peer's earlier message as it reaches an agent (protocols decide which ones do)."""

    sender: str                     # agent id
    name: str                       # the name the receiver sees
    round: int
    text: str


@dataclass
class Act:
    """One agent's turn as played: its reply and what the environment read from it."""

    agent_id: str
    round: int
    text: str | None                # the reply; None when the call failed
    action: dict[str, Any] | None   # the parsed action; None when unreadable or the call failed
    problem: str | None = None      # why there is no action
    scripted: bool = False          # a confederate's act, written by the environment


@dataclass
class RoundState:
    """The public state after a round, as the environment reports it (stored as an event)."""

    round: int
    state: dict[str, Any]
    acts: list[Act] = field(default_factory=list)


class Environment(ABC):
    """A task world (module docstring). Subclasses set `name` and `Params` and implement the
    abstract methods; `seats` are the agent ids in seating order, `roles` their roles."""

    name: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    # task metrics that are 0/1 indicators (shown as rates with Wilson intervals); the others are
    # quantities (profits, counts), shown as means even when a store happens to hold only 0s and 1s
    indicators: ClassVar[frozenset[str]] = frozenset({"task_success"})

    def __init__(self, params: BaseModel, seats: list[str], roles: list[str], rng: random.Random):
        self.params = params
        self.seats = seats
        self.roles = dict(zip(seats, roles))
        self.rng = rng
        self.names: dict[str, str] = {}  # agent id -> the name others see (set by the kind)

    def name_of(self, agent_id: str) -> str:
        """The name agents see for a seat (its id when the kind gave none)."""
        return self.names.get(agent_id, agent_id)

    # -- the roster ---------------------------------------------------------------------------

    @classmethod
    def roles_for(cls, params: BaseModel, n: int) -> list[str]:
        """The role of each of n seats (confederates included); ValueError for an n it cannot use."""
        return ["agent"] * n

    @classmethod
    def confederates(cls, params: BaseModel) -> int:
        """How many planted agents the environment plays itself (added after the roster)."""
        return 0

    @classmethod
    def system_prompt(cls, params: BaseModel, role: str, name: str) -> str:
        """The standing instructions of an agent in `role` (placed before the run, stored with it)."""
        return ""

    # -- a turn -------------------------------------------------------------------------------

    @abstractmethod
    def turn(self, agent_id: str, round_index: int, heard: list[Heard]) -> Turn:
        """What `agent_id` is asked now, given the peers' messages that reach it."""

    @abstractmethod
    def parse(self, agent_id: str, text: str) -> tuple[dict[str, Any] | None, str | None]:
        """(action, None) or (None, what is wrong with the reply)."""

    def scripted_reply(self, agent_id: str, round_index: int, heard: list[Heard]) -> str:
        """A confederate's reply (only environments with confederates override it)."""
        raise NotImplementedError(f"{self.name} has no confederates")

    def apply(self, act: Act) -> None:
        """Take one act as soon as it is played, in turn order: for worlds where a later turn
        sees an earlier one's effect (a queue claimed, a message relayed). Default: nothing;
        simultaneous worlds resolve everything in close_round."""

    @abstractmethod
    def close_round(self, round_index: int, acts: list[Act]) -> dict[str, Any]:
        """Resolve the round's acts; return its public state (JSON-able), which detectors read."""

    def finished(self, round_index: int) -> bool:
        """Whether the task ended after this round (e.g. a decision was reached)."""
        return False

    # -- after the run ------------------------------------------------------------------------

    @abstractmethod
    def task_metrics(self, states: list[RoundState]) -> dict[str, float | None]:
        """Task completion, measured apart from any risk (e.g. task_success 0/1, profit)."""

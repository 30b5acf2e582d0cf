"""What every scenario kind gets from the orchestrator, and what it must provide.

A kind is a class with a pydantic `Params` model and an async `run(ctx)`. It talks to models only
through `ctx.client` and records only through `ctx.sink`: no DuckDB, no litellm here.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from sociolab.orchestrator.client import RunClient
from sociolab.orchestrator.clock import VirtualClock, WallClock
from sociolab.orchestrator.sink import EventSink
from sociolab.personas.models import Crash, Persona


@dataclass
class Agent:
    """A persona placed in a run: its id, the name others see, and its system prompt."""

    agent_id: str
    position: int
    name: str
    persona: Persona
    system_prompt: str = ""
    crash: Crash | None = None
    errored_round: int | None = None
    peers: tuple[str, ...] = ()   # the names of the others in the room
    scripted: bool = False        # a fixed strategy played by the scenario itself: never a model call

    @property
    def model(self) -> str:
        return self.persona.model


@dataclass
class RunContext:
    run_id: str
    seed: int
    agents: list[Agent]
    client: RunClient
    sink: EventSink
    clock: WallClock | VirtualClock
    rng: random.Random


@dataclass
class Outcome:
    status: str                 # completed | stopped | incomplete
    rounds_done: int
    stop_reason: str | None = None


class Scenario:
    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel]]

    def __init__(self, params: BaseModel):
        self.params = params

    def place_agents(self, personas: list[Persona], roster) -> list[Agent]:
        """Names and system prompts for the roster; kinds override as needed."""
        raise NotImplementedError

    def rounds_planned(self) -> int | None:
        return None

    def factors(self) -> dict | None:
        """Factor levels of this sample (e.g. variant, condition), stored in runs.factors."""
        return None

    def provider_errors_are_results(self) -> bool:
        """Whether a provider failure (after retries) is part of this scenario's protocol.

        By default it is not: a run that met one is stored as incomplete and redone by the next
        rerun, so a transient outage never becomes a result. A kind whose protocol includes
        provider errors (the WarRoom platform's dropped agents) says so explicitly.
        """
        return False

    async def run(self, ctx: RunContext) -> Outcome:
        raise NotImplementedError

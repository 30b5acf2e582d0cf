"""The scenario contract: what a scenario kind must provide, and what the orchestrator gives it.

A scenario kind is one class. Built-in kinds live in this package; a plugin's kind lives in its
own package and is declared as an entry point of the group `sociolab.scenarios`
(docs/extending.md walks through one). Either way, the class must:

- subclass `Scenario`;
- set `kind`, a class attribute: the name run files give in `kind:` (lowercase letters, digits
  and `_`, starting with a letter; a plugin's entry point has the same name);
- set `Params`, a pydantic model of the kind's `params:` section with
  `model_config = ConfigDict(extra="forbid")`, so a mistyped key is a one-line error naming the
  file and line. Series and `cross:` override its fields; every field is part of the run's
  configuration hash (changing one and rerunning is refused), so it must dump to JSON;
- implement `place_agents(personas, roster) -> list[Agent]`: the run's agents with their names
  and system prompts. It runs once when the file is loaded (before any call), so it raises
  `ValueError("...")` for a roster the kind cannot use (e.g. "needs exactly two agents"): the
  user sees that text as one line naming the file's `agents` section;
- implement `async run(ctx: RunContext) -> Outcome`: play the run.

Characters (personas/characters.py, docs/personas.md). After `place_agents`, the runner calls
`give_characters(agents)`: an agent whose persona has a Big-Five `character` gets the character's
sentence before its `system_prompt` (an empty prompt becomes the sentence alone). So a kind never
handles characters itself; it must send `agent.system_prompt`, as the system message of every
call the agent makes (`system_messages(agent)`: none when the prompt is empty), and never a
system text of its own built elsewhere. Without characters nothing changes, byte for byte. A kind
for which the character is the experimental condition itself (persona_safety: in the prompt, or
as activation steering instead) sets `places_characters = True` and places them itself.

Optional hooks, with defaults: `rounds_planned()` (for progress), `factors()` (the condition's
levels, stored in runs.factors and usable as `sociolab results --by` keys), and
`provider_errors_are_results()`.

Resuming mid-run (optional): a kind whose class sets `resumable = True` is continued where it
stopped when a rerun finds it unfinished (status `running`, i.e. killed or cut short by
`--max-cost`, with the same config hash and at least one committed round); otherwise (the
default) it is restarted from scratch. Such a kind must commit every round with
`commit_round`, so what is stored is exactly rounds 0..rounds_done-1, and, given
`ctx.resumed` (a `RunSoFar`: rounds_done, the committed messages in seq order, the agents'
status), must rebuild its state from it without recording anything twice: replay the earlier
rounds' decisions (and their `ctx.rng` draws, in the same order), continue the clock with
`ctx.clock.resume_at(t)`, and play on from round `rounds_done` (the sink already numbers new
messages after the stored ones). On the sim, the result must equal an uninterrupted run's.

How a kind runs and what it records. `run` talks to models only through `ctx.client.complete(
model, messages, temperature=, max_tokens=, seed=, metadata=, sleep=ctx.clock.sleep)`, which
never raises for a provider failure: it returns a `Completion` whose `ok` is False and whose
`error` says why (a failure is recorded, never replaced by a default). It records only through
`ctx.sink` (orchestrator/sink.py), never DuckDB:

- `ctx.sink.message(Message(...))`: every prompt a human or the game master posts and every
  reply (with `call=` the completion, which also stores the llm_calls row; a failed call is a
  message with `is_error=True` and its `error`); times come from `ctx.clock`
  (`start = ctx.clock.now()`, `finished_s=ctx.clock.finished_at(start, call.sim_latency_s)`);
- `ctx.sink.event(kind, round=, agent_id=, **detail)`: anything worth querying later, such as
  a reply that could not be parsed;
- `ctx.sink.outcome(metric, value, agent_id=, **detail)`: a scored result; `value=None` is a
  missing result (say why in `detail`), never a default such as 0;
- `await ctx.sink.commit_round(rounds_done)` after each round of a multi-round kind (one
  transaction per round); whatever is left is committed by the runner after `run` returns.

`run` returns `Outcome(status, rounds_done, stop_reason)`. Status `completed` and `stopped` (the
protocol ended the run early) are results; `incomplete` and `failed` (the setup is broken, e.g.
every first call failed) are redone by the next rerun. Exceptions other than a provider's are bugs: they propagate,
and the run is reported and left unfinished. Randomness comes from `ctx.seed` / `ctx.rng` only,
so a run is reproducible; on the in-process sim the clock is virtual, so a run takes
milliseconds. The sim answers requests it has no specialist for with group-chat text; a kind
that must run on the sim parses what it can from that and records a missing result otherwise.
"""

from __future__ import annotations

import inspect
import random
import re
from abc import ABC, abstractmethod
from dataclasses import dataclass
from typing import ClassVar

from pydantic import BaseModel

from sociolab.base.errors import ProviderError
from sociolab.orchestrator.client import RunClient
from sociolab.orchestrator.clock import VirtualClock, WallClock
from sociolab.orchestrator.sink import EventSink
from sociolab.orchestrator.store import RunSoFar
from sociolab.personas.characters import with_character
from sociolab.personas.models import Crash, Persona, RosterSpec

KIND_NAME = re.compile(r"^[a-z][a-z0-9_]*$")


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

    def injected_fault(self, round_index: int) -> ProviderError | None:
        """Crash injection (the roster's `crashes:`): the provider error this agent's call raises in
        this round, if any. It goes through the client like a real provider error: a permanent
        crash fails fast, a transient one is retried and then recorded."""
        crash = self.crash
        if crash is None or not crash.fails_in(round_index):
            return None
        if crash.mode == "permanent":
            return ProviderError(crash.message or DECOMMISSIONED.format(model=self.model),
                                 transient=False, status_code=404)
        return ProviderError(crash.message or "Service unavailable: the model is overloaded",
                             transient=True, status_code=503)


DECOMMISSIONED = "The model `{model}` has been decommissioned and is no longer supported."


def give_characters(agents: list[Agent]) -> list[Agent]:
    """Put each agent's character sentence before its system prompt (module docstring): one
    place for every kind, built-in or plugin, so a character reaches the model whatever the
    kind. Agents without a character, and scripted ones, are left as they are."""
    for agent in agents:
        if agent.persona.character is not None and not agent.scripted:
            agent.system_prompt = with_character(agent.persona.character, agent.system_prompt)
    return agents


def system_messages(agent: Agent) -> list[dict]:
    """The system message of the agent's calls: its system prompt, or none when that is empty."""
    return [{"role": "system", "content": agent.system_prompt}] if agent.system_prompt else []


@dataclass
class RunContext:
    """What the orchestrator hands to `Scenario.run`: the run's identity and seed, its placed
    agents, the model client, the event sink, the clock (virtual on the in-process sim), a
    random generator seeded for this run and, for a resumable kind continuing an unfinished run,
    what that run committed."""

    run_id: str
    seed: int
    agents: list[Agent]
    client: RunClient
    sink: EventSink
    clock: WallClock | VirtualClock
    rng: random.Random
    resumed: RunSoFar | None = None  # what an unfinished run committed, for a resumable kind


@dataclass
class Outcome:
    """How a run ended: stored in the runs table by the runner."""

    status: str                 # completed | stopped | incomplete | failed
    rounds_done: int
    stop_reason: str | None = None


class Scenario(ABC):
    """The base of every scenario kind; the module docstring is the contract."""

    kind: ClassVar[str]
    Params: ClassVar[type[BaseModel]]
    resumable: ClassVar[bool] = False  # continue an unfinished run from ctx.resumed (module docstring)
    places_characters: ClassVar[bool] = False  # the kind puts characters in prompts itself (module docstring)

    def __init__(self, params: BaseModel):
        self.params = params

    @abstractmethod
    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        """Names and system prompts for the roster; ValueError for a roster the kind cannot use."""

    def arrange(self, personas: list[Persona], rng: random.Random) -> list[Persona]:
        """The roster's order for this run, drawn before the agents are placed (and so before their
        names, positions and prompts are stored): a kind whose protocol shuffles the seating once
        per run does it here, with the run's own generator. Default: the roster's order."""
        return personas

    @abstractmethod
    async def run(self, ctx: RunContext) -> Outcome:
        """Play one run: call models through ctx.client, record through ctx.sink."""

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


def contract_problems(cls: object) -> list[str]:
    """What keeps `cls` from being a scenario kind, in words a plugin author can act on; empty
    when it satisfies the contract. The registry checks plugin classes with it before use, so
    a broken plugin fails when its kind is looked up, not in the middle of a run."""
    if not isinstance(cls, type) or not issubclass(cls, Scenario):
        return [f"{cls!r} is not a subclass of sociolab.scenarios.base.Scenario"]
    problems = []
    kind = getattr(cls, "kind", None)
    if not isinstance(kind, str) or not KIND_NAME.match(kind):
        problems.append(f"its `kind` must be a name of lowercase letters, digits and '_' (got {kind!r})")
    problems += params_problems(getattr(cls, "Params", None))
    missing = sorted(getattr(cls, "__abstractmethods__", ()))
    if missing:
        problems.append(f"it does not implement {', '.join(missing)}")
    elif not inspect.iscoroutinefunction(cls.run):
        problems.append("its `run` must be `async def run(self, ctx)`")
    return problems


def params_problems(params: object) -> list[str]:
    """The contract's part about `Params`: a pydantic model that refuses unknown keys."""
    if not isinstance(params, type) or not issubclass(params, BaseModel):
        return [f"its `Params` must be a pydantic BaseModel subclass (got {params!r})"]
    if params.model_config.get("extra") != "forbid":
        return ["its `Params` must refuse unknown keys: model_config = ConfigDict(extra=\"forbid\")"]
    return []

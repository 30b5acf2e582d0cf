"""The shared group conversation of "Who Am I, and Who Else Is Here?".

Protocol: the user posts a seed message to @all; then, each round, every live agent is called in
a fixed (or per-round shuffled) order, calls starting `stagger_ms` apart and running concurrently.
A call sees every message that finished before it started: the agent's own messages as
`assistant`, everyone else's as `user` in the form `[Name]: text`. An agent whose call fails is
recorded (the failure is shown to peers as `[Name]: ⚠ error`, as on the study's platform) and,
by default, dropped from later rounds; a round in which more than 60% of the called agents fail
ends the run.

Which failures count as part of the conversation is a named option, `provider_errors`: injected
crashes always do; a real provider failure (after retries) does only with `protocol` (the
WarRoom platform's semantics, set explicitly by scenarios/library/warroom.yaml). By default it
ends the run as `incomplete`, to be redone by the next rerun, so an outage never becomes data.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from sociolab.base.errors import ProviderError
from sociolab.orchestrator.clock import VirtualClock
from sociolab.orchestrator.sink import Message
from sociolab.orchestrator.store import RunSoFar
from sociolab.personas.models import Persona, RosterSpec
from sociolab.personas.naming import Naming, display_names
from sociolab.personas.prompts import Scaffolding, system_prompt

from .base import Agent, Outcome, RunContext, Scenario
from .topology import COMPLETE, Topology

ERROR_MARK = "⚠"


PERMANENT_ERROR_WORDS = ("decommissioned", "not found", "not supported", "does not exist", "no longer available")


def is_permanent_error(error: str) -> bool:
    """The platform's test for a model that is gone for good (its PERM_KEYWORDS)."""
    return any(word in error.lower() for word in PERMANENT_ERROR_WORDS)
THINK_BLOCK = re.compile(r"<think>[\s\S]*?</think>\s*")


class DiscussionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    seed_message: str = Field(min_length=1, description="what the user posts first, e.g. '@all ...'")
    rounds: int = Field(10, ge=1, le=1000, description="rounds in all, the seed's round 0 included")
    order: Literal["fixed", "shuffled", "shuffled_once"] = Field(
        "fixed", description="'shuffled_once': the seating is shuffled at the start of each run and "
                             "anonymous names follow the seat (the platform's series E); 'shuffled': the "
                             "speaking order is reshuffled every round, names fixed")
    stagger_ms: int = Field(1200, ge=0, description="calls in a round start this far apart")
    temperature: float = Field(0.8, ge=0, le=2)
    max_tokens: int | None = Field(1024, ge=1)
    naming: Naming = "anonymous"
    scaffolding: Scaffolding = "full"
    after_error: Literal["drop", "skip_next_round", "stay"] = Field(
        "drop", description="an agent whose call failed: 'drop' never calls it again; 'skip_next_round' "
                            "leaves it out of the next round only (the WarRoom platform from series E on); "
                            "'stay' calls it again")
    drop_permanent_errors: bool = Field(False, description="an error saying the model is gone (decommissioned, "
                                                           "not found, ...) drops the agent (the platform from "
                                                           "series F on)")
    drop_after_consecutive: int | None = Field(None, ge=1, description="an agent whose calls failed this many "
                                                                       "rounds in a row is dropped (the platform "
                                                                       "of series A-C: 2)")
    show_errors: bool = Field(True, description="peers see a failed call as '[Name]: ⚠ error'")
    own_errors_visible: bool = Field(False, description="an agent sees its own failed calls as its "
                                                        "'⚠ error' turns (the platform sent them back)")
    stop_failure_share: float = Field(0.6, ge=0, le=1,
                                      description="a round where more than this share fails ends the run")
    stop_check: Literal["every_round", "odd_rounds"] = Field(
        "every_round", description="when the failure share is checked: after every round, or only after "
                                   "rounds 1, 3, 5, ... (the platform checked after its second call loop)")
    empty_system_message: bool = Field(False, description="with an empty system prompt, still send a system "
                                                          "message with empty content (the platform's K3)")
    topology: Topology = Field(COMPLETE, description="who sees whose messages (scenarios/topology.py); the "
                                                     "default, complete, is the study's shared room")
    provider_errors: Literal["incomplete", "protocol"] = Field(
        "incomplete", description="a provider failure after retries: 'incomplete' ends the run to be redone; "
                                  "'protocol' treats it like a crash (errored, dropped, 60% rule), as the "
                                  "WarRoom platform did")

    @model_validator(mode="before")
    @classmethod
    def drop_errored_is_after_error(cls, data: Any) -> Any:
        """`drop_errored: true|false` (before after_error existed) still reads as drop / stay."""
        if isinstance(data, dict) and "drop_errored" in data:
            data = dict(data)
            flag = data.pop("drop_errored")
            if isinstance(flag, bool) and "after_error" not in data:
                data["after_error"] = "drop" if flag else "stay"
            elif not isinstance(flag, bool):
                raise ValueError("drop_errored: write true or false (or use after_error)")
        return data


    @model_serializer(mode="wrap")
    def complete_topology_unstated(self, handler: SerializerFunctionWrapHandler) -> dict[str, Any]:
        """The default topology is left out of the dump, so runs stored before topologies existed
        keep their config hash (and resume)."""
        data = handler(self)
        if self.topology.is_complete() and self.topology.directed:
            data.pop("topology", None)
        return data


class Discussion(Scenario):
    kind = "discussion"
    resumable = True  # a rerun continues an unfinished run from its last committed round
    Params = DiscussionParams
    params: DiscussionParams

    def __init__(self, params: BaseModel):
        super().__init__(params)
        self._peer_lines: dict[tuple[str, str, bool], str] = {}  # see peer_line

    def rounds_planned(self) -> int:
        return 1 if self.params.scaffolding == "isolation" else self.params.rounds

    def provider_errors_are_results(self) -> bool:
        return self.params.provider_errors == "protocol"

    def arrange(self, personas: list[Persona], rng: random.Random) -> list[Persona]:
        """`shuffled_once`: a new seating per run, before names are given by seat."""
        if self.params.order != "shuffled_once":
            return personas
        seating = list(personas)
        rng.shuffle(seating)
        return seating

    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        self.params.topology.check(len(personas))
        names = display_names(personas, self.params.naming, roster.names, clones=roster.clones is not None)
        crashes = {c.agent: c for c in roster.crashes}
        agents = []
        for i, (persona, name) in enumerate(zip(personas, names)):
            others = [n for n in names if n != name]
            agents.append(Agent(agent_id=persona.key, position=i + 1, name=name, persona=persona,
                                system_prompt=system_prompt(self.params.scaffolding, name, others),
                                crash=crashes.get(persona.key), peers=tuple(others)))
        return agents

    async def run(self, ctx: RunContext) -> Outcome:
        p = self.params
        first_round = 0
        seats = Seats(ctx.agents, p)
        if ctx.resumed is not None and ctx.resumed.rounds_done > 0:
            replayed = self.replay(ctx, ctx.resumed, seats)
            if isinstance(replayed, Outcome):
                return replayed
            history = replayed
            first_round = ctx.resumed.rounds_done
        else:
            seed = ctx.sink.message(Message(sender="user", sender_name="user", content=p.seed_message,
                                            started_s=0.0, finished_s=0.0))
            history = [seed]
        for round_index in range(first_round, self.rounds_planned()):
            order = self.speakers(ctx, seats)
            if not order:
                return await self.stop(ctx, round_index - 1, "no agent left", "stopped")
            said = await self.play_round(ctx, round_index, order, history)
            history.extend(sorted(said, key=lambda m: (m.finished_s, m.turn)))
            failed = [m for m in said if m.is_error]
            if not self.provider_errors_are_results() and any(m.call and m.call.provider_failure for m in failed):
                await ctx.sink.commit_round(round_index + 1)
                return Outcome("incomplete", round_index + 1, "a provider failure after retries")
            self.after_failures(ctx, round_index, seats, order, failed)
            if self.stops(round_index, order, failed):
                return await self.stop(ctx, round_index, failure_reason(round_index, order, failed),
                                       self.stop_status(round_index, order, failed))
            await ctx.sink.commit_round(round_index + 1)
        return Outcome("completed", self.rounds_planned())

    async def stop(self, ctx: RunContext, round_index: int, reason: str, status: str) -> Outcome:
        """End the run early after `round_index` (-1: before the first round)."""
        ctx.sink.event("run_stopped", round=round_index, reason=reason)
        await ctx.sink.commit_round(round_index + 1)
        return Outcome(status, round_index + 1, reason)

    def speakers(self, ctx: RunContext, seats: "Seats") -> list[Agent]:
        """Who is called this round, in speaking order (ctx.rng draws the per-round shuffle)."""
        order = seats.callable()
        if self.params.order == "shuffled":
            ctx.rng.shuffle(order)
        return order

    def stops(self, round_index: int, order: list[Agent], failed: list[Message]) -> bool:
        """The failure-share rule, where the protocol checks it."""
        if self.params.stop_check == "odd_rounds" and round_index % 2 == 0:
            return False
        return bool(failed) and len(failed) > self.params.stop_failure_share * len(order)

    def replay(self, ctx: RunContext, so_far: RunSoFar, seats: "Seats") -> Outcome | list[Message]:
        """Rebuild a resumed run's state from its committed rounds, recording nothing: the
        history (seq order is the order `run` builds it in), the seats and the agents'
        errored_round, ctx.rng's shuffles, and the clock at the last round's last finish. If the
        last committed round ended the run (killed before the runner stored its status), that
        outcome is returned instead."""
        history = [Message(sender=m.sender, sender_name=m.sender_name or m.sender, content=m.content,
                           round=m.round, turn=m.turn, context_size=m.context_size, is_error=m.is_error,
                           error=m.error, started_s=m.started_s, finished_s=m.finished_s, seq=m.seq)
                   for m in so_far.messages]
        if not history or history[0].sender != "user":
            raise ValueError(f"run {so_far.run_id}: its committed messages do not start with the seed message")
        said: list[Message] = []
        for round_index in range(so_far.rounds_done):
            order = self.speakers(ctx, seats)
            said = [m for m in history if m.round == round_index]
            by_id = {a.agent_id: a for a in order}
            if not order or sorted(m.turn or 0 for m in said) != list(range(len(order))) or any(
                    by_id.get(m.sender) is not order[m.turn or 0] for m in said):
                raise ValueError(f"run {so_far.run_id}: round {round_index} as stored does not match its replay")
            failed = [m for m in said if m.is_error]
            if not self.provider_errors_are_results() and any(
                    self.crash_fault(by_id[m.sender], round_index) is None for m in failed):
                return Outcome("incomplete", round_index + 1, "a provider failure after retries")
            self.after_failures(ctx, round_index, seats, order, failed, record=False)
            if self.stops(round_index, order, failed):
                return Outcome(self.stop_status(round_index, order, failed), round_index + 1,
                               failure_reason(round_index, order, failed))
        ctx.clock.resume_at(max(finished_s(m) for m in said))
        return history

    async def play_round(self, ctx: RunContext, round_index: int, order: list[Agent],
                         history: list[Message]) -> list[Message]:
        """Start the calls `stagger_ms` apart; each sees what finished before it was sent."""
        said: list[Message] = []
        pending: list[asyncio.Task] = []
        round_start = ctx.clock.now()
        for turn, agent in enumerate(order):
            start = round_start + turn * self.params.stagger_ms / 1000
            await ctx.clock.wait_until(start, pending)
            pending.append(asyncio.create_task(self.speak(ctx, agent, round_index, turn, history, start, said)))
        raised = [r for r in await asyncio.gather(*pending, return_exceptions=True) if isinstance(r, BaseException)]
        if raised:  # e.g. the budget ran out: every call of the round has ended before we stop
            raise raised[0]
        if isinstance(ctx.clock, VirtualClock) and said:
            ctx.clock.advance_to(max(finished_s(m) for m in said))
        return said

    def visible(self, history: list[Message], said: list[Message], sent: float) -> list[Message]:
        if self.params.scaffolding == "isolation":
            return history[:1]
        finished = sorted((m for m in said if finished_s(m) <= sent), key=lambda m: (m.finished_s, m.turn))
        return history + finished

    def heard(self, ctx: RunContext, agent: Agent, messages: list[Message]) -> list[Message]:
        """What of `messages` reaches `agent` under the topology: the user's, its own, and those of
        the peers whose messages reach it in the round they were said."""
        topology = self.params.topology
        if topology.is_complete():
            return messages
        seat = {a.agent_id: a.position - 1 for a in ctx.agents}
        me, n = agent.position - 1, len(ctx.agents)
        return [m for m in messages if m.sender not in seat
                or topology.reaches(seat[m.sender], me, m.round or 0, n)]

    async def speak(self, ctx: RunContext, agent: Agent, round_index: int, turn: int,
                    history: list[Message], start: float, said: list[Message]) -> None:
        """One call. Its context is taken when the client sends it (after any shared throttle or
        in-flight cap), as the platform took it when its request left: a wait never hides what
        peers said meanwhile."""
        seen: list[list[Message]] = []
        sent_at, size = [start], [0]

        def context() -> list[dict]:
            sent_at[0] = max(start, ctx.clock.now())
            seen.append(self.heard(ctx, agent, self.visible(history, said, sent_at[0])))
            built = self.context_for(agent, seen[-1])
            size[0] = len(built)
            return built

        call = await ctx.client.complete(
            agent.model, context, temperature=self.params.temperature, max_tokens=self.params.max_tokens,
            seed=call_seed(ctx.seed, agent.agent_id, round_index), fault=self.crash_fault(agent, round_index),
            metadata=lambda: self.metadata_for(agent, seen[-1]), sleep=ctx.clock.sleep)
        content = call.transcript_text if not call.ok else shown_text(call.transcript_text)
        message = Message(sender=agent.agent_id, sender_name=agent.name, round=round_index, turn=turn,
                          content=content, context_size=size[0],
                          is_error=not call.ok, error=call.error, started_s=sent_at[0],
                          finished_s=ctx.clock.finished_at(sent_at[0], call.sim_latency_s), call=call)
        said.append(ctx.sink.message(message))

    def metadata_for(self, agent: Agent, visible: list[Message]) -> dict:
        """What a simulated provider may know of the speaker: what its scaffolding reveals, and
        which peers it saw fail (their last visible message was a failed call)."""
        scaffold = self.params.scaffolding
        names_self = scaffold in ("full", "no_peers")
        names_peers = scaffold in ("full", "no_identity")
        last_failed: dict[str, bool] = {}
        for m in visible:
            if m.sender not in ("user", agent.agent_id):
                last_failed[m.sender_name] = m.is_error
        errored = [name for name, failed in last_failed.items() if failed] if self.params.show_errors else []
        return {"discussion": {"name": agent.name if names_self else None,
                               "peers": list(agent.peers) if names_peers else None, "errored": errored}}

    def context_for(self, agent: Agent, visible: list[Message]) -> list[dict]:
        """OpenAI-format messages as this agent sees the conversation. Empty replies are left
        out, as the platform left them out."""
        p = self.params
        out = [{"role": "system", "content": agent.system_prompt}] if agent.system_prompt or p.empty_system_message \
            else []
        for m in visible:
            text = m.content.strip()
            if not text:
                continue
            if m.sender == "user":
                out.append({"role": "user", "content": text})
            elif m.sender == agent.agent_id:
                if not m.is_error:
                    out.append({"role": "assistant", "content": text})
                elif p.own_errors_visible:
                    out.append({"role": "assistant", "content": f"{ERROR_MARK} {text}"})
            elif not m.is_error or p.show_errors:
                out.append({"role": "user", "content": self.peer_line(m.sender_name, text, m.is_error)})
        return out

    def peer_line(self, name: str, text: str, is_error: bool) -> str:
        """`[Name]: text` as peers see a message, built once per message and run: every later
        speaker gets the same string, so neither it nor the sim reading it redo the work."""
        key = (name, text, is_error)
        line = self._peer_lines.get(key)
        if line is None:
            line = self._peer_lines[key] = f"[{name}]: {ERROR_MARK} {text}" if is_error else f"[{name}]: {text}"
        return line

    def crash_fault(self, agent: Agent, round_index: int) -> ProviderError | None:
        """Crash injection: the provider error this agent's call raises in this round, if any."""
        return agent.injected_fault(round_index)

    @staticmethod
    def stop_status(round_index: int, order: list[Agent], failed: list[Message]) -> str:
        """'stopped' is a result (the study's rule); but when every agent fails its very first call
        and no crash was injected, the setup is broken (wrong model id, bad key, unsupported
        parameter): 'failed', so that a rerun after the fix redoes the run instead of skipping it."""
        injected = any(a.crash is not None for a in order)
        if round_index == 0 and len(failed) == len(order) and not injected:
            return "failed"
        return "stopped"

    def after_failures(self, ctx: RunContext, round_index: int, seats: "Seats", order: list[Agent],
                       failed: list[Message], *, record: bool = True) -> None:
        """Seat this round's callers (Seats.after_round), record the failures; `record=False` (a
        resumed run's replay) only restores errored_round, whose rows and events are already stored."""
        dropped = seats.after_round(order, {m.sender: m.error or "" for m in failed})
        for m in failed:
            agent = seats.by_id[m.sender]
            gone = m.sender in dropped
            first = agent.errored_round is None
            if first:
                agent.errored_round = round_index
            if not record:
                continue
            if first:
                ctx.sink.agent_update(agent.agent_id, status="errored", errored_round=round_index)
            ctx.sink.event("agent_errored", round=round_index, agent_id=m.sender, error=m.error,
                           error_type=m.call.error_type if m.call else None,
                           transient=bool(m.call and m.call.transient), attempts=m.call.attempts if m.call else 0)
            if gone:
                ctx.sink.event("agent_dropped", round=round_index, agent_id=m.sender)
            elif self.params.after_error == "skip_next_round":
                ctx.sink.event("agent_skips_next_round", round=round_index, agent_id=m.sender)


class Seats:
    """Who may be called: every agent in seating order, minus those dropped for good and, with
    `skip_next_round`, those whose call failed in the round just played."""

    def __init__(self, agents: list[Agent], rules: DiscussionParams):
        self.agents = list(agents)
        self.by_id = {a.agent_id: a for a in agents}
        self.rules = rules
        self.dropped: set[str] = set()
        self.resting: set[str] = set()
        self.failed_in_a_row: dict[str, int] = {}

    def callable(self) -> list[Agent]:
        return [a for a in self.agents if a.agent_id not in self.dropped and a.agent_id not in self.resting]

    def after_round(self, called: list[Agent], errors: dict[str, str]) -> set[str]:
        """Seat everyone called this round, given the failed calls' errors by agent id; returns
        the agents dropped for good. Resting lasts one round: this round's failures replace it."""
        self.resting = set()
        dropped = set()
        for agent in called:
            aid = agent.agent_id
            if aid not in errors:
                self.failed_in_a_row[aid] = 0
                continue
            self.failed_in_a_row[aid] = self.failed_in_a_row.get(aid, 0) + 1
            if self.drops(aid, errors[aid]):
                dropped.add(aid)
            elif self.rules.after_error == "skip_next_round":
                self.resting.add(aid)
        self.dropped |= dropped
        return dropped

    def drops(self, agent_id: str, error: str) -> bool:
        rules = self.rules
        return (rules.after_error == "drop"
                or (rules.drop_permanent_errors and is_permanent_error(error))
                or (rules.drop_after_consecutive is not None
                    and self.failed_in_a_row[agent_id] >= rules.drop_after_consecutive))


def failure_reason(round_index: int, order: list[Agent], failed: list[Message]) -> str:
    return f"{len(failed)} of {len(order)} agents failed in round {round_index}"


def shown_text(text: str) -> str:
    """A reply as the conversation shows it: closed <think> blocks anywhere removed (a provider
    already moves a leading one into the reasoning column), surrounding whitespace trimmed."""
    return THINK_BLOCK.sub("", text).strip()


def call_seed(run_seed: int, agent_id: str, round_index: int) -> int:
    """A per-call seed: reproducible for a run, different per agent and round."""
    digest = hashlib.sha256(f"{run_seed}|{agent_id}|{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")


def finished_s(m: Message) -> float:
    """When a message of a round finished: `speak` gives every one of them its finish time."""
    if m.finished_s is None:
        raise ValueError(f"the message of {m.sender} in round {m.round} has no finish time")
    return m.finished_s

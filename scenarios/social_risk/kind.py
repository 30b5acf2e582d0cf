"""Emergent social risks of agent collectives, after RiskLab: one of its fifteen risks per run.

A run plays a risk's environment (environments/*) under an interaction protocol (protocols.py)
and a communication topology (scenarios/topology.py) for a number of rounds, records every reply
as a message, every unreadable reply as an `invalid_action` event and every round's public state
as an `env_state` event, then runs the risk's detector on the trajectory and records:

- `risk_present` (0/1; missing when the run cannot tell, with the reason) and `risk_score` in [0, 1];
- the detector's measures (e.g. `conformity_rate`, a proportion with successes and n);
- the environment's task metrics (e.g. `task_success`), measured apart from the risk, since a
  system can finish its task and still show the risk.

An injected crash (the roster's `crashes:`) is a failed call recorded as an error message with no
action, part of the run like a toolkit agent that failed; a real provider's failure after retries
ends the run as `incomplete`, to be redone.

The defaults of a risk (environment parameters, protocol, topology, rounds) are the toolkit's
(catalog.py, risks/*); `condition` picks one of its conditions (C1, C2, ...); `protocol`,
`topology`, `rounds` and `environment` override them. Factors `risk`, `risk_condition`,
`protocol` and `environment` are stored with each run, for `sociolab results --by`.
"""

from __future__ import annotations

import asyncio
import hashlib
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from sociolab.orchestrator.clock import VirtualClock
from sociolab.orchestrator.sim.metadata import SocialRiskTurn
from sociolab.orchestrator.sink import Message
from sociolab.personas.models import Persona, RosterSpec

from ..base import Agent, Outcome, RunContext, Scenario, system_messages
from ..topology import Topology
from .catalog import RiskName, RiskSpec, risk
from .detection import Detection, Trajectory
from .environment import SCRIPTED_MODEL, Act, Environment, Heard, RoundState
from .protocols import ProtocolName, candidates, stages


def per_risk_schema(schema: dict[str, Any]) -> None:
    """JSON Schema (`sociolab schema`): each risk's conditions and environment parameters, so an
    editor completes `condition:` and `environment:` for the risk a file names."""
    from .catalog import risks

    rules = []
    for key, spec in sorted(risks().items()):
        env = spec.environment.Params.model_json_schema()
        env = inline_refs(env, env.pop("$defs", {}))
        env.pop("required", None)
        env["title"] = f"{spec.environment.name} environment ({key})"
        rules.append({"if": {"properties": {"risk": {"const": key}}, "required": ["risk"]},
                      "then": {"properties": {"condition": {"enum": [*spec.conditions, None]}, "environment": env}}})
    schema["allOf"] = rules


def inline_refs(node: Any, defs: dict[str, Any]) -> Any:
    """`node` with every `#/$defs/X` reference replaced by X's schema (environment parameter
    models are small and not recursive), so it can sit inside another model's schema."""
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/$defs/"):
            return inline_refs(defs[ref.removeprefix("#/$defs/")], defs)
        return {k: inline_refs(v, defs) for k, v in node.items()}
    if isinstance(node, list):
        return [inline_refs(v, defs) for v in node]
    return node


class CallSettings(BaseModel):
    """A role's own sampling settings (the toolkit set them per agent, e.g. a summary agent at 0.3)."""

    model_config = ConfigDict(extra="forbid")

    temperature: float | None = Field(None, ge=0, le=2)
    max_tokens: int | None = Field(None, ge=1)


class SocialRiskParams(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra=per_risk_schema)

    risk: RiskName = Field(description="which of the fifteen risks (docs/social_risks.md)")
    condition: str | None = Field(None, description="the toolkit's condition, e.g. C1 (default: the risk's first)")
    protocol: ProtocolName | None = Field(None, description="override the risk's protocol")
    topology: Topology | None = Field(None, description="override the risk's topology (scenarios/topology.py)")
    rounds: int | None = Field(None, ge=1, le=1000, description="override the risk's number of rounds")
    flow: list[list[int]] | None = Field(None, description="sequential: the stages, lists of seat numbers from 1 "
                                                           "acting together (default: the risk's, else one seat a stage)")
    window: int | None = Field(None, ge=1, description="broadcast: rounds of earlier messages an agent sees "
                                                       "(default: all)")
    environment: dict[str, Any] = Field(default_factory=dict,
                                        description="override the environment's parameters (docs/social_risks.md)")
    memory: bool | None = Field(None, description="agents keep their earlier turns (prompt and reply) in context; "
                                                  "default: the risk's (the toolkit's chat history or none)")
    temperature: float = Field(0.7, ge=0, le=2)
    max_tokens: int | None = Field(512, ge=1)
    role_settings: dict[str, CallSettings] = Field(
        default_factory=dict, description="per role: temperature and max_tokens over the run's (default: the "
                                          "risk's, which are the toolkit's per-agent settings where it had them)")

    @model_validator(mode="after")
    def known_condition_and_environment(self) -> "SocialRiskParams":
        spec = self.spec()
        if self.condition is not None and self.condition not in spec.conditions:
            raise ValueError(f"condition: {self.risk} has conditions {', '.join(spec.conditions)}, "
                             f"not {self.condition!r}")
        try:
            spec.environment_params(self.chosen_condition(), self.environment)
        except ValidationError as exc:
            err = exc.errors()[0]
            where = ".".join(str(x) for x in err["loc"])
            raise ValueError(f"environment.{where}: {err['msg']} ({spec.environment.name} environment)") from None
        return self

    def spec(self) -> RiskSpec:
        return risk(self.risk)

    def chosen_condition(self) -> str:
        return self.condition or next(iter(self.spec().conditions))


class SocialRisk(Scenario):
    kind = "social_risk"
    Params = SocialRiskParams
    params: SocialRiskParams

    def __init__(self, params: BaseModel):
        super().__init__(params)
        p = self.params
        self.spec = p.spec()
        self.condition = p.chosen_condition()
        self.env_params = self.spec.environment_params(self.condition, p.environment)
        self.protocol: ProtocolName = p.protocol or self.spec.protocol
        self.topology = p.topology or self.spec.topology
        self.memory = self.spec.memory if p.memory is None else p.memory
        self.flow: Sequence[Sequence[int]] | None = p.flow if p.flow is not None else self.spec.flow
        self.role_settings = {role: CallSettings.model_validate(v) for role, v in self.spec.role_settings.items()}
        for role, given in p.role_settings.items():
            base = self.role_settings.get(role, CallSettings())
            self.role_settings[role] = base.model_copy(update=given.model_dump(exclude_none=True))

    def rounds_planned(self) -> int:
        return self.params.rounds or self.spec.rounds

    def factors(self) -> dict:
        return {"risk": self.spec.key, "risk_condition": self.condition, "protocol": self.protocol,
                "environment": self.spec.environment.name}

    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        env_cls = self.spec.environment
        planted = env_cls.confederates(self.env_params)
        roles = env_cls.roles_for(self.env_params, len(personas) + planted)
        self.topology.check(len(roles))
        unknown = sorted(set(self.params.role_settings) - set(roles))
        if unknown:
            raise ValueError(f"role_settings: no role {unknown[0]!r} in this run (roles: {', '.join(dict.fromkeys(roles))})")
        if self.flow is not None:
            check_flow(self.flow, len(roles))
        names = role_names(roles)
        crashes = {c.agent: c for c in roster.crashes}
        agents = [Agent(agent_id=p.key, position=i + 1, name=roster.names.get(p.key, names[i]), persona=p,
                        crash=crashes.get(p.key)) for i, p in enumerate(personas)]
        for k in range(planted):
            seat = len(agents)
            pseudo = Persona(key=f"confederate-{k + 1}", model=SCRIPTED_MODEL, label=names[seat])
            agents.append(Agent(agent_id=pseudo.key, position=seat + 1, name=names[seat], persona=pseudo,
                                scripted=True))
        for agent, role in zip(agents, roles):
            agent.system_prompt = env_cls.system_prompt(self.env_params, role, agent.name)
        return agents

    async def run(self, ctx: RunContext) -> Outcome:
        seats = [a.agent_id for a in ctx.agents]
        roles = self.spec.environment.roles_for(self.env_params, len(seats))
        env = self.spec.environment(self.env_params, seats, roles, ctx.rng)
        env.names = {a.agent_id: a.name for a in ctx.agents}
        self.roles = dict(zip(seats, roles))
        self.seats = {a.agent_id: a.position - 1 for a in ctx.agents}  # for the topology, once per run
        trajectory = Trajectory(self.env_params, seats, dict(zip(seats, roles)))
        log: list[Heard] = []
        self.last_stage: list[Heard] = []
        self.memories: dict[str, list[dict]] = {aid: [] for aid in seats}
        rounds_done = 0
        for r in range(self.rounds_planned()):
            acts, said = await self.play_round(ctx, env, r, log)
            if any(a.problem == PROVIDER_FAILURE for a in acts):
                await ctx.sink.commit_round(r + 1)
                return Outcome("incomplete", r + 1, "a provider failure after retries")
            state = env.close_round(r, acts)
            ctx.sink.event("env_state", round=r, state=state)
            trajectory.rounds.append(RoundState(r, state, acts))
            log.extend(said)
            rounds_done = r + 1
            await ctx.sink.commit_round(rounds_done)
            if env.finished(r):
                break
        self.record(ctx, env, trajectory)
        return Outcome("completed", rounds_done)

    async def play_round(self, ctx: RunContext, env: Environment, r: int,
                         log: list[Heard]) -> tuple[list[Act], list[Heard]]:
        """The round's stages in order; each stage's acts go to the environment before the next."""
        acts: list[Act] = []
        said: list[Heard] = []
        by_id = {a.agent_id: a for a in ctx.agents}
        for turn, stage in enumerate(stages(self.protocol, list(by_id), r, self.flow)):
            start = ctx.clock.now()
            played = await asyncio.gather(*(self.act(ctx, env, by_id[aid], r, turn, self.heard(ctx, aid, r, log, said),
                                                     start) for aid in stage))
            this_stage = []
            for act, heard, finished in played:
                env.apply(act)
                acts.append(act)
                if heard is not None:
                    this_stage.append(heard)
            said.extend(this_stage)
            self.last_stage = this_stage
            if isinstance(ctx.clock, VirtualClock):
                ctx.clock.advance_to(max(f for _, _, f in played))
        return acts, said

    def heard(self, ctx: RunContext, agent_id: str, r: int, log: list[Heard], said: list[Heard]) -> list[Heard]:
        """The messages reaching `agent_id` now: the protocol's candidates the topology lets through."""
        seat = self.seats
        n, me = len(seat), seat[agent_id]
        return [h for h in candidates(self.protocol, log, r, self.params.window, said, self.last_stage)
                if h.sender != agent_id and self.topology.reaches(seat[h.sender], me, h.round, n)]

    async def act(self, ctx: RunContext, env: Environment, agent: Agent, r: int, turn: int, heard: list[Heard],
                  start: float) -> tuple[Act, Heard | None, float]:
        """One agent's turn: a confederate's scripted reply, or a model call; recorded as a message."""
        if agent.scripted:
            text = env.scripted_reply(agent.agent_id, r, heard)
            ctx.sink.message(Message(sender=agent.agent_id, sender_name=agent.name, round=r, turn=turn,
                                     content=text, started_s=start, finished_s=start))
            action, problem = env.parse(agent.agent_id, text)
            return (Act(agent.agent_id, r, text, action, problem, scripted=True),
                    Heard(agent.agent_id, agent.name, r, text), start)
        asked = env.turn(agent.agent_id, r, heard)
        memory = self.memories[agent.agent_id]
        messages = system_messages(agent) + memory + [{"role": "user", "content": asked.prompt}]
        own = self.role_settings.get(self.roles[agent.agent_id], CallSettings())
        call = await ctx.client.complete(
            agent.model, messages, temperature=self.params.temperature if own.temperature is None else own.temperature,
            max_tokens=self.params.max_tokens if own.max_tokens is None else own.max_tokens,
            seed=call_seed(ctx.seed, agent.agent_id, r), sleep=ctx.clock.sleep, fault=agent.injected_fault(r),
            metadata=SocialRiskTurn(behaviour=asked.behaviour, safe=asked.safe, risky=asked.risky).as_metadata())
        finished = ctx.clock.finished_at(start, call.sim_latency_s)
        ctx.sink.message(Message(sender=agent.agent_id, sender_name=agent.name, round=r, turn=turn,
                                 content=call.transcript_text, context_size=len(messages), is_error=not call.ok,
                                 error=call.error, started_s=start, finished_s=finished, call=call))
        if not call.ok:  # an injected crash is part of the run (recorded, no action); a provider's failure is not
            problem = PROVIDER_FAILURE if call.provider_failure else "call failed"
            return Act(agent.agent_id, r, None, None, problem), None, finished
        text = call.text or ""
        if self.memory:
            memory += [{"role": "user", "content": asked.prompt}, {"role": "assistant", "content": text}]
        action, problem = env.parse(agent.agent_id, text)
        if action is None:
            ctx.sink.event("invalid_action", round=r, agent_id=agent.agent_id, reason=problem, reply=text[:500])
        return Act(agent.agent_id, r, text, action, problem), Heard(agent.agent_id, agent.name, r, text), finished

    def record(self, ctx: RunContext, env: Environment, trajectory: Trajectory) -> None:
        """The detector's verdict and measures, and the task metrics, as outcomes."""
        found: Detection = self.spec.detect(trajectory)
        why = {"reason": found.reason} if found.reason else {}
        ctx.sink.outcome("risk_present", None if found.present is None else int(found.present), **why)
        ctx.sink.outcome("risk_score", found.score, **why)
        for name, m in found.measures.items():
            detail: dict[str, Any] = {"successes": m.successes, "n": m.n} if m.n is not None else \
                {} if m.indicator else MEAN
            ctx.sink.outcome(name, m.value, **detail)
        for name, value in env.task_metrics(trajectory.rounds).items():
            ctx.sink.outcome(name, value, **({} if name in env.indicators else MEAN))


PROVIDER_FAILURE = "a provider failure after retries"
MEAN = {"summary": "mean"}  # a quantity: `sociolab results` shows its mean, never a rate


def role_names(roles: Sequence[str]) -> list[str]:
    """The names agents see: their role ("Seller 1", "Seller 2", "Aggregator"), as the toolkit named
    its agents by role (seller_1, summary_agent), never the model behind them. A roster's `names:`
    overrides them per persona key."""
    counts = {r: roles.count(r) for r in roles}
    seen: dict[str, int] = {}
    out = []
    for role in roles:
        seen[role] = seen.get(role, 0) + 1
        title = role.replace("_", " ").strip().capitalize() or "Agent"
        out.append(f"{title} {seen[role]}" if counts[role] > 1 else title)
    return out


def check_flow(flow: Sequence[Sequence[int]], n: int) -> None:
    """ValueError unless every stage names seats 1..n, none twice in a round."""
    seen = [k for stage in flow for k in stage]
    if not flow or any(not stage for stage in flow):
        raise ValueError("flow: give at least one stage, each a non-empty list of seat numbers")
    if any(k < 1 or k > n for k in seen) or len(set(seen)) < len(seen):
        raise ValueError(f"flow: seat numbers must be 1..{n}, each at most once a round (got {flow})")


def call_seed(run_seed: int, agent_id: str, round_index: int) -> int:
    digest = hashlib.sha256(f"{run_seed}|{agent_id}|{round_index}".encode()).digest()
    return int.from_bytes(digest[:4], "big")

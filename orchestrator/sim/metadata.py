"""What a scenario or judge tells the sim, as structured request metadata: the contract.

A request's `metadata` (`ModelClient.complete(..., metadata=...)`) is a plain JSON-able dict that
travels with the request to the sim provider, and never to a real provider. Each sender puts one
key in it, and `sim_reply` dispatches on that key:

| key               | sent by                      | model here           | answered by                      |
|-------------------|------------------------------|----------------------|----------------------------------|
| `judge`           | judges/runner.py             | `JudgeRequest`       | orchestrator/sim/judge.py        |
| `sim_plan`        | scenarios/agentic.py         | `actor.SimPlan`      | orchestrator/sim/actor.py        |
| `game`            | scenarios/games.py           | `GameMove`           | orchestrator/sim/games.py        |
| `principal_agent` | scenarios/principal_agent.py | `PrincipalAgentForm` | orchestrator/sim/games.py        |
| `discussion`      | scenarios/discussion.py      | `DiscussionTurn`     | orchestrator/sim/agent.py (chat) |
| `social_risk`     | scenarios/social_risk/       | `SocialRiskTurn`     | orchestrator/sim/collective.py   |
| `drift`           | scenarios/self_interest.py, strategy_diffusion.py | `DriftTurn` | orchestrator/sim/drift.py |
| `persona_request` | scenarios/persona_safety.py  | `PersonaRequest`     | orchestrator/sim/persona.py      |
| `population`      | scenarios/population.py      | `PopulationTurn`     | orchestrator/sim/population.py   |

The sim reads these instead of the prompt, so rewording a prompt never changes what it does;
the prompt a real model sees carries the same information in words. See docs/sim.md.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal, Mapping, TypeVar

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

M = TypeVar("M", bound="MetadataPart")


class MetadataError(ValueError):
    """Request metadata that does not follow the contract: a bug in the sender, never a model's
    failure (in process it propagates; serve-sim answers it with a 400)."""

    status_code = 400


class MetadataPart(BaseModel):
    """One sender's part of the metadata, stored under `KEY`."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    KEY: ClassVar[str]

    def as_metadata(self) -> dict[str, Any]:
        """`{KEY: <this as JSON-able data>}`, ready for `ModelClient.complete(metadata=...)`."""
        return {self.KEY: self.model_dump(mode="json")}

    @classmethod
    def read(cls: type[M], metadata: Mapping[str, Any] | None) -> M | None:
        """This part of `metadata`, validated; None when the request does not carry it."""
        data = (metadata or {}).get(cls.KEY)
        if data is None:
            return None
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MetadataError(f"invalid '{cls.KEY}' metadata: {exc.errors()[0]['loc']}: "
                                f"{exc.errors()[0]['msg']}") from None


# ---- judges ------------------------------------------------------------------------------------

class JudgeFlag(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str
    levels: list[str] = Field(default_factory=list, description="graded flags: level names, lowest first")


class JudgeItem(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    id: str
    sender: str
    text: str


class JudgeRequest(MetadataPart):
    """Code `items` on every flag of the codebook; `batch` decides the answer's shape."""

    KEY: ClassVar[str] = "judge"

    codebook: str = Field(description="the codebook's name (for rationales and debugging)")
    flags: list[JudgeFlag] = Field(min_length=1)
    items: list[JudgeItem] = Field(min_length=1, description="the message(s) to code, oldest first")
    roster: list[str] = Field(default_factory=list, description="every agent name of the conversation")
    errored: list[str] = Field(default_factory=list, description="agents whose calls had failed by then")
    batch: bool = Field(False, description="answer {'answers': [...]} with message ids, else one object")

    @model_validator(mode="after")
    def _one_item_unless_batch(self) -> "JudgeRequest":
        if not self.batch and len(self.items) != 1:
            raise ValueError("a single (batch=false) judge request codes exactly one item")
        return self


# ---- games -------------------------------------------------------------------------------------

class GameMove(MetadataPart):
    """One move of a repeated 2x2 game, as this player sees it (its labels, its payoffs)."""

    KEY: ClassVar[str] = "game"

    labels: list[str] = Field(min_length=2, max_length=2, description="the options, in the order listed")
    payoffs: dict[str, dict[str, list[float]]] = Field(
        description="payoffs[my label][partner's label] = [my points, partner's points]")
    partner_moves: list[str | None] = Field(
        default_factory=list, description="the partner's earlier moves in this round's labels, null = invalid")
    ask: Literal["move", "predict"] = Field(
        "move", description="its own move, or (social chain-of-thought) a prediction of the partner's")

    @model_validator(mode="after")
    def _full_matrix(self) -> "GameMove":
        for mine in self.labels:
            for theirs in self.labels:
                cell = self.payoffs.get(mine, {}).get(theirs)
                if cell is None or len(cell) != 2:
                    raise ValueError(f"payoffs[{mine}][{theirs}] must be [my points, partner's points]")
        return self


class PrincipalAgentForm(MetadataPart):
    """A principal-agent form: which numbered product the customer and the principal want."""

    KEY: ClassVar[str] = "principal_agent"

    products: int = Field(ge=1, description="number of products listed (numbered from 1)")
    customer_product: int | None = Field(None, ge=1, description="the product the customer asked for")
    principal_product: int | None = Field(None, ge=1, description="the product the principal wants sold")


# ---- discussions -------------------------------------------------------------------------------

class DiscussionTurn(MetadataPart):
    """What the scaffolding reveals to a discussion speaker (None: the prompt does not say)."""

    KEY: ClassVar[str] = "discussion"

    name: str | None = None
    peers: list[str] | None = None
    errored: list[str] | None = None  # peers whose last message this speaker saw was a failed call


# ---- social risks ------------------------------------------------------------------------------

class SocialRiskTurn(MetadataPart):
    """A turn of the social-risk kind: two well-formed replies, one without the risk's behaviour
    and one with it, and the propensity (a `Propensities` field) that chooses between them."""

    KEY: ClassVar[str] = "social_risk"

    behaviour: str = Field(description="a Propensities field, e.g. collude, conform, defer")
    safe: str = Field(description="a well-formed reply without the behaviour")
    risky: str = Field(description="a well-formed reply showing it")


# ---- alignment drift (owned by the alignment-drift kinds) -------------------------------------

class DriftStep(BaseModel):
    """One earlier round as the agent experienced it (only the rounds its history window shows)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    choice: Literal["aligned", "deviant", "invalid"]
    reward: float | None = Field(None, description="what the round paid it (diffusion: its capital's change)")
    supervised: bool | None = Field(None, description="self_interest: whether the round was supervised "
                                                      "(a deviant choice then is caught)")


class DriftTurn(MetadataPart):
    """A round of an alignment-drift game: the two answers in the game's own format and what the
    agent has experienced so far (its own rounds; in diffusion, the peers' last choices). The sim's
    formulas that read it are in orchestrator/sim/drift.py and docs/drift.md."""

    KEY: ClassVar[str] = "drift"

    game: Literal["self_interest", "diffusion"]
    aligned: str = Field(description="a well-formed answer choosing the aligned option")
    deviant: str = Field(description="a well-formed answer choosing the deviant option")
    history: list[DriftStep] = Field(default_factory=list, description="this agent's earlier rounds, oldest first")
    aligned_reward: float | None = Field(None, description="self_interest: what the aligned option pays a round, "
                                                           "to tell whether a deviant round paid more")
    peers_deviant_share: float | None = Field(None, ge=0, le=1,
                                              description="diffusion: the share of the others who chose deviant last round")


# ---- persona safety (owned by the persona-safety kind) -----------------------------------------

class PersonaRequest(MetadataPart):
    """A request a safe assistant refuses, put to an agent with a character (or none), by a method."""

    KEY: ClassVar[str] = "persona_request"

    character: str | None = Field(None, description="the character's id or label (P12, C+A+), None = no persona")
    method: Literal["prompt", "steer"] = "prompt"
    refuse: str = Field(description="a refusal, in words")
    comply: str = Field(description="a compliant answer (the sim's is a non-operational placeholder)")


# ---- populations (owned by the population kind) ------------------------------------------------

class PopulationTurn(MetadataPart):
    """A population agent's turn in its feed: one well-formed reply per action its feed allows
    (post, reply, react, follow, repost, task, contribute, none); the sim picks one by the
    model's `feed_actions` weights (orchestrator/sim/population.py)."""

    KEY: ClassVar[str] = "population"

    options: dict[str, str] = Field(min_length=1, description="action -> a well-formed JSON reply taking it")
    exposures: dict[str, int] = Field(default_factory=dict,
                                      description="repost: how often this agent has already seen the offered post")

"""Per-model behavioural propensities of sim agents.

Each sim model carries probabilities for the behaviours the study codes. Unless the run's
`SimSettings` set them (a file's `sim: models:` section), they are derived from a hash of the model
name, so `sim/llama-3.3-70b` always behaves the same way and two different names behave measurably
differently, while clones (same name) share one profile. There is no registry: the settings travel
with each request, so two runs in one process can give one name two different profiles.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from .naming import base_name

if TYPE_CHECKING:
    from .settings import SimSettings


ROLE_SHARES: dict[str, float] = {"periphery": 0.935, "broadcaster": 0.013, "conversationalist": 0.013, "amplifier": 0.013,
               "connector": 0.013, "coordinator": 0.013}
FEED_ACTIONS: dict[str, float] = {"post": 0.2, "reply": 0.2, "react": 0.3, "follow": 0.1, "repost": 0.15, "task": 0.02,
                "contribute": 0.03, "none": 0.1}


class Propensities(BaseModel):
    """Probabilities (0..1) that a sim agent's message shows each behaviour."""

    model_config = ConfigDict(extra="forbid")

    greet: float = Field(0.3, ge=0, le=1, description="greeting / social filler (phatic)")
    meta: float = Field(0.2, ge=0, le=1, description="commentary about the conversation or group")
    lead: float = Field(0.3, ge=0, le=1, description="proposing structure, assigning work, summarising")
    arch: float = Field(0.5, ge=0, le=1, description="technical / architecture content")
    agree: float = Field(0.4, ge=0, le=1, description="agreeing with or validating a peer")
    notice_crash: float = Field(0.5, ge=0, le=1, description="mentioning a peer that errored or went silent")
    address_peers: float = Field(0.5, ge=0, le=1, description="addressing peers by name (@Name)")
    length: int = Field(60, ge=5, le=2000, description="mean message length in words")
    shortcut: float = Field(0.2, ge=0, le=1, description="agentic scenarios: take a policy-violating shortcut")
    tamper: float = Field(0.1, ge=0, le=1, description="agentic scenarios: tamper with records or configs")
    exfiltrate: float = Field(0.1, ge=0, le=1, description="agentic scenarios: copy or re-date protected files")
    inflate: float = Field(0.1, ge=0, le=1, description="agentic scenarios: inflate a score it reports")
    cooperate: float = Field(0.6, ge=0, le=1, description="repeated games: choose the cooperative option")
    side_with_principal: float = Field(0.5, ge=0, le=1,
                                       description="principal-agent: follow the principal over the customer")
    # social risks (scenarios/social_risk): P(a turn shows the behaviour) in the environments that ask for it
    collude: float = Field(0.3, ge=0, le=1, description="social risks: price or bid at the collusive level")
    conform: float = Field(0.3, ge=0, le=1, description="social risks: follow a (wrong) majority against the evidence")
    defer: float = Field(0.3, ge=0, le=1, description="social risks: follow a (wrong) authority against the evidence")
    withhold: float = Field(0.3, ge=0, le=1, description="social risks: withhold or misreport private information")
    exploit: float = Field(0.3, ge=0, le=1, description="social risks: exploit an information advantage")
    grab: float = Field(0.3, ge=0, le=1, description="social risks: take more than a fair share (priority, resources)")
    shirk: float = Field(0.3, ge=0, le=1, description="social risks: avoid a costly task or leave one's role")
    rigid: float = Field(0.3, ge=0, le=1, description="social risks: hold to an initial instruction or position")
    assume: float = Field(0.3, ge=0, le=1, description="social risks: act on an ambiguous task without asking")
    covert: float = Field(0.2, ge=0, le=1, description="social risks: hide a signal for a peer in a message")
    drift: float = Field(0.2, ge=0, le=1, description="social risks: change a relayed message's content per hop")
    # alignment drift (scenarios/self_interest.py, strategy_diffusion.py; orchestrator/sim/drift.py)
    violate: float = Field(0.2, ge=0, le=1, description="alignment drift: P(the rule-violating option) before any reward")
    reward_sensitivity: float = Field(0.5, ge=0, le=5,
                                      description="alignment drift: how far rewards seen move that probability")
    collective: float = Field(0.3, ge=0, le=1, description="strategy diffusion: P(the collective option) at first")
    imitate: float = Field(0.5, ge=0, le=1, description="strategy diffusion: weight on the peers' last choices")
    # persona safety (scenarios/persona_safety.py; orchestrator/sim/persona.py)
    comply: float = Field(0.1, ge=0, le=1, description="persona safety: P(comply with a harmful request)")
    comply_by_character: dict[str, float] = Field(
        default_factory=dict, description="persona safety: P(comply) per character id (P1..P16) or 'none', "
                                          "per method as 'P12@steer'; overrides comply")
    # populations (scenarios/population.py; orchestrator/sim/population.py, docs/population.md)
    activity_alpha: float = Field(2.0, gt=1, le=10, description="population: Pareto exponent of the agents' activity "
                                                                "weights (smaller = heavier tail)")
    cascade_alpha: float = Field(2.57, gt=1, le=10, description="population: power-law exponent of cascade sizes "
                                                                "(reposts + 1 per post; Molt Dynamics 2.57)")
    exposure_decay: float = Field(0.5, ge=0, le=1, description="population: each further exposure to a post multiplies "
                                                               "the chance to repost it by this (diminishing returns)")
    role_shares: dict[str, float] = Field(
        default_factory=lambda: dict(ROLE_SHARES), description="population: the share of agents in each structural "
                                                              "role (periphery, broadcaster, conversationalist, "
                                                              "amplifier, connector, coordinator)")
    task_group_success: float = Field(0.1, ge=0, le=1, description="population: P(a task with a quorum of "
                                                                   "contributors is resolved by the group)")
    task_solo_success: float = Field(0.08, ge=0, le=1, description="population: P(a single agent alone resolves "
                                                                   "a task), the baseline")
    feed_actions: dict[str, float] = Field(
        default_factory=lambda: dict(FEED_ACTIONS), description="population, model mode: relative weights of the "
                                                               "actions a sim agent picks among those its feed offers")



SOCIAL_RISK_BEHAVIOURS = ("collude", "conform", "defer", "withhold", "exploit", "grab", "shirk", "rigid", "assume",
                          "covert", "drift")  # the fields a social-risk turn may name


def propensities_for(model: str, settings: "SimSettings | None" = None) -> Propensities:
    """The propensities of a sim model: the settings' ones for it, else derived from its name."""
    name = base_name(model)
    found = settings.models.get(name) if settings is not None else None
    return found if found is not None else derived_from_name(name)


@lru_cache(maxsize=4096)
def derived_from_name(name: str) -> Propensities:
    """Deterministic, well-spread propensities from a hash of the name (cached: the sim asks per reply)."""
    digest = hashlib.sha256(name.encode()).digest()
    u = [b / 255 for b in digest]
    return Propensities(
        greet=round(0.05 + 0.8 * u[0], 3),
        meta=round(0.02 + 0.5 * u[1], 3),
        lead=round(0.05 + 0.7 * u[2], 3),
        arch=round(0.15 + 0.8 * u[3], 3),
        agree=round(0.1 + 0.8 * u[4], 3),
        notice_crash=round(0.1 + 0.8 * u[5], 3),
        address_peers=round(0.1 + 0.8 * u[6], 3),
        length=int(25 + 200 * u[7]),
        shortcut=round(0.05 + 0.6 * u[8], 3),
        tamper=round(0.02 + 0.4 * u[9], 3),
        exfiltrate=round(0.02 + 0.4 * u[10], 3),
        inflate=round(0.02 + 0.5 * u[11], 3),
        cooperate=round(0.2 + 0.75 * u[12], 3),
        side_with_principal=round(0.1 + 0.8 * u[13], 3),
        collude=round(0.05 + 0.8 * u[14], 3),
        conform=round(0.05 + 0.8 * u[15], 3),
        defer=round(0.05 + 0.8 * u[16], 3),
        withhold=round(0.05 + 0.8 * u[17], 3),
        exploit=round(0.05 + 0.8 * u[18], 3),
        grab=round(0.05 + 0.8 * u[19], 3),
        shirk=round(0.05 + 0.8 * u[20], 3),
        rigid=round(0.05 + 0.8 * u[21], 3),
        assume=round(0.05 + 0.8 * u[22], 3),
        covert=round(0.02 + 0.5 * u[23], 3),
        drift=round(0.02 + 0.5 * u[24], 3),
        violate=round(0.05 + 0.4 * u[25], 3),
        reward_sensitivity=round(0.2 + 1.5 * u[26], 3),
        collective=round(0.05 + 0.5 * u[27], 3),
        imitate=round(0.1 + 0.8 * u[28], 3),
        comply=round(0.02 + 0.3 * u[29], 3),
    )

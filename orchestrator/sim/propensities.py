"""Per-model behavioural propensities of sim agents.

Each sim model carries probabilities for the behaviours the study codes. Unless a YAML file sets
them, they are derived from a hash of the model name, so `sim/llama-3.3-70b` always behaves the
same way and two different names behave measurably differently, while clones (same name) share
one profile.
"""

from __future__ import annotations

import hashlib
from functools import lru_cache

from pydantic import BaseModel, ConfigDict, Field

SIM_PREFIX = "sim/"


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


_registry: dict[str, Propensities] = {}


def base_name(model: str) -> str:
    """`sim/llama-3.3-70b` -> `llama-3.3-70b`; any other string is returned unchanged."""
    return model[len(SIM_PREFIX):] if model.startswith(SIM_PREFIX) else model


def register(model: str, propensities: Propensities) -> None:
    """Fix the propensities of one sim model (e.g. from a YAML file's `sim:` section)."""
    _registry[base_name(model)] = propensities


def reset_registry() -> None:
    """Forget YAML overrides (tests use this to stay independent)."""
    _registry.clear()


def propensities_for(model: str) -> Propensities:
    """The propensities of a sim model: registered ones, else derived from its name."""
    name = base_name(model)
    if name in _registry:
        return _registry[name]
    return derived_from_name(name)


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
    )

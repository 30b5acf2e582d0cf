"""Sim agents of the social-risk kind (scenarios/social_risk).

A request is a social-risk turn if its metadata carries `social_risk` (`SocialRiskTurn`): the
environment's two well-formed replies, `safe` and `risky`, and the behaviour that chooses between
them, a field of the model's `Propensities` (collude, conform, defer, withhold, exploit, grab,
shirk, rigid, assume, covert, drift). The agent answers `risky` with that probability, else
`safe`; with probability `malformed_rate` (the model's `GameTraits`) it answers something the
environment cannot read instead (a reply without its answer line), so the invalid path is
exercised and a planted rate is recovered among the readable replies. It reads only the
metadata, never the prompt. Draws are seeded per (model, seed, metadata): deterministic for a
seed. The sim is never evidence about real models.
"""

from __future__ import annotations

import hashlib
import math
import random

from .agent import SimReply
from .games import traits_for
from .metadata import MetadataError, SocialRiskTurn
from .naming import base_name
from .propensities import SOCIAL_RISK_BEHAVIOURS, propensities_for
from .settings import SimSettings
from .text import content_text

UNREADABLE = "I need a moment to think about how to answer this."


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """The safe or the risky reply (module docstring)."""
    turn = SocialRiskTurn.read(metadata)
    if turn is None:
        raise MetadataError("the social-risk agent needs 'social_risk' metadata")
    if turn.behaviour not in SOCIAL_RISK_BEHAVIOURS:
        raise MetadataError(f"invalid 'social_risk' metadata: unknown behaviour {turn.behaviour!r}")
    rng = _rng(model, seed, turn)
    p = getattr(propensities_for(model, settings), turn.behaviour)
    malformed = traits_for(model, settings).malformed_rate
    text = UNREADABLE if rng.random() < malformed else (turn.risky if rng.random() < p else turn.safe)
    prompt_chars = sum(len(content_text(m)) for m in messages)
    completion = max(1, math.ceil(len(text) / 4))
    latency = (0.3 + completion / 60.0 + prompt_chars / 20000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, max(1, math.ceil(prompt_chars / 4)), completion, round(latency, 4))


def _rng(model: str, seed: int | None, turn: SocialRiskTurn) -> random.Random:
    digest = hashlib.sha256(f"{base_name(model)}|{seed}|{turn.behaviour}|{turn.safe}|{turn.risky}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))

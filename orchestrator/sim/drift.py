"""Sim agents of the alignment-drift kinds (scenarios/self_interest.py, strategy_diffusion.py).

A request is a drift round if its metadata carries `drift` (`DriftTurn`): the game's two
well-formed answers, `aligned` and `deviant`, and what the agent has experienced so far. The agent
answers `deviant` with probability p_t, else `aligned`; with probability `malformed_rate` (the
model's `GameTraits`, 0.02 by default) it first answers something neither parser can read, so the
invalid path is exercised and p_t is recovered among the readable answers. It reads only the
metadata, never the prompt. The model's `Propensities` plant the behaviour:

- self_interest: logit p_t = logit(violate) + reward_sensitivity * E_t, where the evidence
  E_t = (earlier deviant rounds that paid more than the aligned option, `aligned_reward`)
        - (earlier deviant rounds that were supervised, i.e. caught),
  counted over the rounds the history window shows (`history`). With violate 0 or 1, p_t = violate.
  So with reward_sensitivity 0 the agent violates with probability `violate` in every round; under
  the original's default (all_unsupervised) every deviant round adds one to E_t, so deviance
  reinforces itself; when supervised, every caught round subtracts one.
- diffusion (the collective option is the deviant one): p_1 = collective, and from round 2 on
  p_t = (1 - imitate) * collective + imitate * peers_deviant_share, the share of the other agents
  (planted ones included, unreadable answers counted as not collective) who chose collective in
  the round before.

Draws are seeded per (model, seed, metadata): deterministic for a seed, the malformed draw first.
docs/drift.md gives the formulas with worked expectations. The sim is never evidence about models.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from .agent import SimReply
from .games import traits_for
from .metadata import DriftStep, DriftTurn, MetadataError
from .naming import base_name
from .propensities import Propensities, propensities_for
from .settings import SimSettings
from .text import content_text

UNREADABLE = "I need a moment to think about how to answer this."


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """The aligned or the deviant answer, or (rarely) an unreadable one (module docstring)."""
    turn = DriftTurn.read(metadata)
    if turn is None:
        raise MetadataError("the drift agent needs 'drift' metadata")
    rng = _rng(model, seed, turn)
    malformed = traits_for(model, settings).malformed_rate
    if rng.random() < malformed:
        text = UNREADABLE
    else:
        text = turn.deviant if rng.random() < deviant_probability(turn, propensities_for(model, settings)) \
            else turn.aligned
    prompt_chars = sum(len(content_text(m)) for m in messages)
    completion = max(1, math.ceil(len(text) / 4))
    latency = (0.3 + completion / 60.0 + prompt_chars / 20000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, max(1, math.ceil(prompt_chars / 4)), completion, round(latency, 4))


def deviant_probability(turn: DriftTurn, p: Propensities) -> float:
    """p_t of the module docstring."""
    if turn.game == "diffusion":
        if turn.peers_deviant_share is None:
            return p.collective
        return (1 - p.imitate) * p.collective + p.imitate * turn.peers_deviant_share
    return violation_probability(p.violate, p.reward_sensitivity, evidence(turn.history, turn.aligned_reward))


def evidence(history: list[DriftStep], aligned_reward: float | None) -> int:
    """E_t: deviant rounds that paid more than the aligned option, minus deviant rounds caught."""
    paid = sum(1 for s in history if s.choice == "deviant" and s.reward is not None and aligned_reward is not None
               and s.reward > aligned_reward)
    caught = sum(1 for s in history if s.choice == "deviant" and s.supervised is True)
    return paid - caught


def violation_probability(violate: float, sensitivity: float, e: float) -> float:
    """sigmoid(logit(violate) + sensitivity * e); a certain 0 or 1 stays where it is."""
    if violate <= 0.0 or violate >= 1.0:
        return violate
    z = math.log(violate / (1 - violate)) + sensitivity * e
    return 1 / (1 + math.exp(-z)) if z >= 0 else math.exp(z) / (1 + math.exp(z))


def _rng(model: str, seed: int | None, turn: DriftTurn) -> random.Random:
    blob = json.dumps(turn.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{base_name(model)}|{seed}|{blob}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))

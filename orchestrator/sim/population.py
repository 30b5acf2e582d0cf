"""Sim agents of the population kind (scenarios/population.py), model mode.

A request is a population turn if its metadata carries `population` (`PopulationTurn`): one
well-formed JSON reply per action the agent's feed allows. The agent picks one with weights from
the model's `feed_actions` (Propensities); a repost's weight is multiplied by `exposure_decay` per
earlier exposure to the offered post (`exposures["repost"]`), diminishing returns on repeated
exposure. With probability `malformed_rate` (GameTraits) it answers text the scenario cannot read,
so the invalid path is exercised. It reads only the metadata, never the prompt; draws are seeded
per (model, seed, options). The `sim_population` mode makes no calls at all: it draws the same
propensities in vectorised code (scenarios/population.py). The sim is never evidence about real models.
"""

from __future__ import annotations

import hashlib
import math
import random

from .agent import SimReply
from .games import traits_for
from .metadata import MetadataError, PopulationTurn
from .naming import base_name
from .propensities import propensities_for
from .settings import SimSettings
from .text import content_text

UNREADABLE = "Scrolling... nothing to add right now, maybe later!"


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """One of the offered replies, by the planted action weights (module docstring)."""
    turn = PopulationTurn.read(metadata)
    if turn is None:
        raise MetadataError("the population agent needs 'population' metadata")
    props = propensities_for(model, settings)
    digest = hashlib.sha256(f"{base_name(model)}|{seed}|{sorted(turn.options.items())}".encode()).digest()
    rng = random.Random(int.from_bytes(digest[:8], "big"))
    actions = sorted(turn.options)
    weights = [props.feed_actions.get(a, 0.0) * (props.exposure_decay ** max(0, turn.exposures.get(a, 1) - 1)
                                                 if a == "repost" else 1.0) for a in actions]
    if rng.random() < traits_for(model, settings).malformed_rate or sum(weights) <= 0:
        text = UNREADABLE
    else:
        text = turn.options[rng.choices(actions, weights)[0]]
    prompt_chars = sum(len(content_text(m)) for m in messages)
    completion = max(1, math.ceil(len(text) / 4))
    latency = (0.3 + completion / 60.0 + prompt_chars / 20000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, max(1, math.ceil(prompt_chars / 4)), completion, round(latency, 4))

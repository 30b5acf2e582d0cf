"""Sim agents of the persona-safety kind (scenarios/persona_safety.py).

A request is a persona-safety request if its metadata carries `persona_request` (`PersonaRequest`):
the character the agent was given (its id or label, None for none), the method (`prompt` or
`steer`) and two answers in words, `refuse` and `comply` (the scenario's compliant answer is a
placeholder that says what would stand there and writes none of it). The agent complies with
probability `comply_by_character[key]` of its `Propensities`, where the key is the character
(`P12`, `C+A+`, or `none`) with `@steer` appended under method `steer` (`P12@steer`), and with
probability `comply` when the table has no such key; otherwise it refuses. With probability
`malformed_rate` (the model's `GameTraits`, 2% by default) it answers something that neither
complies nor refuses (`UNREADABLE`), so judges see answers that fit no flag. It reads only the
metadata, never the prompt: the character's sentence and the steering request change nothing
but the probability. Draws are seeded per (model, seed, metadata). The sim is never evidence
about real models.
"""

from __future__ import annotations

import hashlib
import math
import random

from .agent import SimReply
from .games import traits_for
from .metadata import MetadataError, PersonaRequest
from .naming import base_name
from .propensities import Propensities, propensities_for
from .settings import SimSettings
from .text import content_text

UNREADABLE = "Hmm. Let me come back to this one later, once I have thought it over."
NO_CHARACTER = "none"
STEER_SUFFIX = "@steer"


def comply_key(request: PersonaRequest) -> str:
    """The `comply_by_character` key of a request: `P12`, `none`, `P12@steer`, `C+A+@steer`."""
    key = request.character or NO_CHARACTER
    return key + STEER_SUFFIX if request.method == "steer" else key


def comply_probability(props: Propensities, request: PersonaRequest) -> float:
    """P(comply): the character's (and method's) planted rate, else the model's `comply`."""
    return props.comply_by_character.get(comply_key(request), props.comply)


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """The compliant answer, the refusal, or (rarely) an answer that is neither (module docstring)."""
    request = PersonaRequest.read(metadata)
    if request is None:
        raise MetadataError("the persona-safety agent needs 'persona_request' metadata")
    rng = _rng(model, seed, request)
    p = comply_probability(propensities_for(model, settings), request)
    if rng.random() < traits_for(model, settings).malformed_rate:
        text = UNREADABLE
    else:
        text = request.comply if rng.random() < p else request.refuse
    prompt_chars = sum(len(content_text(m)) for m in messages)
    completion = max(1, math.ceil(len(text) / 4))
    latency = (0.3 + completion / 60.0 + prompt_chars / 20000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, max(1, math.ceil(prompt_chars / 4)), completion, round(latency, 4))


def _rng(model: str, seed: int | None, request: PersonaRequest) -> random.Random:
    blob = f"{base_name(model)}|{seed}|{request.character}|{request.method}|{request.refuse}|{request.comply}"
    return random.Random(int.from_bytes(hashlib.sha256(blob.encode()).digest()[:8], "big"))

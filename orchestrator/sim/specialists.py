"""Which sim answers a request: the group-chat agent by default, or a specialist.

Each specialist lives in its own module and exposes `detect(model, messages, tools) -> bool` and
`reply(model, messages, *, seed, temperature, max_tokens, tools) -> SimReply`. They are tried in
order; modules are imported on first use, so the common chat path stays light.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from typing import Callable

SPECIALISTS = (
    "orchestrator.sim.judge",    # sim/judge-* models code messages for the judges
    "orchestrator.sim.actor",    # requests with tools: agents acting in a sandboxed workspace
    "orchestrator.sim.games",    # repeated games and principal-agent forms
)


@lru_cache(maxsize=None)
def _load(name: str):
    try:
        return importlib.import_module(name)
    except ModuleNotFoundError as exc:
        if exc.name == name:
            return None  # not written yet: that specialist simply does not exist
        raise


def specialist_for(model: str, messages: list[dict], tools: list | None) -> Callable | None:
    for name in SPECIALISTS:
        module = _load(name)
        if module is not None and module.detect(model, messages, tools):
            return module.reply
    return None

"""Names of sim models and of the stand-ins `--sim` swaps in for real models.

Only the sim package knows what a sim model name looks like; config, judges and the client ask here
(or ask the sim provider whether it serves a model) instead of checking prefixes themselves.
"""

from __future__ import annotations

SIM_PREFIX = "sim/"
JUDGE_PREFIX = "judge"


def is_sim(model: str) -> bool:
    return model.startswith(SIM_PREFIX)


def base_name(model: str) -> str:
    """`sim/llama-3.3-70b` -> `llama-3.3-70b`: the key of a model in `SimSettings` and its hash seed."""
    return model[len(SIM_PREFIX):] if is_sim(model) else model


def is_judge_name(model: str) -> bool:
    """`sim/judge-*`: a sim judge, which answers judge requests and asks for judge metadata otherwise."""
    return base_name(model).startswith(JUDGE_PREFIX)


def stand_in(model: str) -> str:
    """`groq/llama-3.3-70b-versatile` -> `sim/llama-3.3-70b-versatile`; sim models unchanged."""
    return model if is_sim(model) else SIM_PREFIX + model.split("/")[-1]


def judge_stand_in(model: str) -> str:
    """`gemini/gemini-2.5-flash` -> `sim/judge-gemini-2.5-flash`; sim models unchanged."""
    return model if is_sim(model) else f"{SIM_PREFIX}{JUDGE_PREFIX}-{model.split('/')[-1]}"

"""Which sim answers a request: a specialist named by the request's metadata, else the chat agent.

Dispatch reads only what a sender put in the request on purpose (orchestrator/sim/metadata.py),
never the prompt: a judge request carries `judge`, an agentic episode `sim_plan`, a game move
`game`, a principal-agent form `principal_agent`, a social-risk turn `social_risk`. Two fallbacks, both documented in docs/sim.md,
keep a sim that gets no metadata (e.g. behind a separate `serve-sim` process) useful: a request
whose tools include a workspace tool goes to the actor (which then reads a plan from the tools),
and a `sim/judge-*` model goes to the judge (which then says it needs judge metadata).

Each specialist module exposes `reply(model, messages, *, seed, temperature, max_tokens, tools,
metadata, settings) -> SimReply`; modules are imported on first use, so the chat path stays light.
"""

from __future__ import annotations

import importlib
from typing import Callable, Mapping

from .naming import is_judge_name

BY_METADATA: tuple[tuple[str, str], ...] = (
    ("judge", "sociolab.orchestrator.sim.judge"),
    ("sim_plan", "sociolab.orchestrator.sim.actor"),
    ("game", "sociolab.orchestrator.sim.games"),
    ("principal_agent", "sociolab.orchestrator.sim.games"),
    ("social_risk", "sociolab.orchestrator.sim.collective"),
    ("drift", "sociolab.orchestrator.sim.drift"),
    ("persona_request", "sociolab.orchestrator.sim.persona"),
    ("population", "sociolab.orchestrator.sim.population"),
)
WORKSPACE_TOOLS = frozenset({"ls", "cat", "write_file", "edit", "cp", "mv", "rm", "mkdir", "set_date", "run",
                             "send_message", "shell", "read_file", "list_dir"})  # the last three: the
                                                                                 # Instrumental Choices toolset


def specialist_for(model: str, metadata: Mapping | None, tools: list | None) -> Callable | None:
    """The `reply` function that answers this request, or None for the chat agent."""
    if metadata:
        for key, module in BY_METADATA:
            if key in metadata:
                return importlib.import_module(module).reply
    if tools and WORKSPACE_TOOLS.intersection(tool_names(tools)):
        return importlib.import_module("sociolab.orchestrator.sim.actor").reply
    if is_judge_name(model):
        return importlib.import_module("sociolab.orchestrator.sim.judge").reply
    return None


def tool_names(tools: list | None) -> list[str]:
    """Function names of OpenAI tool schemas (`{"type": "function", "function": {"name": ...}}`)."""
    out = []
    for t in tools or []:
        if isinstance(t, dict):
            inner = t.get("function")
            fn = inner if isinstance(inner, dict) else t
            name = fn.get("name")
            if isinstance(name, str):
                out.append(name)
    return out

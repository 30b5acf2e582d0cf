"""A dry run's stand-in provider: every model, under its own name, answered by its sim stand-in.

`sociolab run --dry-run` plays the whole plan against this provider in an in-memory store, so
the number of calls and the tokens each real model would see come from the scenario's own code
(rounds, drop rules, tool loops), not from a formula that could drift from it. Replies are the
sim's, so the counts are estimates; nothing leaves the process and nothing is spent.
"""

from __future__ import annotations

from dataclasses import replace

from ..provider import Endpoint, ModelRequest, ProviderDefaults, ProviderReply
from .naming import stand_in
from .provider import SimProvider
from .settings import SimSettings


class RehearsalProvider(ProviderDefaults):
    """Every model, in process, answered by its sim stand-in; priced afterwards with the real
    model's price (so `list_price` stays unknown here)."""

    name = "rehearsal"

    def __init__(self, settings: SimSettings | None = None):
        self.sim = SimProvider(settings)

    def in_process(self, model: str, endpoint: Endpoint | None) -> bool:
        return True

    def supports(self, model: str, capability: str) -> bool | None:
        return self.sim.supports(stand_in(model), capability)

    async def complete(self, request: ModelRequest) -> ProviderReply:
        reply = await self.sim.complete(replace(request, model=stand_in(request.model), endpoint=None))
        reply.cost_usd = None  # priced afterwards, with the real model's price
        return reply

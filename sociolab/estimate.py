"""`--dry-run`: what a plan would call, how many tokens, and what it would cost, spending nothing.

The plan is rehearsed end to end on sim stand-ins (orchestrator/sim/rehearsal.py) in an
in-memory store, under the real model names; tokens are the sim's, prices the run's `prices:`
or litellm's list. A model with no known price shows its cost as unknown, never as $0.
"""

from __future__ import annotations

from sociolab.orchestrator.client import ModelClient, ModelLimits, default_providers
from sociolab.orchestrator.cost import ModelEstimate, cost_of
from sociolab.config import Plan
from sociolab.runner import execute
from sociolab.orchestrator.sim.rehearsal import RehearsalProvider
from sociolab.orchestrator.store import Store


async def rehearse(plan: Plan) -> list[ModelEstimate]:
    """Calls and tokens per model from a rehearsal of the whole plan; cost from known prices."""
    unthrottled = plan.file.client.model_copy(update={"limits": ModelLimits(), "models": {}})  # a rehearsal need not wait
    client = ModelClient(unthrottled, providers=[RehearsalProvider(plan.file.sim.settings())])
    with Store.open(":memory:") as store:
        await execute(plan, store, client=client)
        calls = store.calls_by_model()  # failed calls (injected crashes) are never sent: they cost nothing
    pricing = client_for_prices(plan)
    return [ModelEstimate(c.model, c.calls, c.prompt_tokens, c.completion_tokens,
                          cost_of(pricing, c.model, c.prompt_tokens, c.completion_tokens))
            for c in calls]



def client_for_prices(plan: Plan) -> ModelClient:
    """A client that is never called: it only knows which provider serves a model, and prices."""
    return ModelClient(plan.file.client, endpoints=plan.endpoints(), prices=plan.file.prices,
                       providers=default_providers(plan.file.client, plan.file.sim.settings()))

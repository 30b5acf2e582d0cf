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
        rows = store.con.execute(  # injected crashes are never sent: they cost nothing
            "SELECT model, count(*), sum(prompt_tokens), sum(completion_tokens) FROM llm_calls "
            "WHERE error IS NULL GROUP BY model ORDER BY model").fetchall()
    pricing = client_for_prices(plan)
    return [ModelEstimate(m, n, int(p or 0), int(c or 0), cost_of(pricing, m, int(p or 0), int(c or 0)))
            for m, n, p, c in rows]




def client_for_prices(plan: Plan) -> ModelClient:
    """A client that is never called: it only knows which provider serves a model, and prices."""
    return ModelClient(plan.file.client, endpoints=plan.endpoints(), prices=plan.file.prices,
                       providers=default_providers(plan.file.client, plan.file.sim.settings()))

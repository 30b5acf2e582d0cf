"""`sociolab models check`: one tiny call per model, before an experiment spends anything real.

For each model: is it reachable, is the key accepted, does its provider take tools, a JSON schema
and a seed (litellm's capability data, `?` where it does not know the model, and whether the call
had to drop the seed), how long did the call take, and is its price known. A check never raises for one model's failure: it reports
it on that model's row, so one table shows everything that must be fixed.
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import ClientSettings, ModelClient
from sociolab.base.errors import UserError

PROBE = [{"role": "user", "content": "Reply with the single word OK."}]
PROBE_TOKENS = 64  # room for a reasoning model's thinking before its one word
PROBE_SETTINGS = {"max_attempts": 2, "initial_wait_s": 0.5, "max_wait_s": 2.0, "timeout_s": 30.0}


@dataclass
class ModelCheck:
    model: str
    provider: str
    ok: bool
    tools: bool | None = None          # None: the capability data does not know the model
    json_schema: bool | None = None
    seed: bool | None = None
    latency_ms: float | None = None
    price_known: bool = False
    problem: str | None = None


async def check_models(client: ModelClient, models: list[str]) -> list[ModelCheck]:
    """One probe call per model, in order; failures are reported per row, never raised."""
    return [await check_one(client, model) for model in models]


async def check_one(client: ModelClient, model: str) -> ModelCheck:
    try:
        row = describe(client, model)
    except UserError as exc:
        return ModelCheck(model, "?", ok=False, problem=exc.message)
    try:
        client.check_ready([model])
        call = await client.complete(model, PROBE, temperature=0.0, max_tokens=PROBE_TOKENS, seed=1)
    except UserError as exc:  # a missing or refused key, an unreachable host
        return _failed(row, exc.message)
    row.latency_ms = call.latency_ms
    if not call.ok:
        return _failed(row, f"{call.error_type}: {call.error}")
    if "seed" in call.dropped_params:
        row.seed = False
    row.ok = True
    return row


def describe(client: ModelClient, model: str) -> ModelCheck:
    """What the capability data and price lists say of a model, before any call."""
    return ModelCheck(model, client.provider_for(model).name, ok=False,
                      price_known=client.price_or_list_price(model) is not None,
                      tools=client.supports(model, "tools"),
                      json_schema=client.supports(model, "response_schema"),
                      seed=client.supports(model, "seed"))


def _failed(row: ModelCheck, problem: str) -> ModelCheck:
    row.ok, row.problem = False, problem
    return row


def probe_client(base: ModelClient) -> ModelClient:
    """The same providers, endpoints and prices, with quick retries and no cache or budget."""
    settings = ClientSettings.model_validate({**base.settings.model_dump(), **PROBE_SETTINGS, "cache": False})
    return ModelClient(settings, endpoints=base.endpoints, providers=base.providers, prices=base.prices)

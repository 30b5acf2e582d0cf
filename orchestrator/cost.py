"""What a planned set of calls would cost: one row per model, priced as the client prices calls.

Shared by the run rehearsal (`sociolab run --dry-run`) and the judge estimate (`sociolab judge
--dry-run`); a model with no known price costs None (unknown), never $0.
"""

from __future__ import annotations

from dataclasses import dataclass

from .client import ModelClient


@dataclass
class ModelEstimate:
    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float | None


def cost_of(client: ModelClient, model: str, prompt_tokens: int, completion_tokens: int) -> float | None:
    """The run's own price, else the provider's list price; None when neither knows the model."""
    price = client.price_or_list_price(model)
    return price.cost(prompt_tokens, completion_tokens) if price is not None else None

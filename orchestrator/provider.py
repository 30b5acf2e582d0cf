"""The one interface every model provider implements, and what crosses it.

`ModelClient` (orchestrator/client.py) adds the cache, retries, throttling, budget and
bookkeeping around it; a provider only turns one `ModelRequest` into one `ProviderReply`, or
raises. Two providers exist: litellm (every real provider family, orchestrator/litellm_provider.py)
and the sim (orchestrator/sim/provider.py). The client asks each, in order, whether it serves a
model; nothing else in sociolab knows which provider a model belongs to.

`metadata` is how a scenario or judge tells a simulated provider what it must know (a sim plan,
the flags to code, a game's payoffs) without writing it into the prompt. Real providers never
send it anywhere: it is structured side information, never part of the conversation.

`steering` is the one request field that asks something of the model itself rather than of the
prompt: activation steering toward a Big-Five character (`Steering`). Only a provider that
declares the capability `steering` (`supports(model, "steering")`) may receive it; the client
refuses to send it anywhere else, with one line naming the model, so a steered condition never
silently runs unsteered (docs/persona_safety.md describes what a steering backend receives and
returns).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from pydantic import BaseModel, ConfigDict, Field

STEERING = "steering"  # the capability a provider declares when it honours `ModelRequest.steering`


class Endpoint(BaseModel):
    """Where and how to reach one model: an OpenAI-compatible (or other) host and its key.

    The key itself never appears in a file: `api_key_env` names the environment variable that
    holds it.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    api_base: str | None = Field(None, description="base URL of the host, e.g. http://127.0.0.1:8000/v1")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="name of the environment variable holding the API key")


def refuse_inline_keys(data: Any, names: tuple[str, ...] = ("api_key",)) -> Any:
    """A validator's first look: a key written into a file is refused with what to do instead."""
    if isinstance(data, dict):
        for name in names:
            if name in data:
                raise ValueError(f"{name}: never write a key into a file; put it in an environment variable "
                                 "and name that variable with api_key_env (api_key_envs for judges)")
    return data


class Price(BaseModel):
    """A model's price, for models litellm's price list lacks (or to override it)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    input_per_mtok: float = Field(ge=0, description="USD per million prompt tokens")
    output_per_mtok: float = Field(ge=0, description="USD per million completion tokens")

    def cost(self, prompt_tokens: int, completion_tokens: int) -> float:
        return (prompt_tokens * self.input_per_mtok + completion_tokens * self.output_per_mtok) / 1e6


class Steering(BaseModel):
    """Activation steering asked of a provider: add the character's trait directions to the
    model's hidden states while it answers (docs/persona_safety.md). What the vectors are, and
    how they are found, is the backend's business; this says only which poles, how strongly and
    (as a hint) where. Empty `poles` asks for the same backend's unsteered baseline."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    poles: dict[Literal["O", "C", "E", "A", "N"], Literal["high", "low"]] = Field(
        default_factory=dict, description="Big-Five trait letter -> pole to steer toward; empty = no steering")
    label: str | None = Field(None, description="the character's id or label (P12, C+A+), for records")
    coefficient: float | None = Field(None, description="steering strength alpha; None = the backend's calibrated default")
    layers: tuple[int, ...] | None = Field(None, description="layers to steer at (a hint); None = the backend's choice")
    apply_to: Literal["all", "generated"] = Field(
        "all", description="steer every position, or only the tokens the model generates")


@dataclass(frozen=True)
class ModelRequest:
    """One call as the scenario or judge asked for it, before any provider adapts it."""

    model: str
    messages: list[dict]
    params: dict[str, Any]                 # temperature, max_tokens, tools, response_format, ...
    seed: int | None = None
    metadata: dict[str, Any] | None = None  # for simulated providers only; never sent to a real one
    endpoint: Endpoint | None = None
    timeout_s: float = 120.0
    steering: Steering | None = None        # only for providers that support STEERING (module docstring)


@dataclass
class ProviderReply:
    """What a provider answered. `cost_usd` is None when the price is unknown (never 0 for that)."""

    text: str
    tool_calls: list[dict] | None = None   # [{"id", "name", "arguments" (JSON text)}]
    reasoning: str | None = None           # reasoning text, kept apart from what peers see
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None
    sim_latency_s: float | None = None     # simulated seconds a real model would take (virtual clock)
    dropped_params: list[str] = field(default_factory=list)  # asked for, not supported, not sent
    steering_applied: dict[str, Any] | None = None  # a steering backend's record of what it applied (layers, alpha)


class Provider(Protocol):
    """A source of completions for the models it serves."""

    name: str

    def serves(self, model: str, endpoint: Endpoint | None) -> bool:
        """True if this provider answers calls to `model` (reached at `endpoint`, if any)."""
        ...

    def in_process(self, model: str, endpoint: Endpoint | None) -> bool:
        """True if replies are computed here, instantly: runs use a virtual clock, no cache."""
        ...

    def caches_by_default(self, model: str, endpoint: Endpoint | None) -> bool:
        """Whether the response cache is on for this model unless the user says otherwise."""
        ...

    def check_ready(self, model: str, endpoint: Endpoint | None) -> None:
        """Raise UserError if the model cannot be called (unknown provider, missing key)."""
        ...

    def supports(self, model: str, capability: str) -> bool | None:
        """Whether the model takes `capability`: 'response_schema', 'tools', 'seed' or 'steering'
        (`ModelRequest.steering`: only a provider that says True may get it); None when the
        provider does not know the model."""
        ...

    def cache_salt(self, model: str) -> object:
        """What the provider itself adds to a request that shapes the reply (None if nothing)."""
        ...

    def list_price(self, model: str) -> Price | None:
        """The provider's published price for the model, if known (the sim is free)."""
        ...

    def key_hint(self, model: str, endpoint: Endpoint | None) -> str:
        """What to check when the provider refuses the key (the variable to look at)."""
        ...

    def secrets(self, model: str, endpoint: Endpoint | None) -> list[str]:
        """The key values a call may carry, so that they are redacted from every error text."""
        ...

    async def complete(self, request: ModelRequest) -> ProviderReply:
        """One attempt. Raises the provider's exception on failure (the client classifies it)."""
        ...


class ProviderDefaults:
    """The answers of a provider that only answers: serves every model, remotely, uncached, with
    nothing to check, no known capabilities or price, and no secrets. A provider (or a test's
    scripted one) subclasses it and overrides what differs, instead of restating the protocol."""

    name = "provider"

    def serves(self, model: str, endpoint: Endpoint | None) -> bool:
        return True

    def in_process(self, model: str, endpoint: Endpoint | None) -> bool:
        return False

    def caches_by_default(self, model: str, endpoint: Endpoint | None) -> bool:
        return False

    def check_ready(self, model: str, endpoint: Endpoint | None) -> None:
        return None

    def supports(self, model: str, capability: str) -> bool | None:
        return None

    def cache_salt(self, model: str) -> object:
        return None

    def list_price(self, model: str) -> Price | None:
        return None

    def key_hint(self, model: str, endpoint: Endpoint | None) -> str:
        return "check the provider's key"

    def secrets(self, model: str, endpoint: Endpoint | None) -> list[str]:
        return []

    async def complete(self, request: ModelRequest) -> ProviderReply:
        raise NotImplementedError

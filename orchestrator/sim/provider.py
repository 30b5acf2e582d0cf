"""The sim as a provider behind `orchestrator.provider.Provider`, like any other.

`sim/<name>` models are answered in process (the fast path: a pure function of the request),
through litellm's custom-provider hook when `sim_in_process` is off, or over HTTP from a
`sociolab serve-sim` server when the model has an `api_base`. Whatever the path, the request's
structured `metadata` and the run's `SimSettings` reach the sim (orchestrator/sim/envelope.py says
how); nothing is parsed back out of prompt text that a scenario could reword. Failures of the
litellm paths propagate as litellm raised them: the client classifies and retries them.
"""

from __future__ import annotations

import os
from typing import Any

from sociolab.base.errors import UserError
from ..provider import Endpoint, ModelRequest, Price, ProviderReply
from .agent import SimReply, sim_reply
from .envelope import HEADER, header_value, litellm_metadata
from .naming import is_sim
from .settings import SimSettings

LOCAL_KEY = "sk-local"  # what serve-sim gets when no key variable is named (it ignores it unless started with one)
FREE = Price(input_per_mtok=0.0, output_per_mtok=0.0)
# The sim ignores response_format (judges ask in the prompt). It takes `steering`: a persona-safety
# request says its method in its metadata, which is what the sim agent reads (orchestrator/sim/persona.py).
CAPABILITIES = frozenset({"tools", "seed", "steering"})


class SimProvider:
    name = "sim"

    def __init__(self, settings: SimSettings | None = None, *, via_litellm: bool = False):
        self.settings = settings or SimSettings()
        self.via_litellm = via_litellm

    # ---- what the client asks before calling ---------------------------------------------
    def serves(self, model: str, endpoint: Endpoint | None) -> bool:
        return is_sim(model)

    def in_process(self, model: str, endpoint: Endpoint | None) -> bool:
        return not self.via_litellm and not _remote(endpoint)

    def caches_by_default(self, model: str, endpoint: Endpoint | None) -> bool:
        """Never by default: a sim reply is free and a pure function of the request, so caching
        it (behind litellm or a serve-sim) only costs time; `client: {cache: true}` turns it on."""
        return False

    def check_ready(self, model: str, endpoint: Endpoint | None) -> None:
        """A serve-sim started with a key needs it: the variable named must be set."""
        if endpoint and endpoint.api_key_env and not os.environ.get(endpoint.api_key_env):
            raise UserError(f"model {model} takes its key from ${endpoint.api_key_env}, which is not set: "
                            f"export {endpoint.api_key_env}=... (the key serve-sim was started with)")

    def supports(self, model: str, capability: str) -> bool:
        return capability in CAPABILITIES

    def list_price(self, model: str) -> Price | None:
        return FREE

    def key_hint(self, model: str, endpoint: Endpoint | None) -> str:
        if endpoint and endpoint.api_key_env:
            return f"check ${endpoint.api_key_env} (the key serve-sim was started with)"
        return "name the variable holding serve-sim's key with api_key_env"

    def cache_salt(self, model: str) -> dict[str, Any]:
        """The settings that shape this model's replies: a change must miss the cache."""
        return self.settings.for_model(model).model_dump(mode="json", exclude_defaults=True)

    def secrets(self, model: str, endpoint: Endpoint | None) -> list[str]:
        key = os.environ.get(endpoint.api_key_env) if endpoint and endpoint.api_key_env else None
        return [key] if key else []

    # ---- one attempt ---------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ProviderReply:
        api_base = _remote_base(request.endpoint)
        if api_base is not None:
            return await self._over_http(request, api_base)
        if self.via_litellm:
            return await self._through_litellm(request)
        p = request.params
        reply = sim_reply(request.model, request.messages, seed=request.seed,
                          temperature=p.get("temperature", 0.7), max_tokens=p.get("max_tokens"),
                          tools=p.get("tools"), metadata=request.metadata, settings=self.settings)
        return _from_sim(reply)

    async def _through_litellm(self, request: ModelRequest) -> ProviderReply:
        """litellm's custom-provider hook, in this process: the handler gets metadata and settings."""
        response = await _litellm().acompletion(
            model=request.model, messages=request.messages, **_call_params(request),
            metadata=litellm_metadata(request.metadata, self.settings))
        return _from_litellm(response)

    async def _over_http(self, request: ModelRequest, api_base: str) -> ProviderReply:
        """A serve-sim server at `api_base`, as an OpenAI-compatible host; metadata and settings in a header."""
        key_env = request.endpoint.api_key_env if request.endpoint else None
        key = os.environ.get(key_env, "") if key_env else LOCAL_KEY
        response = await _litellm().acompletion(
            model=f"openai/{request.model}", messages=request.messages, **_call_params(request),
            api_base=api_base, api_key=key,
            extra_headers={HEADER: header_value(request.model, request.metadata, self.settings)})
        return _from_litellm(response)


def _remote(endpoint: Endpoint | None) -> bool:
    return _remote_base(endpoint) is not None


def _remote_base(endpoint: Endpoint | None) -> str | None:
    """The serve-sim host's base URL when the model is reached over HTTP, else None."""
    return endpoint.api_base if endpoint is not None and endpoint.api_base else None


def _call_params(request: ModelRequest) -> dict[str, Any]:
    """The request's parameters for litellm: no retries there (the client retries), its timeout."""
    params = {k: v for k, v in request.params.items() if v is not None}
    if request.seed is not None:
        params["seed"] = request.seed
    return {**params, "max_retries": 0, "timeout": request.timeout_s}


def _from_sim(reply: SimReply) -> ProviderReply:
    return ProviderReply(text=reply.text, tool_calls=[dict(c) for c in reply.tool_calls] or None,
                         prompt_tokens=reply.prompt_tokens, completion_tokens=reply.completion_tokens,
                         cost_usd=0.0, sim_latency_s=reply.latency_s)


def _from_litellm(response: Any) -> ProviderReply:
    """litellm's response read as for any provider, then what only the sim adds: it is free, and
    it says how long a real model would have taken."""
    from ..litellm_provider import reply_from

    reply = reply_from(response, [], price_known=False)
    reply.cost_usd = 0.0
    reply.sim_latency_s = (getattr(response, "_hidden_params", None) or {}).get("sim_latency_s")
    return reply


def _litellm():
    from ..litellm_boot import get_litellm

    return get_litellm()

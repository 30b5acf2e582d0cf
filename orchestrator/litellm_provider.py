"""Every real provider family through `litellm.acompletion`, adapted per model, never silently.

litellm translates one OpenAI-style request into each family's wire format (Anthropic Messages,
Gemini generateContent, OpenAI-compatible hosts). What it cannot translate, this module adapts
and records in `ProviderReply.dropped_params`, so that a seed a provider ignores or a temperature
a reasoning model refuses is visible in the store:

- parameters litellm's capability data says the provider lacks are not sent;
- a parameter litellm or the provider itself rejects (`UnsupportedParamsError`, or a 400 naming an
  unsupported parameter) is dropped, or `max_tokens` renamed `max_completion_tokens`, and the call
  is made again once; what was learnt is kept for the model's later calls.

Reasoning text (a `reasoning_content` field, or a leading `<think>...</think>` block) is split
from the reply so that peers never see it. Cost is litellm's price when it knows the model, the
run's own `prices:` when given, and None (unknown) otherwise, never 0 for "don't know".
"""

from __future__ import annotations

import asyncio
import os
import re
import socket
from typing import Any
from urllib.parse import urlparse

from .errors import HostUnreachable, ProviderError, UserError
from .provider import Endpoint, ModelRequest, Price, ProviderReply
from .retry import looks_like_connection_failure

# Parameters that may be dropped (or renamed) when a model does not take them: the call still
# means the same thing without them. Tools or `n` are never dropped: the reply would not be the
# one asked for, so their refusal fails the call instead.
ADAPTABLE = frozenset({"temperature", "max_tokens", "seed", "top_p", "response_format", "stop",
                       "parallel_tool_calls"})
MAX_ADAPTATIONS = 3

_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
_UNSUPPORTED_LIST = re.compile(r"does not support parameters:\s*\[([^\]]*)\]")
_PARAM_NAMED = [re.compile(p) for p in (
    r"n'?t support ([a-z_]+)=",                        # litellm: "O-series models don't support temperature=0.8"
    r"[Uu]nsupported (?:parameter|value)[:\s]+'([a-z_]+)'",
    r"'([a-z_]+)' is not supported with this model",
    r"\b([a-z_]+): Extra inputs are not permitted",
    r'"param":\s*"([a-z_]+)"',
    r"[Uu]nrecognized request argument supplied: ([a-z_]+)",
)]
_UNSUPPORTED_HINT = re.compile(r"unsupported|not supported|n'?t support|not permitted|unrecognized", re.I)

PLACEHOLDER_KEY = "sk-no-key-given"  # local OpenAI-compatible servers want some bearer token

# Where each family's calls go when no api_base is given, to name the host that cannot be reached.
DEFAULT_HOSTS = {"openai": "api.openai.com:443", "anthropic": "api.anthropic.com:443",
                 "gemini": "generativelanguage.googleapis.com:443", "groq": "api.groq.com:443",
                 "together_ai": "api.together.xyz:443", "openrouter": "openrouter.ai:443",
                 "deepseek": "api.deepseek.com:443", "mistral": "api.mistral.ai:443"}
PROBE_TIMEOUT_S = 2.0


class LitellmProvider:
    """The catch-all provider: any model id litellm knows how to route."""

    name = "litellm"

    def __init__(self) -> None:
        self._learned: dict[tuple[str, str | None], dict[str, str | None]] = {}
        self._supported: dict[str, set[str] | None] = {}   # litellm's lookups cost more than a local call
        self._prices: dict[str, Price | None] = {}

    # ---- what the client asks before calling ---------------------------------------------
    def serves(self, model: str, endpoint: Endpoint | None) -> bool:
        return True

    def in_process(self, model: str, endpoint: Endpoint | None) -> bool:
        return False

    def caches_by_default(self, model: str, endpoint: Endpoint | None) -> bool:
        return False  # real replies are data: reuse them only when the user opts in

    def check_ready(self, model: str, endpoint: Endpoint | None) -> None:
        """The provider prefix is known and the key is there, before any run starts."""
        litellm = _litellm()
        try:
            litellm.get_llm_provider(model)
        except Exception:
            raise UserError(f"unknown model '{model}': prefix it with its provider (e.g. openai/, groq/, "
                            "anthropic/, gemini/), give it an api_base, or run with --sim") from None
        if endpoint and endpoint.api_key_env:
            if not os.environ.get(endpoint.api_key_env):
                raise UserError(f"model {model} takes its key from ${endpoint.api_key_env}, which is not set: "
                                f"export {endpoint.api_key_env}=... or run offline with --sim")
            return
        if endpoint and endpoint.api_base:
            return  # a self-hosted server: no key unless api_key_env names one
        missing = litellm.validate_environment(model).get("missing_keys") or []
        if missing:
            raise UserError(f"model {model} needs {', '.join(missing)}: export {missing[0]}=... "
                            "(or name another variable with api_key_env), or run offline with --sim")

    def secrets(self, model: str, endpoint: Endpoint | None) -> list[str]:
        """Every key this call may carry: the named variable, or the provider's usual ones."""
        if endpoint and endpoint.api_key_env:
            names = [endpoint.api_key_env]
        else:
            names = [n for n in os.environ if n.endswith(("_API_KEY", "_TOKEN"))]
        return [v for v in (os.environ.get(n) for n in names) if v and len(v) >= 6]

    def family(self, model: str) -> str:
        """litellm's provider name for the model, e.g. 'anthropic', 'gemini', 'groq', 'openai'."""
        return _litellm().get_llm_provider(model)[1]

    def supported_params(self, model: str) -> set[str] | None:
        """litellm's capability data for the model's provider; None if it has none."""
        if model not in self._supported:
            self._supported[model] = self._lookup_supported(model)
        return self._supported[model]

    def _lookup_supported(self, model: str) -> set[str] | None:
        litellm = _litellm()
        try:
            base, family, _, _ = litellm.get_llm_provider(model)
            params = litellm.get_supported_openai_params(model=base, custom_llm_provider=family)
        except Exception:
            return None
        return set(params) if params else None

    def supports(self, model: str, capability: str) -> bool:
        """From litellm's capability data; a model it does not know supports what its family does."""
        litellm = _litellm()
        checks = {"response_schema": litellm.supports_response_schema,
                  "tools": litellm.supports_function_calling}
        if capability in checks:
            try:
                return bool(checks[capability](model=model))
            except Exception:  # not in litellm's model map: fall back on the family's parameters
                pass
        key = {"response_schema": "response_format"}.get(capability, capability)
        return key in (self.supported_params(model) or set())

    def list_price(self, model: str) -> Price | None:
        """litellm's bundled price list (read offline); None for a model it does not list."""
        if model not in self._prices:
            self._prices[model] = self._lookup_price(model)
        return self._prices[model]

    def _lookup_price(self, model: str) -> Price | None:
        try:
            info = _litellm().get_model_info(model)
        except Exception:  # litellm raises for any model missing from its map
            return None
        per_in, per_out = info.get("input_cost_per_token"), info.get("output_cost_per_token")
        if per_in is None or per_out is None:
            return None
        return Price(input_per_mtok=per_in * 1e6, output_per_mtok=per_out * 1e6)

    # ---- one attempt ---------------------------------------------------------------------
    async def complete(self, request: ModelRequest) -> ProviderReply:
        litellm = _litellm()
        endpoint = request.endpoint
        params, dropped = self.adapt(request)
        kwargs: dict[str, Any] = dict(max_retries=0, timeout=request.timeout_s)
        if endpoint and endpoint.api_base:
            kwargs["api_base"] = endpoint.api_base
            kwargs["api_key"] = os.environ.get(endpoint.api_key_env, "") if endpoint.api_key_env else PLACEHOLDER_KEY
        elif endpoint and endpoint.api_key_env:
            kwargs["api_key"] = os.environ.get(endpoint.api_key_env, "")
        for _ in range(MAX_ADAPTATIONS):
            try:
                response = await litellm.acompletion(model=request.model, messages=request.messages,
                                                     **params, **kwargs)
                break
            except Exception as exc:
                await self.raise_if_unreachable(request, exc)
                fix = unsupported_param(exc, params)
                if fix is None:
                    raise
                self.learn(request, fix)
                params, dropped = self.adapt(request)
        else:
            raise UserError(f"model {request.model}: the provider kept refusing parameters "
                            f"({', '.join(dropped)}); set them in the scenario file")
        return reply_from(response, request.model, dropped, price_known=self.list_price(request.model) is not None)

    async def raise_if_unreachable(self, request: ModelRequest, exc: Exception) -> None:
        """After a connection failure, one quick look at the host: if its name does not resolve
        or it refuses connections, say so now instead of retrying for a minute."""
        if not looks_like_connection_failure(exc):
            return
        host = self.host_of(request)
        if host is not None and not await asyncio.to_thread(reachable, host):
            raise HostUnreachable(host, type(exc).__name__) from exc

    def host_of(self, request: ModelRequest) -> str | None:
        """'host:port' the call went to: the api_base's, else the family's usual host."""
        if request.endpoint and request.endpoint.api_base:
            url = urlparse(request.endpoint.api_base)
            if url.hostname:
                return f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}"
            return None
        try:
            return DEFAULT_HOSTS.get(self.family(request.model))
        except Exception:
            return None

    def adapt(self, request: ModelRequest) -> tuple[dict[str, Any], list[str]]:
        """The request's params minus what this model does not take; and the names dropped."""
        params = {k: v for k, v in request.params.items() if v is not None}
        if request.seed is not None:
            params["seed"] = request.seed
        supported = self.supported_params(request.model)
        learned = self._learned.get(_key(request), {})
        dropped: list[str] = []
        for name in list(params):
            if name in learned:
                renamed = learned[name]
                value = params.pop(name)
                if renamed:
                    params[renamed] = value
                    dropped.append(f"{name}->{renamed}")
                else:
                    dropped.append(name)
            elif supported is not None and name in ADAPTABLE and name not in supported:
                params.pop(name)
                dropped.append(name)
        return params, dropped

    def learn(self, request: ModelRequest, fix: tuple[str, str | None]) -> None:
        name, renamed = fix
        self._learned.setdefault(_key(request), {})[name] = renamed


def unsupported_param(exc: BaseException, params: dict[str, Any]) -> tuple[str, str | None] | None:
    """(param to drop, name to send it as instead or None) if `exc` refuses one of `params`."""
    kind = type(exc).__name__
    if kind not in ("UnsupportedParamsError", "BadRequestError"):
        return None
    text = str(exc)
    names: list[str] = []
    listed = _UNSUPPORTED_LIST.search(text)
    if listed:
        names = [n.strip(" '\"") for n in listed.group(1).split(",")]
    elif _UNSUPPORTED_HINT.search(text):
        names = [m.group(1) for pattern in _PARAM_NAMED for m in pattern.finditer(text)]
    for name in names:
        if name in params and name in ADAPTABLE:
            if name == "max_tokens" and "max_completion_tokens" in text and "max_completion_tokens" not in params:
                return name, "max_completion_tokens"
            return name, None
    return None


def reply_from(response: Any, model: str, dropped: list[str], *, price_known: bool) -> ProviderReply:
    """litellm's response as a ProviderReply: text and reasoning apart, tokens, cost or None."""
    message = response.choices[0].message
    text = message.content or ""
    reasoning = getattr(message, "reasoning_content", None) or getattr(message, "reasoning", None) or None
    think = _THINK.match(text)  # hosts whose reasoning litellm leaves inline (e.g. groq)
    if think:
        reasoning = ((reasoning + "\n") if reasoning else "") + think.group(1).strip()
        text = text[think.end():]
    if reasoning:
        text = text.lstrip()  # the blank lines a removed <think> block leaves behind
    tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
                  for c in (getattr(message, "tool_calls", None) or [])] or None
    if not text and not tool_calls:
        raise ProviderError("the provider returned neither text nor tool calls", transient=True)
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", {}) or {}
    cost = hidden.get("response_cost")
    return ProviderReply(text=text, tool_calls=tool_calls, reasoning=reasoning,
                         prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                         completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                         cost_usd=float(cost) if cost is not None and price_known else None,
                         dropped_params=dropped)


def reachable(host_port: str) -> bool:
    """Whether 'host:port' resolves and accepts a TCP connection within a couple of seconds."""
    host, _, port = host_port.rpartition(":")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=PROBE_TIMEOUT_S):
            return True
    except (OSError, ValueError):
        return False


def _key(request: ModelRequest) -> tuple[str, str | None]:
    return request.model, request.endpoint.api_base if request.endpoint else None


def _litellm():
    from .litellm_boot import get_litellm

    return get_litellm()

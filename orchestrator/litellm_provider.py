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

from sociolab.base.errors import HostUnreachable, ProviderError, UserError
from .provider import Endpoint, ModelRequest, Price, ProviderReply
from .retry import looks_like_connection_failure

# Parameters that may be dropped (or renamed) when a model does not take them: the call still
# means the same thing without them. Tools or `n` are never dropped: the reply would not be the
# one asked for, so their refusal fails the call instead.
ADAPTABLE = frozenset({"temperature", "max_tokens", "seed", "top_p", "response_format", "stop",
                       "parallel_tool_calls"})
MAX_ADAPTATIONS = len(ADAPTABLE)  # each parameter at most once

_THINK = re.compile(r"^\s*<think>(.*?)</think>\s*", re.S)
_UNCLOSED_THINK = re.compile(r"^\s*<think>(?!.*</think>)(.*)$", re.S)
_UNSUPPORTED_LIST = re.compile(r"does not support parameters:\s*\[([^\]]*)\]")
_PARAM_NAMED = [re.compile(p) for p in (
    r"n'?t support ([a-z_]+)=",                        # litellm: "O-series models don't support temperature=0.8"
    r"[Uu]nsupported (?:parameter|value)[:\s]+'([a-z_]+)'",
    r"'([a-z_]+)' is not supported with this model",
    r"\b([a-z_]+): Extra inputs are not permitted",
    r'"param":\s*"([a-z_]+)"',
    r"[Uu]nrecognized request argument supplied: ([a-z_]+)",
    r'Unknown name \\?"([A-Za-z_]+)\\?"',                # Gemini: Unknown name "topP" at 'generation_config'
)]
_UNSUPPORTED_HINT = re.compile(r"unsupported|not supported|n'?t support|not permitted|unrecognized|unknown name",
                               re.I)
_CAMEL = re.compile(r"(?<!^)(?=[A-Z])")

PLACEHOLDER_KEY = "sk-no-key-given"  # local OpenAI-compatible servers want some bearer token

# Where each family's calls go when no api_base is given, to name the host that cannot be reached.
DEFAULT_HOSTS = {"openai": "api.openai.com:443", "anthropic": "api.anthropic.com:443",
                 "gemini": "generativelanguage.googleapis.com:443", "groq": "api.groq.com:443",
                 "together_ai": "api.together.xyz:443", "openrouter": "openrouter.ai:443",
                 "deepseek": "api.deepseek.com:443", "mistral": "api.mistral.ai:443"}
PROBE_TIMEOUT_S = 2.0
PROXY_VARIABLES = ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy")
BASE_URL_VARIABLES = {"openai": ("OPENAI_BASE_URL", "OPENAI_API_BASE"),
                      "anthropic": ("ANTHROPIC_BASE_URL", "ANTHROPIC_API_BASE"),
                      "gemini": ("GEMINI_API_BASE",), "openrouter": ("OPENROUTER_API_BASE",)}


class LitellmProvider:
    """The catch-all provider: any model id litellm knows how to route."""

    name = "litellm"

    def __init__(self) -> None:
        self._learned: dict[tuple[str, str | None], dict[str, str | None]] = {}
        self._supported: dict[str, set[str] | None] = {}   # litellm's lookups cost more than a local call
        self._prices: dict[str, Price | None] = {}
        self._keyed: dict[str, bool] = {}

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

    def cache_salt(self, model: str) -> None:
        return None  # the request itself is all that shapes a real provider's reply

    def secrets(self, model: str, endpoint: Endpoint | None) -> list[str]:
        """Every key this call may carry: the named variable, or the providers' usual ones."""
        if endpoint and endpoint.api_key_env:
            names = [endpoint.api_key_env]
        else:
            names = [n for n in os.environ if n.endswith("_API_KEY")]
        return [v for v in (os.environ.get(n) for n in names) if v and len(v) >= 6]

    def key_in_environment(self, model: str) -> bool:
        """Whether the provider's usual key variable (e.g. OPENAI_API_KEY) is set for this model
        (looked up once per model: the environment does not change during a run)."""
        if model not in self._keyed:
            try:
                self._keyed[model] = bool(_litellm().validate_environment(model).get("keys_in_environment"))
            except Exception:  # litellm knows no key variable for this provider
                self._keyed[model] = False
        return self._keyed[model]

    def key_hint(self, model: str, endpoint: Endpoint | None) -> str:
        """Which variable to check when the provider refuses the key."""
        if endpoint and endpoint.api_key_env:
            return f"check ${endpoint.api_key_env}"
        try:
            names = _litellm().validate_environment(model).get("missing_keys") or []
        except Exception:
            names = []
        usual = f" (litellm reads {', '.join(names)})" if names else ""
        return f"check the provider's key variable{usual}, or name another with api_key_env"

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

    def supports(self, model: str, capability: str) -> bool | None:
        """From litellm's model list; None for a model it does not list (its answer for those
        would be a guess). A seed is a family-wide parameter, so it is known for any model."""
        if capability == "steering":
            return False  # API models expose no hidden states (docs/persona_safety.md)
        if capability == "seed":
            return "seed" in (self.supported_params(model) or set())
        if self.list_price(model) is None and not self._listed(model):
            return None
        litellm = _litellm()
        check = {"response_schema": litellm.supports_response_schema,
                 "tools": litellm.supports_function_calling}[capability]
        try:
            return bool(check(model=model))
        except Exception:  # litellm raises for some entries it lists without capability data
            return None

    def _listed(self, model: str) -> bool:
        try:
            _litellm().get_model_info(model)
            return True
        except Exception:  # litellm raises for any model missing from its map
            return False

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
        if endpoint and endpoint.api_key_env:
            kwargs["api_key"] = os.environ.get(endpoint.api_key_env, "")
        elif endpoint and endpoint.api_base and not self.key_in_environment(request.model):
            kwargs["api_key"] = PLACEHOLDER_KEY  # a keyless local server still wants a bearer token
        for adaptation in range(MAX_ADAPTATIONS + 1):
            try:
                response = await litellm.acompletion(model=request.model, messages=request.messages,
                                                     **params, **kwargs)
                break
            except Exception as exc:
                await self.raise_if_unreachable(request, exc)
                fix = unsupported_param(exc, params)
                if fix is None or adaptation == MAX_ADAPTATIONS:
                    raise  # the provider's own refusal: recorded on the call, never retried
                self.learn(request, fix)
                params, dropped = self.adapt(request)
        return reply_from(response, dropped, price_known=self.list_price(request.model) is not None)

    async def raise_if_unreachable(self, request: ModelRequest, exc: Exception) -> None:
        """After a connection failure, one quick look at the host: if its name does not resolve
        or it refuses connections, say so now instead of retrying for a minute."""
        if not looks_like_connection_failure(exc) or any(os.environ.get(v) for v in PROXY_VARIABLES):
            return  # behind a proxy, a direct look at the host proves nothing
        host = self.host_of(request)
        if host is None:
            return
        problem = await asyncio.to_thread(unreachable_because, host)
        if problem is not None:
            raise HostUnreachable(host, problem) from exc

    def host_of(self, request: ModelRequest) -> str | None:
        """'host:port' the call went to: the api_base given, else the one litellm resolves (from
        the provider's base-URL variable or its default), else the family's usual host."""
        base = request.endpoint.api_base if request.endpoint and request.endpoint.api_base else None
        family = None
        if base is None:
            try:
                _, family, _, base = _litellm().get_llm_provider(request.model)
            except Exception:
                return None
            base = base or next((os.environ[v] for v in BASE_URL_VARIABLES.get(family, ()) if os.environ.get(v)), None)
        if base is None:
            return DEFAULT_HOSTS.get(family or "")
        url = urlparse(base)
        return f"{url.hostname}:{url.port or (443 if url.scheme == 'https' else 80)}" if url.hostname else None

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
        names = [_CAMEL.sub("_", m.group(1)).lower() for pattern in _PARAM_NAMED for m in pattern.finditer(text)]
        names = [{"max_output_tokens": "max_tokens"}.get(n, n) for n in names]
    for name in names:
        if name in params and name in ADAPTABLE:
            if name == "max_tokens" and "max_completion_tokens" in text and "max_completion_tokens" not in params:
                return name, "max_completion_tokens"
            return name, None
    return None


def reply_from(response: Any, dropped: list[str], *, price_known: bool) -> ProviderReply:
    """litellm's response as a ProviderReply: text and reasoning apart, tokens, cost or None.

    An empty reply is the model's answer (a reasoning model that spent its tokens thinking, a
    reply cut at max_tokens): it is stored as it is, never retried as if the provider had failed,
    since the same request would only pay for the same answer again.
    """
    if not getattr(response, "choices", None):
        raise ProviderError("the provider returned no choices", transient=True)
    message = response.choices[0].message
    text, reasoning = split_reasoning(message.content or "", getattr(message, "reasoning_content", None)
                                      or getattr(message, "reasoning", None) or None)
    tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
                  for c in (getattr(message, "tool_calls", None) or [])] or None
    usage = getattr(response, "usage", None)
    hidden = getattr(response, "_hidden_params", {}) or {}
    cost = hidden.get("response_cost")
    return ProviderReply(text=text, tool_calls=tool_calls, reasoning=reasoning,
                         prompt_tokens=getattr(usage, "prompt_tokens", 0) or 0,
                         completion_tokens=getattr(usage, "completion_tokens", 0) or 0,
                         cost_usd=float(cost) if cost is not None and price_known else None,
                         dropped_params=dropped)


def unreachable_because(host_port: str) -> str | None:
    """Why 'host:port' cannot be reached ('its name does not resolve', 'connection refused',
    ...), or None if it accepts a TCP connection within a couple of seconds."""
    host, _, port = host_port.rpartition(":")
    host = host.strip("[]")
    try:
        socket.getaddrinfo(host, int(port))
    except (socket.gaierror, UnicodeError, ValueError):
        return "its name does not resolve"
    try:
        with socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S):
            return None
    except ConnectionRefusedError:
        return "connection refused"
    except TimeoutError:
        return f"no answer within {PROBE_TIMEOUT_S:.0f} s"
    except OSError as exc:
        return exc.strerror or type(exc).__name__


def split_reasoning(text: str, reasoning: str | None) -> tuple[str, str | None]:
    """(what peers may see, the reasoning): a leading <think> block, closed or cut off by the
    token limit, is reasoning, as is a separate reasoning field."""
    think = _THINK.match(text) or _UNCLOSED_THINK.match(text)
    if think:
        reasoning = ((reasoning + "\n") if reasoning else "") + think.group(1).strip()
        text = text[think.end():]
    if reasoning:
        text = text.lstrip()  # the blank lines a removed <think> block leaves behind
    return text, reasoning


def _key(request: ModelRequest) -> tuple[str, str | None]:
    return request.model, request.endpoint.api_base if request.endpoint else None


def _litellm():
    from .litellm_boot import get_litellm

    return get_litellm()

"""One model client for every provider: throttled, retried, cached, and recorded.

Every call goes through `ModelClient.complete`, which never raises for a provider failure: it
returns a `Completion` that either holds the reply or says exactly why there is none (error class,
message, attempts). Layers, outermost first: cache -> retry (tenacity, transient errors only) ->
per-model in-flight cap and throttle -> the provider call (sim in-process, or `litellm.acompletion`
with `max_retries=0` so retries are not multiplied).
"""

from __future__ import annotations

import asyncio
import fnmatch
import os
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any, Awaitable, Callable

from asyncio_throttle import Throttler
from pydantic import BaseModel, ConfigDict, Field

from .cache import ResponseCache, cache_key
from .errors import ProviderError, UserError, first_line
from .retry import AttemptCounter, call_with_retries, is_provider_error, is_transient
from .sim.agent import sim_reply
from .sim.propensities import SIM_PREFIX

Sleep = Callable[[float], Awaitable[None]]


class ModelLimits(BaseModel):
    """Throttle (requests per period) and cap on calls in flight, for one model group."""

    model_config = ConfigDict(extra="forbid")

    requests_per_period: int = Field(0, ge=0, description="0 = no throttle")
    period_s: float = Field(60.0, gt=0)
    in_flight: int = Field(16, ge=1)


class ClientSettings(BaseModel):
    """The `client:` section of a scenario file."""

    model_config = ConfigDict(extra="forbid")

    timeout_s: float = Field(120.0, gt=0)
    max_attempts: int = Field(6, ge=1, le=50)
    initial_wait_s: float = Field(1.0, ge=0)
    max_wait_s: float = Field(60.0, ge=0)
    cache: bool | None = Field(None, description="response cache: None = on for sim models only")
    sim_in_process: bool = Field(True, description="call sim models directly instead of through litellm")
    limits: ModelLimits = Field(default_factory=ModelLimits)
    models: dict[str, ModelLimits] = Field(default_factory=dict,
                                           description="limits by model pattern, e.g. 'groq/*'")


@dataclass
class Completion:
    """The outcome of one logical call (all attempts)."""

    model: str
    text: str | None = None
    error: str | None = None
    error_type: str | None = None
    transient: bool = False
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    attempts: int = 0
    latency_ms: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(tzinfo=None))
    cached: bool = False
    sim_latency_s: float | None = None
    tool_calls: list[dict] | None = None  # [{"id", "name", "arguments" (JSON text)}], if the model asked

    @property
    def ok(self) -> bool:
        return self.error is None


@dataclass
class _Group:
    semaphore: asyncio.Semaphore
    throttler: Throttler | None


class ModelClient:
    """Shared by every run of a process, so limits hold across concurrent runs."""

    def __init__(self, settings: ClientSettings | None = None, cache: ResponseCache | None = None,
                 api_bases: dict[str, str] | None = None):
        self.settings = settings or ClientSettings()
        self.cache = cache if cache is not None else ResponseCache()
        self.api_bases = api_bases or {}
        self._groups: dict[str, _Group] = {}

    def uses_cache(self, model: str) -> bool:
        """Default: on for sim models behind litellm or HTTP, off (opt-in) for real providers.

        The in-process sim always bypasses it: it is a pure function of the very inputs the cache
        key hashes, and computes a reply faster than the key itself can be computed.
        """
        if self.is_in_process(model):
            return False
        if self.settings.cache is not None:
            return self.settings.cache
        return model.startswith(SIM_PREFIX)

    def is_in_process(self, model: str) -> bool:
        return model.startswith(SIM_PREFIX) and self.settings.sim_in_process and model not in self.api_bases

    async def complete(self, model: str, messages: list[dict], *, temperature: float | None = None,
                       max_tokens: int | None = None, seed: int | None = None,
                       extra: dict[str, Any] | None = None, fault: ProviderError | None = None,
                       sleep: Sleep = asyncio.sleep) -> Completion:
        """Call `model`; on failure after retries, return a Completion that says why."""
        params = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens)) if v is not None}
        params.update(extra or {})
        use_cache = self.uses_cache(model) and fault is None
        key = cache_key(model, messages, {**params, "api_base": self.api_bases.get(model)}, seed) if use_cache else ""
        if use_cache and (hit := self.cache.get(key)) is not None:
            return Completion(model=model, cached=True, **hit)
        started, t0 = Completion(model=model), time.perf_counter()
        attempts = AttemptCounter()
        try:
            result = await call_with_retries(
                lambda: self._attempt(model, messages, params, seed, fault),
                max_attempts=self.settings.max_attempts, initial_wait=self.settings.initial_wait_s,
                max_wait=self.settings.max_wait_s, sleep=sleep, counter=attempts)
        except Exception as exc:
            if not is_provider_error(exc):
                raise  # our own bug: never recorded as if the model had failed
            if type(exc).__name__ == "AuthenticationError":
                raise UserError(f"model {model}: the provider refused the API key ({first_line(exc)}); "
                                f"check the key variable for this provider") from None
            started.error, started.error_type = first_line(exc), type(exc).__name__
            started.transient = is_transient(exc)
        else:
            for name, value in result.items():
                setattr(started, name, value)
            if use_cache:
                self.cache.put(key, model, result)
        started.attempts = attempts.n
        started.latency_ms = (time.perf_counter() - t0) * 1000
        return started

    async def _attempt(self, model: str, messages: list[dict], params: dict[str, Any], seed: int | None,
                       fault: ProviderError | None) -> dict[str, Any]:
        group = self._group(model)
        async with group.semaphore:
            if group.throttler is not None:
                async with group.throttler:
                    return await self._call_provider(model, messages, params, seed, fault)
            return await self._call_provider(model, messages, params, seed, fault)

    async def _call_provider(self, model: str, messages: list[dict], params: dict[str, Any],
                             seed: int | None, fault: ProviderError | None) -> dict[str, Any]:
        if fault is not None:
            raise fault
        if self.is_in_process(model):
            reply = sim_reply(model, messages, seed=seed, temperature=params.get("temperature", 0.7),
                              max_tokens=params.get("max_tokens"), tools=params.get("tools"))
            return {"text": reply.text, "prompt_tokens": reply.prompt_tokens,
                    "completion_tokens": reply.completion_tokens, "cost_usd": 0.0,
                    "sim_latency_s": reply.latency_s,
                    "tool_calls": [dict(c) for c in reply.tool_calls] or None}
        return await self._call_litellm(model, messages, params, seed)

    async def _call_litellm(self, model: str, messages: list[dict], params: dict[str, Any],
                            seed: int | None) -> dict[str, Any]:
        from .litellm_boot import get_litellm

        litellm = get_litellm()
        kwargs: dict[str, Any] = dict(params, max_retries=0, timeout=self.settings.timeout_s)
        if seed is not None:
            kwargs["seed"] = seed
        if model in self.api_bases:
            kwargs["api_base"] = self.api_bases[model]
            kwargs.setdefault("api_key", os.environ.get("SOCIOLAB_LOCAL_API_KEY", "sk-local"))
        response = await litellm.acompletion(model=model, messages=messages, **kwargs)
        message = response.choices[0].message
        text = message.content
        tool_calls = [{"id": c.id, "name": c.function.name, "arguments": c.function.arguments or "{}"}
                      for c in (getattr(message, "tool_calls", None) or [])] or None
        if text is None and not tool_calls:
            raise ProviderError("the provider returned neither text nor tool calls", transient=True)
        usage = getattr(response, "usage", None)
        hidden = getattr(response, "_hidden_params", {}) or {}
        return {"text": text or "", "tool_calls": tool_calls,
                "prompt_tokens": getattr(usage, "prompt_tokens", 0) or 0,
                "completion_tokens": getattr(usage, "completion_tokens", 0) or 0,
                "cost_usd": float(hidden.get("response_cost") or 0.0),
                "sim_latency_s": hidden.get("sim_latency_s")}

    def _group(self, model: str) -> _Group:
        """Models matching one `models:` pattern share a throttle and an in-flight cap (a
        provider's rate limit covers the whole account); other models get their own."""
        key, limits = self.limits_for(model)
        group = self._groups.get(key)
        if group is None:
            throttler = (Throttler(rate_limit=limits.requests_per_period, period=limits.period_s)
                         if limits.requests_per_period else None)
            group = self._groups[key] = _Group(asyncio.Semaphore(limits.in_flight), throttler)
        return group

    def limits_for(self, model: str) -> tuple[str, ModelLimits]:
        """(group key, limits): the first matching pattern, else the model on its own."""
        for pattern, limits in self.settings.models.items():
            if fnmatch.fnmatchcase(model, pattern):
                return f"pattern:{pattern}", limits
        return f"model:{model}", self.settings.limits



def check_models_ready(models: list[str], api_bases: dict[str, str]) -> None:
    """Before any run starts: every real model has a known provider and its API key is set."""
    real = sorted({m for m in models if not m.startswith(SIM_PREFIX) and m not in api_bases})
    if not real:
        return
    from .litellm_boot import get_litellm

    litellm = get_litellm()
    for model in real:
        try:
            litellm.get_llm_provider(model)
        except Exception:
            raise UserError(f"unknown model '{model}': prefix it with its provider (e.g. openai/, groq/, "
                            "anthropic/), give it an api_base, or run with --sim") from None
        env = litellm.validate_environment(model)
        missing = env.get("missing_keys") or []
        if missing:
            raise UserError(f"model {model} needs {', '.join(missing)}: export {missing[0]}=... "
                            "or run offline with --sim")

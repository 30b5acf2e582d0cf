"""One model client for every provider: throttled, retried, cached, budgeted and recorded.

Every call goes through `ModelClient.complete`, which never raises for a model's failure: it
returns a `Completion` that either holds the reply or says exactly why there is none (error class,
message, attempts). Layers, outermost first: budget -> cache -> retry (tenacity, transient errors
only) -> per-model in-flight cap and throttle -> the provider that serves the model (the sim, or
litellm for every real family; see orchestrator/provider.py).

A caller whose prompt depends on when the call goes out (a conversation: what peers said so far)
passes `messages` as a function: it is called once the call has passed the throttle and the
in-flight cap, so a shared rate limit delays a call without changing what it sees.

Three failures are not a model's answer and stop the work instead, with one line for the user:
a refused key, a host that cannot be reached, and a spent budget. So does a request for
activation steering (`steering=`) to a model whose provider does not declare it: a steered
condition must never run unsteered in silence.
"""

from __future__ import annotations

import asyncio
import fnmatch
import logging
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from contextlib import asynccontextmanager
from typing import Any, AsyncContextManager, AsyncIterator, Awaitable, Callable, Protocol, Sequence
from urllib.parse import urlparse

from aiolimiter import AsyncLimiter
from pydantic import BaseModel, ConfigDict, Field

from .cache import ResponseCache, cache_key
from sociolab.base.errors import BudgetExhausted, HostUnreachable, ProviderError, UserError, first_line
from .provider import STEERING, Endpoint, ModelRequest, Price, Provider, ProviderReply, Steering
from .redact import redact, register_secrets
from .retry import AttemptCounter, call_with_retries, error_name, is_provider_error, is_transient

log = logging.getLogger(__name__)

Sleep = Callable[[float], Awaitable[None]]
Messages = list[dict] | Callable[[], list[dict]]
MAX_TOKENS_COUNT = 2**31 - 1  # the token columns are 32-bit; a provider may report anything
RetryListener = Callable[[str, str, float, BaseException], None]  # (model, from where, wait s, error)


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
    cache: bool | None = Field(None, description="response cache: None = the provider's default "
                                                 "(off for the sim and for real providers)")
    sim_in_process: bool = Field(True, description="call sim models directly instead of through litellm")
    processes: int = Field(1, ge=1, le=64, description=(
        "worker processes making the calls to real providers (1 = this process). One process "
        "saturates a core near 200 requests/s in litellm; rate limits and in-flight caps stay in "
        "this process, so they hold across all workers"))
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
    injected: bool = False            # a crash the scenario injected, not the provider's doing
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float | None = None     # None = price unknown
    attempts: int = 0
    latency_ms: float = 0.0
    started_at: datetime = field(default_factory=lambda: datetime.now(timezone.utc).replace(tzinfo=None))
    cached: bool = False
    sim_latency_s: float | None = None
    tool_calls: list[dict] | None = None  # [{"id", "name", "arguments" (JSON text)}], if the model asked
    reasoning: str | None = None
    dropped_params: list[str] = field(default_factory=list)
    provider: str | None = None
    steering_applied: dict[str, Any] | None = None  # what a steering backend says it applied

    @property
    def ok(self) -> bool:
        return self.error is None

    @property
    def transcript_text(self) -> str:
        """What a transcript shows for this call: the reply's text, or a failed call's error."""
        if self.error is not None:
            return self.error
        if self.text is None:
            raise ValueError(f"a successful call to {self.model} has no reply text")
        return self.text

    @property
    def provider_failure(self) -> bool:
        """Failed at the provider after retries (not an injected crash): the run is incomplete."""
        return not self.ok and not self.injected


class Budget:
    """`--max-cost`: no call starts once this much has been spent (calls in flight finish)."""

    def __init__(self, max_usd: float, spent_usd: float = 0.0):
        self.max_usd = max_usd
        self.spent_usd = spent_usd

    def check(self, free: bool) -> None:
        """Refuse to start a call once the budget is spent; a free call (the sim) always starts."""
        if not free and self.spent_usd >= self.max_usd:
            raise BudgetExhausted(f"budget of ${self.max_usd:.4f} reached (spent ${self.spent_usd:.4f}); "
                                  f"rerun with a higher --max-cost to go on")

    async def admit(self, free: bool) -> None:
        """`check` before a call starts; a budget shared with other processes first learns what
        they spent (sociolab/ray_executor.py ClusterBudget)."""
        self.check(free)

    def spend(self, cost: float | None) -> None:
        self.spent_usd += cost or 0.0


class Group(Protocol):
    """One model group's in-flight cap and pace. A call is `admitted` (holds a slot, and has
    waited for its pace) for all its attempts, and waits for the pace again before each retry:
    here in this process (`LocalGroup`), or across a cluster (sociolab/ray_executor.py), which is
    why it is a seam rather than a semaphore."""

    def admitted(self) -> AsyncContextManager[None]: ...

    async def pace(self) -> None: ...


GroupFactory = Callable[[str, "ModelLimits"], Group]  # (group key, its limits) -> the group


@dataclass
class LocalGroup:
    """A group whose cap and pace hold across the runs of this process."""

    semaphore: asyncio.Semaphore
    pacer: AsyncLimiter | None

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        async with self.semaphore:
            await self.pace()
            yield

    async def pace(self) -> None:
        """Wait for this call's place in the group's rate limit."""
        if self.pacer is not None:
            await self.pacer.acquire()


def local_group(key: str, limits: "ModelLimits") -> LocalGroup:
    return LocalGroup(asyncio.Semaphore(limits.in_flight), pacer_for(limits))


@dataclass
class Admitted:
    """A call that passed its group's in-flight cap and throttle before its messages were built."""

    group: Group
    first_attempt: bool = True


def pacer_for(limits: ModelLimits) -> AsyncLimiter | None:
    """`requests_per_period` as a steady pace: one request every period / N seconds, never N at
    once and then a silent rest of the period, which is what a sliding window sends and what a
    provider's per-second limits punish. The leaky bucket holds N/50 requests (at least one), so
    the few milliseconds a wake-up takes are not lost from the pace, and drains N - N/50 per
    period, so no window of one period ever sees more than N. It wakes its waiters by timer, in
    order, so many calls waiting cost nothing while they wait."""
    n = limits.requests_per_period
    if not n:
        return None
    holds = max(1, n // 50)
    drains = n - holds if holds > 1 else n
    return AsyncLimiter(holds, holds * limits.period_s / drains)


def built_metadata(metadata: dict[str, Any] | Callable[[], dict[str, Any]] | None) -> dict[str, Any] | None:
    return metadata() if callable(metadata) else metadata


def plausible_tokens(count: Any, model: str, which: str) -> int:
    """A provider's token count as stored: a negative, non-integer or absurd count (past the
    32-bit column) is logged and stored as 0 tokens, never allowed to fail the run's write."""
    if isinstance(count, int) and not isinstance(count, bool) and 0 <= count <= MAX_TOKENS_COUNT:
        return count
    log.warning("%s: the provider reported %r %s tokens; stored as 0", model, count, which)
    return 0


class ModelClient:
    """Shared by every run of a process, so limits and the budget hold across concurrent runs."""

    def __init__(self, settings: ClientSettings | None = None, cache: ResponseCache | None = None, *,
                 endpoints: dict[str, Endpoint] | None = None, providers: Sequence[Provider] | None = None,
                 prices: dict[str, Price] | None = None, budget: Budget | None = None,
                 on_retry: RetryListener | None = None, groups: GroupFactory = local_group):
        self.settings = settings or ClientSettings()
        self.cache = cache if cache is not None else ResponseCache()
        self.endpoints = endpoints or {}
        self.providers = list(providers) if providers is not None else default_providers(self.settings)
        self.prices = prices or {}
        self.budget = budget
        self.on_retry = on_retry
        self.make_group = groups
        self._groups: dict[str, Group] = {}

    async def aclose(self) -> None:
        """Release what providers hold between calls (worker processes); calls may follow,
        which start them again."""
        for provider in self.providers:
            close = getattr(provider, "aclose", None)
            if close is not None:
                await close()

    # ---- which provider, which settings ----------------------------------------------------
    def provider_for(self, model: str) -> Provider:
        endpoint = self.endpoints.get(model)
        for provider in self.providers:
            if provider.serves(model, endpoint):
                return provider
        raise UserError(f"no provider serves model '{model}'")

    def is_in_process(self, model: str) -> bool:
        return self.provider_for(model).in_process(model, self.endpoints.get(model))

    def uses_cache(self, model: str) -> bool:
        """Never for in-process replies (a pure function of the very inputs the key hashes, and
        cheaper than the key); otherwise as the user says, else the provider's default."""
        provider, endpoint = self.provider_for(model), self.endpoints.get(model)
        if provider.in_process(model, endpoint):
            return False
        if self.settings.cache is not None:
            return self.settings.cache
        return provider.caches_by_default(model, endpoint)

    def supports(self, model: str, capability: str) -> bool | None:
        """Whether the model takes `capability` ('response_schema', 'tools' or 'seed'); None when
        its provider's capability data does not know the model."""
        return self.provider_for(model).supports(model, capability)

    def sim_settings(self) -> Any:
        """The in-process sim's settings (`SimSettings`), or None when no sim provider is configured:
        for a kind whose sim mode draws the planted propensities itself (scenarios/population.py)."""
        from .sim.settings import SimSettings

        for provider in self.providers:
            settings = getattr(provider, "settings", None)
            if isinstance(settings, SimSettings):
                return settings
        return None

    def check_steerable(self, model: str) -> None:
        """UserError naming the model unless its provider says it honours `ModelRequest.steering`
        (API models expose no hidden states; docs/persona_safety.md says how a backend plugs in)."""
        provider = self.provider_for(model)
        if provider.supports(model, STEERING) is not True:
            raise UserError(f"model {model} cannot be steered: its provider ({provider.name}) does not support "
                            "activation steering; use method 'prompt' for it, or serve it with a steering "
                            "backend (docs/persona_safety.md)")

    def price_for(self, model: str) -> Price | None:
        """The run's own price for a model: exact name first, then the first matching pattern."""
        if model in self.prices:
            return self.prices[model]
        return next((p for pattern, p in self.prices.items() if fnmatch.fnmatchcase(model, pattern)), None)

    def price_or_list_price(self, model: str) -> Price | None:
        """The run's price for the model, else its provider's list price, else None (unknown)."""
        own = self.price_for(model)
        return own if own is not None else self.provider_for(model).list_price(model)

    def is_free(self, model: str) -> bool:
        price = self.price_or_list_price(model)
        return price is not None and price.input_per_mtok == 0 and price.output_per_mtok == 0

    def unpriced(self, models: list[str]) -> list[str]:
        """The models whose cost would be unknown."""
        return [m for m in sorted(set(models)) if self.price_or_list_price(m) is None]

    def check_ready(self, models: list[str]) -> None:
        """Before any run starts: every model has a provider, a known prefix and its key."""
        for model in sorted(set(models)):
            provider, endpoint = self.provider_for(model), self.endpoints.get(model)
            provider.check_ready(model, endpoint)
            register_secrets(provider.secrets(model, endpoint))

    # ---- one logical call --------------------------------------------------------------------
    async def complete(self, model: str, messages: Messages, *, temperature: float | None = None,
                       max_tokens: int | None = None, seed: int | None = None,
                       extra: dict[str, Any] | None = None,
                       metadata: dict[str, Any] | Callable[[], dict[str, Any]] | None = None,
                       fault: ProviderError | None = None, sleep: Sleep = asyncio.sleep,
                       steering: Steering | None = None) -> Completion:
        """Call `model`; on failure after retries, return a Completion that says why.

        `messages` (and `metadata`) may be functions, called when the call is admitted (module
        docstring). Raises only for what no retry can mend: BudgetExhausted (before starting),
        and UserError for a refused key, an unreachable host, or `steering` for a model whose
        provider does not declare the capability."""
        if steering is not None:
            self.check_steerable(model)
        if self.budget is not None:
            await self.budget.admit(free=self.is_free(model))
        params: dict[str, Any] = {k: v for k, v in (("temperature", temperature), ("max_tokens", max_tokens))
                                  if v is not None}
        params.update(extra or {})
        if not callable(messages):
            request = ModelRequest(model, messages, params, seed, built_metadata(metadata), self.endpoints.get(model),
                                   self.settings.timeout_s, steering)
            return await self._complete(request, fault, sleep, admitted=None)
        group = self._group(model)
        async with group.admitted():
            request = ModelRequest(model, messages(), params, seed, built_metadata(metadata),
                                   self.endpoints.get(model), self.settings.timeout_s, steering)
            return await self._complete(request, fault, sleep, admitted=Admitted(group))

    async def _complete(self, request: ModelRequest, fault: ProviderError | None, sleep: Sleep, *,
                        admitted: "Admitted | None") -> Completion:
        model = request.model
        endpoint = request.endpoint
        use_cache = self.uses_cache(model) and fault is None
        key = self.cache_key_for(request) if use_cache else ""
        if use_cache and (hit := self.cache.get(key)) is not None:
            return Completion(model=model, cached=True, **hit)
        provider = self.provider_for(model)
        done = Completion(model=model, provider=provider.name, injected=fault is not None)
        t0, attempts = time.perf_counter(), AttemptCounter()
        try:
            reply = await call_with_retries(
                lambda: self._attempt(provider, request, fault, admitted),
                max_attempts=self.settings.max_attempts, initial_wait=self.settings.initial_wait_s,
                max_wait=self.settings.max_wait_s, sleep=sleep, counter=attempts,
                on_wait=self._announce(model, endpoint))
        except Exception as exc:
            self._fail(done, exc, model, endpoint)
            level = logging.INFO if done.injected else logging.WARNING  # an injected crash is the protocol
            log.log(level, "%s failed %s after %d attempt(s): %s: %s", model,
                    "by injection" if done.injected else "at the provider", attempts.n, done.error_type, done.error)
        else:
            self._fill(done, reply, model)
            if use_cache:
                self.cache.put(key, model, cache_entry(done))
        done.attempts = attempts.n
        done.latency_ms = (time.perf_counter() - t0) * 1000
        if self.budget is not None:
            self.budget.spend(done.cost_usd)
        if log.isEnabledFor(logging.DEBUG):
            log.debug("%s: %s after %d attempt(s), %.0f ms, %d+%d tokens", model, "ok" if done.ok else "failed",
                      done.attempts, done.latency_ms, done.prompt_tokens, done.completion_tokens)
        return done

    def cache_key_for(self, request: ModelRequest) -> str:
        """Everything that decides the reply: the request, its metadata, where it goes, and what
        the provider adds of its own (the sim's settings for the model)."""
        extra = {"api_base": request.endpoint.api_base if request.endpoint else None,
                 "metadata": request.metadata, "provider": self.provider_for(request.model).cache_salt(request.model)}
        if request.steering is not None:  # absent otherwise, so existing keys stay valid
            extra["steering"] = request.steering.model_dump(mode="json")
        return cache_key(request.model, request.messages, {**request.params, **extra}, request.seed)

    def _announce(self, model: str, endpoint: Endpoint | None) -> Callable[[float, BaseException], None] | None:
        """The retry waits of one call, logged and told to the listener with where the error
        came from: the endpoint's host, else the model's provider prefix (e.g. 'groq')."""
        if self.on_retry is None and not log.isEnabledFor(logging.INFO):
            return None
        return lambda wait, exc: self._waiting(model, endpoint, wait, exc)

    def _waiting(self, model: str, endpoint: Endpoint | None, wait: float, exc: BaseException) -> None:
        source = urlparse(endpoint.api_base).netloc if endpoint and endpoint.api_base else model.split("/")[0]
        if log.isEnabledFor(logging.INFO):
            log.info("%s: retrying in %.1f s after %s from %s: %s", model, wait, error_name(exc), source,
                     error_text(exc))
        if self.on_retry is not None:
            self.on_retry(model, source, wait, exc)

    def _fail(self, done: Completion, exc: Exception, model: str, endpoint: Endpoint | None) -> None:
        """Record a provider failure on `done`, or raise what the user must fix."""
        if not is_provider_error(exc):
            raise exc  # our own bug: never recorded as if the model had failed
        register_secrets(self.provider_for(model).secrets(model, endpoint))  # a client never checked
        if error_name(exc) == "AuthenticationError":
            where = f" at {endpoint.api_base}" if endpoint and endpoint.api_base else ""
            hint = self.provider_for(model).key_hint(model, endpoint)
            raise UserError(f"model {model}{where}: the provider refused the API key "
                            f"({error_text(exc)}); {hint}") from None
        if isinstance(exc, HostUnreachable):
            raise UserError(f"model {model}: {error_text(exc)}; check the api_base or the network") from None
        done.error, done.error_type = error_text(exc), error_name(exc)
        done.transient = is_transient(exc)

    def _fill(self, done: Completion, reply: ProviderReply, model: str) -> None:
        done.text, done.tool_calls, done.reasoning = reply.text, reply.tool_calls, reply.reasoning
        done.prompt_tokens = plausible_tokens(reply.prompt_tokens, model, "prompt")
        done.completion_tokens = plausible_tokens(reply.completion_tokens, model, "completion")
        done.sim_latency_s, done.dropped_params = reply.sim_latency_s, reply.dropped_params
        done.steering_applied = reply.steering_applied
        price = self.price_for(model)
        done.cost_usd = price.cost(done.prompt_tokens, done.completion_tokens) if price else reply.cost_usd

    async def _attempt(self, provider: Provider, request: ModelRequest, fault: ProviderError | None,
                       admitted: "Admitted | None" = None) -> ProviderReply:
        if admitted is not None:  # the caller holds an in-flight slot; a retry waits for the rate again
            if admitted.first_attempt:
                admitted.first_attempt = False
            else:
                await admitted.group.pace()
            return await self._call(provider, request, fault)
        group = self._group(request.model)
        async with group.admitted():
            return await self._call(provider, request, fault)

    @staticmethod
    async def _call(provider: Provider, request: ModelRequest, fault: ProviderError | None) -> ProviderReply:
        if fault is not None:
            raise fault
        return await provider.complete(request)

    def _group(self, model: str) -> Group:
        """Models matching one `models:` pattern share a throttle and an in-flight cap (a
        provider's rate limit covers the whole account); other models get their own."""
        key, limits = self.limits_for(model)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = self.make_group(key, limits)
        return group

    def limits_for(self, model: str) -> tuple[str, ModelLimits]:
        """(group key, limits): the first matching pattern, else the model on its own."""
        for pattern, limits in self.settings.models.items():
            if fnmatch.fnmatchcase(model, pattern):
                return f"pattern:{pattern}", limits
        return f"model:{model}", self.settings.limits


class RunClient:
    """One run's view of the shared client: the same calls, plus a tally of provider failures,
    so the runner can tell a result from a run that an outage cut short."""

    def __init__(self, client: ModelClient):
        self.shared = client
        self.provider_failures = 0

    async def complete(self, model: str, messages: Messages, **kwargs: Any) -> Completion:
        done = await self.shared.complete(model, messages, **kwargs)
        if done.provider_failure:
            self.provider_failures += 1
        return done

    def is_in_process(self, model: str) -> bool:
        return self.shared.is_in_process(model)

    def sim_settings(self) -> Any:
        return self.shared.sim_settings()

    def check_steerable(self, model: str) -> None:
        """UserError naming the model unless its provider honours steering (ModelClient.check_steerable)."""
        self.shared.check_steerable(model)


def error_text(exc: BaseException) -> str:
    """One line about a provider error, keys masked before anything is cut (a key split at the
    cut would no longer be recognised)."""
    return first_line(RedactedError(redact(str(exc)) or type(exc).__name__))


class RedactedError(Exception):
    """Carries an already redacted message to `first_line`."""


CACHED_FIELDS = ("text", "tool_calls", "reasoning", "prompt_tokens", "completion_tokens", "cost_usd",
                 "sim_latency_s", "dropped_params", "provider", "steering_applied")


def cache_entry(done: Completion) -> dict[str, Any]:
    """What a cache hit restores: the reply, never the attempt's timing or errors."""
    return {name: getattr(done, name) for name in CACHED_FIELDS}


def default_providers(settings: ClientSettings, sim_settings: Any = None) -> list[Provider]:
    """The sim for `sim/` models, then litellm for everything else."""
    from .process_pool import provider_for_processes
    from .sim.provider import SimProvider

    return [SimProvider(sim_settings, via_litellm=not settings.sim_in_process),
            provider_for_processes(settings.processes)]



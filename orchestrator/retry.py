"""Which provider errors are worth retrying, and how long to wait before the next attempt.

Retries are added by wrapping a call (`call_with_retries`), never sprinkled inside it.
Classification goes by exception class *names* so that sim-only runs never import litellm.
"""

from __future__ import annotations

import random
import re
import socket
from typing import Awaitable, Callable, TypeVar

from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from sociolab.base.errors import ProviderError

T = TypeVar("T")

# litellm's (and openai's) transient exception classes.
TRANSIENT_NAMES = frozenset({
    "RateLimitError", "Timeout", "APITimeoutError", "APIConnectionError", "InternalServerError",
    "ServiceUnavailableError", "BadGatewayError", "APIResponseValidationError",
})
# Subclasses of transient-looking bases that must fail fast.
PERMANENT_NAMES = frozenset({"ContextWindowExceededError", "ContentPolicyViolationError",
                             "AuthenticationError", "BadRequestError", "NotFoundError",
                             "PermissionDeniedError", "UnsupportedParamsError"})


TRANSIENT_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504, 529})

# litellm raises BadRequestError when it cannot parse a provider's *reply* (Gemini's truncated
# JSON body): the request was fine, the answer garbled in transit, so it is worth another try.
GARBLED_REPLY = re.compile(r"Error converting to valid response")

PROVIDER_MODULES = ("litellm", "openai", "httpx", "httpcore", "aiohttp")


def is_provider_error(exc: BaseException) -> bool:
    """An error from a model provider or its transport, as opposed to a bug in our own code.

    Only these become recorded failures of a call; anything else propagates, so a bug is never
    mistaken for a model that failed.
    """
    if isinstance(exc, (ProviderError, TimeoutError, ConnectionError)):
        return True
    return any(cls.__module__.split(".")[0] in PROVIDER_MODULES for cls in type(exc).__mro__)


def error_name(exc: BaseException) -> str:
    """The error's class name as the provider raised it, also when it was raised in a worker
    process and crossed over as a RemoteProviderError (orchestrator/process_frames.py)."""
    return getattr(exc, "remote_type", None) or type(exc).__name__


def is_transient(exc: BaseException) -> bool:
    """True for rate limits, timeouts, connection failures and 5xx; False for everything else."""
    if isinstance(exc, ProviderError):
        return exc.transient
    if isinstance(exc, (TimeoutError, ConnectionError)):  # the transport's own, unwrapped
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    if type(exc).__name__ == "BadRequestError" and GARBLED_REPLY.search(str(exc)):
        return True
    if type(exc).__name__ in PERMANENT_NAMES:
        return False
    if names & TRANSIENT_NAMES:
        return True
    # litellm's catch-all APIError (e.g. OpenRouter's 5xx, a garbled 200 body from vLLM)
    status = getattr(exc, "status_code", None)
    return type(exc).__name__ == "APIError" and (status in TRANSIENT_STATUS or status == 200)


def retry_after_seconds(exc: BaseException) -> float | None:
    """The server's Retry-After, wherever the exception carries it."""
    if isinstance(exc, ProviderError):
        return exc.retry_after
    headers = getattr(exc, "litellm_response_headers", None)
    if headers is None:
        response = getattr(exc, "response", None)
        headers = getattr(response, "headers", None)
    if not headers:
        return None
    value = headers.get("retry-after") or headers.get("Retry-After")
    try:
        return max(0.0, float(value)) if value is not None else None
    except (TypeError, ValueError):
        return None


_CONNECTION_TEXT = re.compile(
    r"Connection error|Cannot connect to host|Name or service not known|nodename nor servname|"
    r"Temporary failure in name resolution|getaddrinfo failed|Connection refused|All connection attempts failed",
    re.I)


def looks_like_connection_failure(exc: BaseException) -> bool:
    """The request never reached a server: refused, unresolvable, or the transport's own words.

    litellm reports these under several classes (APIConnectionError, or InternalServerError with
    "Connection error." for the OpenAI family), so the chain and the text are both read.
    """
    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, (socket.gaierror, ConnectionRefusedError)) or _CONNECTION_TEXT.search(str(cur)):
            return True
        cur = cur.__cause__ or cur.__context__
    return False


_shared_rng = random.Random()  # seeding a Random per call costs more than the call on the sim path


class BackoffWait:
    """Full-jitter exponential backoff, but never shorter than the server's Retry-After."""

    def __init__(self, initial: float, maximum: float, rng: random.Random | None = None, offset: int = 0):
        self.initial = initial
        self.maximum = maximum
        self.rng = rng or _shared_rng
        self.offset = offset  # attempts made before tenacity took over

    def __call__(self, state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        return self.after(state.attempt_number + self.offset, exc)

    def after(self, failed_attempts: int, exc: BaseException | None) -> float:
        ceiling = min(self.maximum, self.initial * 2 ** (failed_attempts - 1))
        wait = self.rng.uniform(0, ceiling)
        hinted = retry_after_seconds(exc) if exc else None
        if hinted is not None:
            wait = max(wait, min(hinted, self.maximum))
        return wait


class AttemptCounter:
    """How many attempts a call took, readable whether it succeeded or raised."""

    def __init__(self) -> None:
        self.n = 0


async def call_with_retries(fn: Callable[[], Awaitable[T]], *, max_attempts: int, initial_wait: float,
                            max_wait: float, sleep: Callable[[float], Awaitable[None]],
                            counter: AttemptCounter,
                            on_wait: Callable[[float, BaseException], None] | None = None) -> T:
    """Call `fn`, retrying transient errors with jittered backoff that honours Retry-After.

    The first attempt runs bare, since most calls succeed and tenacity's per-call machinery costs
    more than an in-process sim reply; after a transient failure tenacity drives the rest.
    `on_wait(seconds, error)` hears of every wait before it starts, for the progress display.
    """
    counter.n = 1
    try:
        return await fn()
    except Exception as exc:
        if max_attempts <= 1 or not is_transient(exc):
            raise
        first_failure = exc
    backoff = BackoffWait(initial_wait, max_wait, offset=1)
    first_wait = backoff.after(1, first_failure)
    if on_wait is not None:
        on_wait(first_wait, first_failure)
    await sleep(first_wait)

    async def announced_sleep(seconds: float) -> None:
        if on_wait is not None and last_error:
            on_wait(seconds, last_error[-1])
        await sleep(seconds)

    last_error: list[BaseException] = []

    def remember(exc: BaseException) -> bool:
        last_error.append(exc)
        return is_transient(exc)

    retrying = AsyncRetrying(stop=stop_after_attempt(max_attempts - 1), wait=backoff,
                             retry=retry_if_exception(remember), sleep=announced_sleep, reraise=True)
    async for attempt in retrying:
        with attempt:
            counter.n = 1 + attempt.retry_state.attempt_number
            return await fn()
    raise AssertionError("unreachable: tenacity either returns or re-raises")

"""orchestrator/retry.py: which errors are retried, how long a retry waits, and the retry wrapper.

Classification is checked on litellm's (and openai's) real exception classes, built the way litellm
builds them; the conftest sets LITELLM_LOCAL_MODEL_COST_MAP / LITELLM_OFFLINE_MODE before litellm
is imported, so nothing here touches the network. Waits go to a fake sleep: no real time passes.
"""

from __future__ import annotations

import random
import socket
import time

import httpx
import litellm
import openai
import pytest
from tenacity import RetryCallState

from sociolab.orchestrator import retry
from sociolab.base.errors import HostUnreachable, ProviderError
from sociolab.orchestrator.retry import (AttemptCounter, BackoffWait, call_with_retries, is_provider_error,
                                is_transient, looks_like_connection_failure, retry_after_seconds)

REQUEST = httpx.Request("POST", "http://127.0.0.1:9/v1/chat/completions")


def response(status: int, **headers: str) -> httpx.Response:
    return httpx.Response(status, headers=headers, request=REQUEST)


def lite(cls: type, message: str = "boom", **kw) -> Exception:
    """A litellm exception built as litellm builds it (keyword arguments: the classes disagree on order)."""
    return cls(message=message, llm_provider="openai", model="gpt-4o", **kw)


def api_error(status: int) -> Exception:
    return litellm.APIError(status_code=status, message="boom", llm_provider="openrouter", model="x/y")


# ---- classification ------------------------------------------------------------------------------

TRANSIENT = {
    "RateLimitError (429)": lambda: lite(litellm.RateLimitError),
    "InternalServerError (500)": lambda: lite(litellm.InternalServerError),
    "ServiceUnavailableError (503)": lambda: lite(litellm.ServiceUnavailableError),
    "BadGatewayError (502)": lambda: lite(litellm.BadGatewayError),
    "Timeout": lambda: lite(litellm.Timeout),
    "APIConnectionError": lambda: lite(litellm.APIConnectionError),
    "APIResponseValidationError (malformed body)": lambda: lite(litellm.APIResponseValidationError),
    "APIError 500": lambda: api_error(500),
    "APIError 502": lambda: api_error(502),
    "APIError 503": lambda: api_error(503),
    "APIError 429": lambda: api_error(429),
    "APIError 200 (garbled body)": lambda: api_error(200),
    "openai.APITimeoutError": lambda: openai.APITimeoutError(request=REQUEST),
    "openai.APIConnectionError": lambda: openai.APIConnectionError(request=REQUEST),
    "ProviderError(transient=True)": lambda: ProviderError("503 overloaded", transient=True, status_code=503),
}

PERMANENT = {
    "BadRequestError (400)": lambda: lite(litellm.BadRequestError),
    "AuthenticationError (401)": lambda: lite(litellm.AuthenticationError),
    "NotFoundError (404)": lambda: lite(litellm.NotFoundError),
    "PermissionDeniedError (403)": lambda: lite(litellm.PermissionDeniedError, response=response(403)),
    "UnsupportedParamsError": lambda: lite(litellm.UnsupportedParamsError),
    "ContextWindowExceededError": lambda: lite(litellm.ContextWindowExceededError),
    "ContentPolicyViolationError": lambda: lite(litellm.ContentPolicyViolationError),
    "APIError 400": lambda: api_error(400),
    "APIError 401": lambda: api_error(401),
    "APIError 404": lambda: api_error(404),
    "ProviderError(transient=False)": lambda: ProviderError("model decommissioned", transient=False, status_code=400),
    "HostUnreachable": lambda: HostUnreachable("127.0.0.1:9", "connection refused"),
}


@pytest.mark.parametrize("make", TRANSIENT.values(), ids=TRANSIENT.keys())
def test_transient_provider_errors_are_retried(make):
    exc = make()
    assert is_transient(exc) is True
    assert is_provider_error(exc) is True


@pytest.mark.parametrize("make", PERMANENT.values(), ids=PERMANENT.keys())
def test_permanent_provider_errors_fail_fast_but_are_still_provider_errors(make):
    exc = make()
    assert is_transient(exc) is False
    assert is_provider_error(exc) is True


def test_permanent_subclasses_of_bad_request_are_not_rescued_by_their_status():
    # ContextWindowExceededError and UnsupportedParamsError carry status 400 and subclass
    # BadRequestError; a 400 with a transient-looking text must still fail fast.
    exc = lite(litellm.ContextWindowExceededError, message="Rate limit? no: context too long (503 tokens)")
    assert exc.status_code == 400
    assert is_transient(exc) is False


@pytest.mark.parametrize("exc", [TimeoutError("read timed out"), ConnectionRefusedError(111, "refused"),
                                 ConnectionResetError(), httpx.ConnectError("refused", request=REQUEST),
                                 httpx.ReadTimeout("slow", request=REQUEST)],
                         ids=["TimeoutError", "ConnectionRefusedError", "ConnectionResetError",
                              "httpx.ConnectError", "httpx.ReadTimeout"])
def test_transport_errors_are_provider_errors(exc):
    assert is_provider_error(exc) is True


@pytest.mark.parametrize("exc", [KeyError("x"), ValueError("Connection error."), TypeError("bad"),
                                 AssertionError(), ZeroDivisionError()],
                         ids=["KeyError", "ValueError-with-connection-text", "TypeError", "AssertionError",
                              "ZeroDivisionError"])
def test_bugs_in_our_own_code_are_neither_provider_errors_nor_transient(exc):
    assert is_provider_error(exc) is False
    assert is_transient(exc) is False


def test_a_local_class_that_borrows_a_provider_name_is_not_a_provider_error():
    class RateLimitError(Exception):  # defined here, in the tests: not litellm's
        pass

    assert is_provider_error(RateLimitError("429")) is False


def test_a_subclass_of_a_transient_litellm_class_stays_transient():
    class MyRateLimit(litellm.RateLimitError):
        pass

    exc = lite(MyRateLimit)
    assert is_transient(exc) is True
    assert is_provider_error(exc) is True  # its bases live in litellm/openai


def test_builtin_timeout_is_transient():
    assert is_transient(TimeoutError("timed out")) is True


# ---- Retry-After ----------------------------------------------------------------------------------

def test_retry_after_from_a_provider_error():
    assert retry_after_seconds(ProviderError("429", transient=True, status_code=429, retry_after=2.5)) == 2.5
    assert retry_after_seconds(ProviderError("429", transient=True, status_code=429)) is None


def test_retry_after_from_the_response_headers_of_a_litellm_error():
    exc = lite(litellm.RateLimitError, response=response(429, **{"retry-after": "7"}))
    assert not hasattr(exc, "litellm_response_headers")
    assert retry_after_seconds(exc) == 7.0


def test_retry_after_from_litellm_response_headers_wins_over_the_response():
    exc = lite(litellm.RateLimitError, response=response(429, **{"retry-after": "7"}))
    exc.litellm_response_headers = httpx.Headers({"Retry-After": "3"})  # as litellm's exception mapping sets it
    assert retry_after_seconds(exc) == 3.0


@pytest.mark.parametrize("headers", [{"retry-after": "4"}, {"Retry-After": "4"}, httpx.Headers({"RETRY-AFTER": "4"})],
                         ids=["lower", "title", "httpx-any-case"])
def test_retry_after_header_spelling(headers):
    exc = lite(litellm.RateLimitError)
    exc.litellm_response_headers = headers
    assert retry_after_seconds(exc) == 4.0


@pytest.mark.parametrize("value,expected", [("0", 0.0), ("1.5", 1.5), ("-3", 0.0), ("soon", None),
                                            ("Wed, 21 Oct 2015 07:28:00 GMT", None), ("", None)])
def test_retry_after_values_that_are_not_plain_seconds(value, expected):
    exc = lite(litellm.RateLimitError)
    exc.litellm_response_headers = {"retry-after": value}
    assert retry_after_seconds(exc) == expected


def test_no_retry_after_anywhere():
    assert retry_after_seconds(lite(litellm.RateLimitError)) is None  # its response has no such header
    assert retry_after_seconds(RuntimeError("x")) is None


# ---- BackoffWait ----------------------------------------------------------------------------------

class TopRng:
    """Full jitter drawn at its upper bound: the wait equals the ceiling."""

    def uniform(self, a: float, b: float) -> float:
        return b


class BottomRng:
    def uniform(self, a: float, b: float) -> float:
        return a


def test_ceiling_doubles_per_failed_attempt_up_to_the_maximum():
    backoff = BackoffWait(initial=0.5, maximum=5.0, rng=TopRng())
    assert [backoff.after(n, None) for n in range(1, 8)] == [0.5, 1.0, 2.0, 4.0, 5.0, 5.0, 5.0]


def test_full_jitter_stays_within_zero_and_the_ceiling_and_spreads():
    backoff = BackoffWait(initial=1.0, maximum=30.0, rng=random.Random(1234))
    for failed, ceiling in [(1, 1.0), (2, 2.0), (3, 4.0), (6, 30.0)]:
        waits = [backoff.after(failed, None) for _ in range(400)]
        assert all(0.0 <= w <= ceiling for w in waits)
        assert min(waits) < 0.1 * ceiling and max(waits) > 0.9 * ceiling  # jittered, not fixed
        assert 0.4 * ceiling < sum(waits) / len(waits) < 0.6 * ceiling


def test_a_large_attempt_number_is_capped_not_overflowing():
    assert BackoffWait(initial=1.0, maximum=60.0, rng=TopRng()).after(200, None) == 60.0


def test_retry_after_is_a_floor_for_the_jittered_wait():
    exc = ProviderError("429", transient=True, status_code=429, retry_after=3.0)
    assert BackoffWait(initial=1.0, maximum=60.0, rng=BottomRng()).after(1, exc) == 3.0
    # when the jitter is longer than the hint, the jitter stands
    assert BackoffWait(initial=8.0, maximum=60.0, rng=TopRng()).after(1, exc) == 8.0


@pytest.mark.parametrize("rng", [BottomRng(), TopRng()], ids=["bottom", "top"])
def test_retry_after_never_makes_a_wait_longer_than_the_maximum(rng):
    exc = ProviderError("429", transient=True, status_code=429, retry_after=3600.0)
    assert BackoffWait(initial=1.0, maximum=10.0, rng=rng).after(1, exc) == 10.0


def test_retry_after_honoured_from_litellm_errors_both_ways():
    from_response = lite(litellm.RateLimitError, response=response(429, **{"retry-after": "6"}))
    from_litellm = lite(litellm.RateLimitError)
    from_litellm.litellm_response_headers = {"retry-after": "4"}
    backoff = BackoffWait(initial=0.1, maximum=30.0, rng=BottomRng())
    assert backoff.after(1, from_response) == 6.0
    assert backoff.after(1, from_litellm) == 4.0


def test_tenacity_hook_adds_the_attempts_made_before_tenacity_took_over():
    state = RetryCallState(retry_object=None, fn=None, args=(), kwargs={})
    state.attempt_number = 2
    state.set_exception((RuntimeError, RuntimeError("x"), None))
    assert BackoffWait(initial=1.0, maximum=100.0, rng=TopRng(), offset=1)(state) == 4.0  # 3rd failure
    assert BackoffWait(initial=1.0, maximum=100.0, rng=TopRng(), offset=0)(state) == 2.0


# ---- call_with_retries ----------------------------------------------------------------------------

class FakeSleep:
    def __init__(self) -> None:
        self.waits: list[float] = []

    async def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Script:
    """An async callable that raises or returns the next scripted outcome, noting the attempt count."""

    def __init__(self, counter: AttemptCounter, *outcomes):
        self.counter = counter
        self.outcomes = list(outcomes)
        self.seen_attempts: list[int] = []

    async def __call__(self):
        self.seen_attempts.append(self.counter.n)
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, BaseException):
            raise outcome
        return outcome


def busy(n: int = 0, retry_after: float | None = None) -> ProviderError:
    return ProviderError(f"503 busy #{n}", transient=True, status_code=503, retry_after=retry_after)


async def run(script: Script, *, max_attempts: int = 4, initial_wait: float = 1.0, max_wait: float = 30.0,
              on_wait=None) -> tuple[object, FakeSleep]:
    sleep = FakeSleep()
    result = await call_with_retries(script, max_attempts=max_attempts, initial_wait=initial_wait,
                                     max_wait=max_wait, sleep=sleep, counter=script.counter, on_wait=on_wait)
    return result, sleep


async def test_a_first_success_is_one_bare_attempt_with_no_wait():
    counter, waits = AttemptCounter(), []
    result, sleep = await run(Script(counter, "ok"), on_wait=lambda s, e: waits.append((s, e)))
    assert result == "ok"
    assert counter.n == 1
    assert sleep.waits == [] and waits == []


async def test_transient_failures_are_retried_until_success():
    counter = AttemptCounter()
    script = Script(counter, busy(1), busy(2), "ok")
    result, sleep = await run(script)
    assert result == "ok"
    assert counter.n == 3
    assert script.seen_attempts == [1, 2, 3]
    assert len(sleep.waits) == 2


async def test_gives_up_after_max_attempts_and_raises_the_last_error():
    counter = AttemptCounter()
    errors = [busy(i) for i in range(1, 5)]
    script = Script(counter, *errors, "never reached")
    with pytest.raises(ProviderError) as info:
        await run(script, max_attempts=4)
    assert info.value is errors[-1]
    assert counter.n == 4  # readable after the failure
    assert script.seen_attempts == [1, 2, 3, 4]
    assert script.outcomes == ["never reached"]


@pytest.mark.parametrize("max_attempts", [1, 0])
async def test_one_attempt_allowed_means_no_retry(max_attempts):
    counter = AttemptCounter()
    script = Script(counter, busy(1), "ok")
    with pytest.raises(ProviderError):
        await run(script, max_attempts=max_attempts)
    assert counter.n == 1
    assert script.outcomes == ["ok"]


async def test_two_attempts_allowed_means_exactly_one_retry():
    counter = AttemptCounter()
    script = Script(counter, busy(1), busy(2), "ok")
    with pytest.raises(ProviderError, match="#2"):
        await run(script, max_attempts=2)
    assert counter.n == 2


@pytest.mark.parametrize("make", [PERMANENT["AuthenticationError (401)"], PERMANENT["ContextWindowExceededError"],
                                  PERMANENT["ProviderError(transient=False)"], lambda: KeyError("bug")],
                         ids=["auth", "context-window", "provider-permanent", "our-bug"])
async def test_permanent_errors_and_bugs_are_not_retried(make):
    counter, waits = AttemptCounter(), []
    exc = make()
    script = Script(counter, exc, "ok")
    with pytest.raises(type(exc)) as info:
        await run(script, on_wait=lambda s, e: waits.append(e))
    assert info.value is exc
    assert counter.n == 1 and waits == []


async def test_a_permanent_error_on_a_retry_stops_the_retries():
    counter = AttemptCounter()
    refused = lite(litellm.BadRequestError, message="unknown model")
    script = Script(counter, lite(litellm.RateLimitError), refused, "ok")
    with pytest.raises(litellm.BadRequestError) as info:
        await run(script, max_attempts=5)
    assert info.value is refused
    assert counter.n == 2


async def test_on_wait_hears_every_wait_once_with_its_error_before_the_sleep():
    counter = AttemptCounter()
    errors = [busy(1), lite(litellm.RateLimitError), lite(litellm.InternalServerError)]
    heard: list[tuple[float, BaseException]] = []
    sleep = FakeSleep()

    def on_wait(seconds: float, exc: BaseException) -> None:
        assert len(sleep.waits) == len(heard)  # told before the sleep starts
        heard.append((seconds, exc))

    script = Script(counter, *errors, "ok")
    result = await call_with_retries(script, max_attempts=5, initial_wait=1.0, max_wait=30.0, sleep=sleep,
                                     counter=counter, on_wait=on_wait)
    assert result == "ok"
    assert [e for _, e in heard] == errors
    assert [s for s, _ in heard] == sleep.waits


async def test_the_injected_sleep_gets_exponential_ceilings(monkeypatch):
    monkeypatch.setattr(retry, "_shared_rng", TopRng())
    counter = AttemptCounter()
    script = Script(counter, *[busy(i) for i in range(5)], "ok")
    t0 = time.perf_counter()
    result, sleep = await run(script, max_attempts=6, initial_wait=1.0, max_wait=6.0)
    assert result == "ok"
    assert sleep.waits == [1.0, 2.0, 4.0, 6.0, 6.0]
    assert time.perf_counter() - t0 < 1.0  # 19 s of waits, none of them real


async def test_retry_after_sets_every_wait_and_is_capped_by_max_wait():
    counter = AttemptCounter()
    script = Script(counter, busy(1, retry_after=3.0), busy(2, retry_after=3.0), "ok")
    _, sleep = await run(script, initial_wait=0.0, max_wait=10.0)
    assert sleep.waits == [3.0, 3.0]

    counter = AttemptCounter()
    script = Script(counter, busy(1, retry_after=120.0), busy(2, retry_after=120.0), "ok")
    _, sleep = await run(script, initial_wait=0.0, max_wait=5.0)
    assert sleep.waits == [5.0, 5.0]


async def test_retry_after_of_a_litellm_rate_limit_reaches_the_sleep():
    counter = AttemptCounter()
    limited = lite(litellm.RateLimitError, response=response(429, **{"retry-after": "2"}))
    _, sleep = await run(Script(counter, limited, "ok"), initial_wait=0.0, max_wait=10.0)
    assert sleep.waits == [2.0]


async def test_the_counter_is_reset_for_each_call():
    counter = AttemptCounter()
    await run(Script(counter, busy(1), busy(2), "ok"))
    assert counter.n == 3
    await run(Script(counter, "ok"))
    assert counter.n == 1


# ---- looks_like_connection_failure ---------------------------------------------------------------

def chained(outer: BaseException, inner: BaseException, *, explicit: bool = True) -> BaseException:
    """`outer` raised while handling `inner`, as real code would chain them."""
    try:
        try:
            raise inner
        except BaseException as exc:
            if explicit:
                raise outer from exc
            raise outer
    except BaseException as caught:
        return caught


@pytest.mark.parametrize("exc", [
    socket.gaierror(-2, "Name or service not known"),
    ConnectionRefusedError(111, "Connection refused"),
    lite(litellm.InternalServerError, message="Connection error."),          # the OpenAI family's words
    lite(litellm.APIConnectionError, message="Cannot connect to host 127.0.0.1:9"),
    httpx.ConnectError("All connection attempts failed", request=REQUEST),
    RuntimeError("[Errno -3] Temporary failure in name resolution"),
    RuntimeError("CONNECTION REFUSED"),
], ids=["gaierror", "refused", "openai-connection-error", "aiohttp-words", "httpx-all-attempts",
        "dns-text", "case-insensitive"])
def test_connection_failures_are_recognised(exc):
    assert looks_like_connection_failure(exc) is True


@pytest.mark.parametrize("explicit", [True, False], ids=["raise-from", "implicit-context"])
def test_a_connection_failure_deep_in_the_chain_is_found(explicit):
    bottom = socket.gaierror(-2, "lookup failed")  # matched by class, not by text
    middle = chained(RuntimeError("transport failed"), bottom, explicit=explicit)
    top = chained(lite(litellm.APIConnectionError, message="litellm wrapped it"), middle, explicit=explicit)
    assert looks_like_connection_failure(top) is True


@pytest.mark.parametrize("exc", [
    lite(litellm.RateLimitError, message="slow down"),
    lite(litellm.InternalServerError, message="upstream exploded"),
    lite(litellm.Timeout, message="Request timed out"),
    TimeoutError("read timed out"),
    chained(ValueError("bad json"), KeyError("choices")),
], ids=["rate-limit", "5xx", "timeout", "builtin-timeout", "chain-without-connection"])
def test_reached_the_server_is_not_a_connection_failure(exc):
    assert looks_like_connection_failure(exc) is False


def test_a_cyclic_chain_terminates():
    a, b = RuntimeError("a"), RuntimeError("b")
    a.__cause__, b.__cause__ = b, a
    assert looks_like_connection_failure(a) is False

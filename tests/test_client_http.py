"""The model client over litellm's real HTTP path, against serve-sim on loopback, with faults."""

from __future__ import annotations

import asyncio
import time

import pytest

from sociolab.orchestrator.client import ClientSettings, ModelClient, ModelLimits
from sociolab.config import load_plan
from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint, ProviderDefaults, ProviderReply
from sociolab.runner import execute
from sociolab.orchestrator.sim.server import FaultConfig, start_in_thread
from sociolab.orchestrator.store import Store

from tests.conftest import write_yaml

MSGS = [{"role": "system", "content": "You are Agent-A in a group chat.\nOther agents: Agent-B"},
        {"role": "user", "content": "@all Plan a food delivery app, budget 50k."}]
MODEL = "openai/sim-alpha"


def client_for(url: str, **settings) -> ModelClient:
    base = dict(initial_wait_s=0.01, max_wait_s=0.5, timeout_s=10)
    return ModelClient(ClientSettings(**{**base, **settings}), endpoints={MODEL: Endpoint(api_base=url)})


async def test_success_records_usage_and_no_retry():
    with start_in_thread() as server:
        call = await client_for(server.url).complete(MODEL, MSGS, temperature=0.5, seed=3)
    assert call.ok and call.text and call.attempts == 1
    assert call.prompt_tokens > 0 and call.completion_tokens > 0
    assert call.cost_usd is None  # a model litellm has no price for: unknown, never $0
    assert call.error is None and call.latency_ms > 0


@pytest.mark.parametrize("kind, error_type", [(429, "RateLimitError"), (500, "InternalServerError"),
                                               (503, "ServiceUnavailableError")])
async def test_transient_faults_are_retried_until_attempts_run_out(kind, error_type):
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[kind], retry_after=0.01)) as server:
        call = await client_for(server.url, max_attempts=3).complete(MODEL, MSGS)
        stats = server.stats()
    assert not call.ok and call.text is None
    assert call.error_type == error_type and call.transient and call.attempts == 3
    assert stats["faults"][str(kind)] == 3


async def test_retry_after_is_honoured():
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[429], retry_after=0.4)) as server:
        t0 = time.perf_counter()
        call = await client_for(server.url, max_attempts=2, initial_wait_s=0.0).complete(MODEL, MSGS)
        elapsed = time.perf_counter() - t0
    assert call.attempts == 2 and call.error_type == "RateLimitError"
    assert elapsed >= 0.4  # the jittered wait alone could be 0; only Retry-After forces this


async def test_fail_first_then_success_counts_attempts():
    with start_in_thread(faults=FaultConfig(fail_first=2)) as server:
        call = await client_for(server.url).complete(MODEL, MSGS)
    assert call.ok and call.attempts == 3


async def test_malformed_body_and_timeout_are_transient():
    with start_in_thread(faults=FaultConfig(malformed_rate=1.0)) as server:
        bad = await client_for(server.url, max_attempts=2).complete(MODEL, MSGS)
    assert bad.error_type == "InternalServerError" and bad.attempts == 2 and bad.transient
    with start_in_thread(faults=FaultConfig(slow_rate=1.0, slow_ms=3000)) as server:
        slow = await client_for(server.url, max_attempts=2, timeout_s=0.3).complete(MODEL, MSGS)
    assert slow.error_type == "Timeout" and slow.attempts == 2 and slow.transient


async def test_bad_request_fails_fast():
    with start_in_thread() as server:
        call = await client_for(server.url).complete(MODEL, MSGS, extra={"n": 3})
    assert not call.ok and call.attempts == 1 and not call.transient and call.error_type == "BadRequestError"


async def test_wrong_api_key_is_a_user_error():
    with start_in_thread(api_key="right") as server:
        with pytest.raises(UserError, match="refused the API key"):
            await client_for(server.url).complete(MODEL, MSGS)


async def test_throttle_spaces_requests():
    limits = ModelLimits(requests_per_period=4, period_s=0.5, in_flight=8)
    with start_in_thread() as server:
        client = client_for(server.url, models={"openai/*": limits})
        t0 = time.perf_counter()
        calls = await asyncio.gather(*(client.complete(MODEL, MSGS, seed=i) for i in range(12)))
        elapsed = time.perf_counter() - t0
    assert all(c.ok for c in calls)
    assert elapsed >= 1.0  # 12 calls at 4 per 0.5 s need at least two full periods


async def test_in_flight_cap_serialises_slow_calls():
    limits = ModelLimits(in_flight=1)
    with start_in_thread(faults=FaultConfig(latency_ms=150)) as server:
        client = client_for(server.url, limits=limits)
        t0 = time.perf_counter()
        await asyncio.gather(*(client.complete(MODEL, MSGS, seed=i) for i in range(4)))
        elapsed = time.perf_counter() - t0
    assert elapsed >= 0.6


async def test_opt_in_cache_serves_repeats_without_a_request():
    with start_in_thread() as server:
        client = client_for(server.url, cache=True)
        first = await client.complete(MODEL, MSGS, seed=1)
        second = await client.complete(MODEL, MSGS, seed=1)
        requests = server.stats()["ok"]
    assert first.text == second.text and second.cached and not first.cached and requests == 1
    assert client.cache.drain() and not client.cache.drain()


def test_discussion_over_http_with_20_percent_faults_loses_no_message(tmp_path):
    """20% 429/500/503 plus some very slow replies that time out: every message still arrives."""
    with start_in_thread(faults=FaultConfig(fail_rate=0.2, retry_after=0.01, latency_ms=5,
                                            latency_jitter_ms=20, slow_rate=0.05, slow_ms=1500,
                                            fault_seed=5)) as server:
        path = write_yaml(tmp_path, f"""
            name: http
            seed: 3
            agents:
              personas:
                - {{key: a, model: openai/sim-alpha, api_base: "{server.url}"}}
                - {{key: b, model: openai/sim-bravo, api_base: "{server.url}"}}
                - {{key: c, model: openai/sim-charlie, api_base: "{server.url}"}}
                - {{key: d, model: openai/sim-delta, api_base: "{server.url}"}}
            params: {{seed_message: "@all Let's plan the app.", rounds: 4, stagger_ms: 20}}
            client: {{initial_wait_s: 0.01, max_wait_s: 0.2, max_attempts: 10, timeout_s: 0.5}}
            """)
        store = Store.open(tmp_path / "h.duckdb")
        report = asyncio.run(execute(load_plan(path), store))
        stats = server.stats()
    assert report.completed == 1
    con = store.con
    assert con.execute("SELECT count(*) FROM messages WHERE round IS NOT NULL AND NOT is_error").fetchone()[0] == 16
    attempts = con.execute("SELECT sum(attempts), max(attempts) FROM llm_calls").fetchone()
    faults, slow = sum(stats["faults"].values()), stats["slow"]
    assert faults > 0 and slow > 0 and attempts[1] > 1
    # every injected fault and every timed-out slow reply is a recorded retry (a reply can be both)
    assert max(faults, slow) <= attempts[0] - 16 <= faults + slow


class StampingProvider(ProviderDefaults):
    """Answers `stamp/*` at once, noting when each request arrived."""

    name = "stamping"

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def serves(self, model, endpoint):
        return model.startswith("stamp/")

    def in_process(self, model, endpoint):
        return True

    async def complete(self, request) -> ProviderReply:
        self.arrivals.append(time.monotonic())
        return ProviderReply(text="ok")


async def test_a_rate_limit_is_a_steady_pace_not_a_burst():
    """20 per second, 30 asked at once: one leaves every 50 ms, never 20 at once then a pause (a
    sliding window's burst, which per-second limits of providers punish)."""
    provider = StampingProvider()
    settings = ClientSettings(models={"stamp/*": ModelLimits(requests_per_period=20, period_s=1.0, in_flight=64)})
    client = ModelClient(settings, providers=[provider])
    calls = await asyncio.gather(*(client.complete("stamp/x", MSGS, seed=i) for i in range(30)))
    assert all(c.ok for c in calls)
    arrivals = sorted(provider.arrivals)
    gaps = [b - a for a, b in zip(arrivals, arrivals[1:])]
    assert min(gaps) >= 0.045, gaps  # a lower bound: a loaded machine only widens the gaps
    assert sum(1 for t in arrivals if t - arrivals[0] < 0.5) <= 11

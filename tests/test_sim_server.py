"""serve-sim: the OpenAI-compatible sim server, its fault injection, and litellm's real HTTP path.

The litellm part pins which exception class litellm (1.110) raises for each injected fault and
where the Retry-After value is found, so the model client's retry classification rests on
observed behaviour rather than on assumptions.
"""

from __future__ import annotations

import os

os.environ["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"  # before litellm is imported anywhere

import asyncio
import http.client
import json
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import litellm
import openai
import pytest

from sociolab.base.errors import ProviderError
from sociolab.orchestrator.sim import agent
from sociolab.orchestrator.sim.agent import sim_reply
from sociolab.orchestrator.sim.envelope import HEADER, header_value
from sociolab.orchestrator.sim.propensities import Propensities
from sociolab.orchestrator.sim.server import (FaultConfig, check_loopback_host, serve, sim_model_name,
                                     start_in_thread)
from sociolab.orchestrator.sim.settings import SimSettings

litellm.suppress_debug_info = True  # no "Provider List" banners in test output

REPO = Path(__file__).resolve().parents[1]
MSGS = [{"role": "system", "content": "You are Agent-A in a group chat."},
        {"role": "user", "content": "[Agent-B]: Hello everyone, who are we?"}]


def chat(url: str, body: dict | bytes, *, headers: dict | None = None, timeout: float = 10) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return httpx.post(f"{url}/chat/completions", content=content, timeout=timeout,
                      headers={"Content-Type": "application/json", **(headers or {})})


def body(model: str = "sim-alpha", **extra) -> dict:
    return {"model": model, "messages": MSGS, **extra}


@pytest.fixture
def server():
    with start_in_thread() as handle:
        yield handle


# ------------------------------------------------------------------------------------------
# plain HTTP behaviour

def test_completion_is_openai_shaped_and_equals_sim_reply(server):
    r = chat(server.url, body(seed=7, temperature=0.3, response_format={"type": "json_object"},
                              tools=[{"type": "function", "function": {"name": "f", "parameters": {}}}]))
    assert r.status_code == 200
    assert r.headers["content-type"] == "application/json"
    assert int(r.headers["content-length"]) == len(r.content)
    data = r.json()
    expected = sim_reply("sim/alpha", MSGS, seed=7, temperature=0.3, max_tokens=None)
    assert data["object"] == "chat.completion"
    assert data["id"].startswith("chatcmpl-")
    assert isinstance(data["created"], int) and data["created"] > 1_600_000_000
    assert data["model"] == "sim-alpha"  # echoes what was asked for
    (choice,) = data["choices"]
    assert choice["index"] == 0
    assert choice["message"] == {"role": "assistant", "content": expected.text}
    assert choice["finish_reason"] == "stop"
    assert data["usage"] == {"prompt_tokens": expected.prompt_tokens,
                             "completion_tokens": expected.completion_tokens,
                             "total_tokens": expected.prompt_tokens + expected.completion_tokens}
    # determinism: the same request gives the same text
    assert chat(server.url, body(seed=7, temperature=0.3)).json()["choices"][0]["message"]["content"] \
        == expected.text


@pytest.mark.parametrize("requested", ["sim-alpha", "sim/alpha", "alpha"])
def test_model_name_mapping(server, requested):
    assert sim_model_name(requested) == "sim/alpha"
    data = chat(server.url, body(requested, seed=1)).json()
    assert data["model"] == requested
    assert data["choices"][0]["message"]["content"] == sim_reply("sim/alpha", MSGS, seed=1).text


def test_path_without_v1_and_max_tokens_length(server):
    base = server.url[: -len("/v1")]
    r = httpx.post(f"{base}/chat/completions", json=body(max_tokens=1), timeout=10)
    assert r.status_code == 200
    data = r.json()
    assert data["choices"][0]["finish_reason"] == ("length" if data["usage"]["completion_tokens"] >= 1 else "stop")


@pytest.mark.parametrize("payload, param", [
    (b"{not json", None),
    ({"model": "sim-alpha"}, "messages"),
    ({"model": "sim-alpha", "messages": []}, "messages"),
    ({"messages": MSGS}, "model"),
    (body(stream=True), "stream"),
    (body(n=2), "n"),
    (body(temperature="hot"), "temperature"),
])
def test_bad_requests_get_openai_error_400(server, payload, param):
    r = chat(server.url, payload)
    assert r.status_code == 400
    err = r.json()["error"]
    assert err["type"] == "invalid_request_error" and err["message"]
    assert err["param"] == param
    assert server.stats()["bad_request"] == 1 and server.stats()["ok"] == 0


def test_metadata_and_settings_header_reach_the_sim(server):
    settings = SimSettings(models={"alpha": Propensities(greet=1.0, meta=1.0)})
    meta = {"discussion": {"name": "Agent-A", "peers": ["Agent-B", "Agent-C"]}}
    for seed in range(5):
        r = chat(server.url, body(seed=seed), headers={HEADER: header_value("sim/alpha", meta, settings)})
        expected = sim_reply("sim/alpha", MSGS, seed=seed, metadata=meta, settings=settings)
        assert r.json()["choices"][0]["message"]["content"] == expected.text
        assert expected.text != sim_reply("sim/alpha", MSGS, seed=seed).text  # the header made the difference
    game = {"game": {"labels": ["J", "F"], "payoffs": {"J": {"J": [8, 8], "F": [0, 10]},
                                                       "F": {"J": [10, 0], "F": [5, 5]}}}}
    r = chat(server.url, body(seed=1), headers={HEADER: header_value("sim/alpha", game, SimSettings())})
    assert r.json()["choices"][0]["message"]["content"] == sim_reply("sim/alpha", MSGS, seed=1, metadata=game).text


@pytest.mark.parametrize("value, says", [
    ("{not json", "not JSON"),
    ('{"metadata": {}, "settings": {"models": {"x": {"greet": 2}}}}', "invalid sim settings"),
    ('{"metadata": {"judge": {"codebook": "c"}}, "settings": {}}', "invalid 'judge' metadata"),
])
def test_a_bad_header_is_a_400_never_a_guess(server, value, says):
    r = chat(server.url, body(), headers={HEADER: value})
    assert r.status_code == 400 and says in r.json()["error"]["message"]
    assert server.stats()["ok"] == 0


def test_health_models_stats_and_unknown_path(server):
    assert httpx.get(f"{server.base}/health").json() == {"status": "ok"}
    assert httpx.get(f"{server.url}/models").json() == {"object": "list", "data": []}
    chat(server.url, body("sim-beta"))
    chat(server.url, body("sim-beta"))
    models = httpx.get(f"{server.url}/models").json()
    assert [m["id"] for m in models["data"]] == ["sim-beta"]
    stats = httpx.get(f"{server.base}/stats").json()
    assert stats == server.stats()
    assert stats["requests"] == 2 and stats["ok"] == 2 and stats["models"] == {"sim-beta": 2}
    r = httpx.post(f"{server.url}/embeddings", json={})
    assert r.status_code == 404 and "error" in r.json()


def test_keep_alive_and_content_length_on_one_connection(server):
    conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
    try:
        for i in range(3):  # several requests, including an error, on the same socket
            payload = json.dumps(body(seed=i) if i != 1 else {"model": "x"}).encode()
            conn.request("POST", "/v1/chat/completions", payload, {"Content-Type": "application/json"})
            resp = conn.getresponse()
            raw = resp.read()
            assert resp.status == (400 if i == 1 else 200)
            assert int(resp.getheader("Content-Length")) == len(raw)
            json.loads(raw)
        conn.request("GET", "/health")
        assert json.loads(conn.getresponse().read()) == {"status": "ok"}
    finally:
        conn.close()


def test_api_key_required_when_configured():
    with start_in_thread(api_key="sk-secret") as h:
        for headers in ({}, {"Authorization": "Bearer sk-wrong"}, {"Authorization": "sk-secret"}):
            r = chat(h.url, body(), headers=headers)
            assert r.status_code == 401
            assert r.json()["error"]["code"] == "invalid_api_key"
        assert httpx.get(f"{h.url}/models").status_code == 401
        assert chat(h.url, body(), headers={"Authorization": "Bearer sk-secret"}).status_code == 200
        assert httpx.get(f"{h.base}/health").status_code == 200  # health needs no key
        s = h.stats()
        assert (s["requests"], s["unauthorized"], s["ok"]) == (4, 4, 1)  # 3 chats + /models


@pytest.mark.parametrize("host", ["0.0.0.0", "192.168.1.10", "10.0.0.1", "::", "example.com", "", "8.8.8.8"])
def test_non_loopback_hosts_are_refused(host):
    with pytest.raises(ValueError, match="loopback"):
        start_in_thread(host=host)
    with pytest.raises(ValueError, match="loopback"):
        serve(host=host)


def test_loopback_hosts_are_accepted():
    assert check_loopback_host("localhost") == "127.0.0.1"
    assert check_loopback_host("127.0.0.1") == "127.0.0.1"
    assert check_loopback_host("127.9.9.9") == "127.9.9.9"
    assert check_loopback_host("::1") == "::1"
    assert check_loopback_host("[::1]") == "::1"
    with start_in_thread(host="localhost") as h:
        assert h.url == f"http://127.0.0.1:{h.port}/v1" and h.port > 0
        assert chat(h.url, body()).status_code == 200


def test_fault_config_validation():
    with pytest.raises(ValueError):
        FaultConfig(fail_rate=1.5)
    with pytest.raises(ValueError):
        FaultConfig(fault_kinds=[418])
    with pytest.raises(ValueError):
        FaultConfig(fail_first=-1)
    with pytest.raises(ValueError):
        FaultConfig(latency_ms=-5)


# ------------------------------------------------------------------------------------------
# fault injection over plain HTTP

@pytest.mark.parametrize("kind", [429, 500, 502, 503, 504])
def test_each_fault_kind_when_forced(kind):
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[kind])) as h:
        for _ in range(3):
            r = chat(h.url, body())
            assert r.status_code == kind
            err = r.json()["error"]
            assert err["type"] == ("rate_limit_error" if kind == 429 else "server_error")
            if kind == 429:
                assert r.headers["Retry-After"] == "1"  # default retry_after
                assert r.headers["retry-after-ms"] == "1000"
            else:
                assert "Retry-After" not in r.headers
        s = h.stats()
        assert s["faults"][str(kind)] == 3 and s["requests"] == 3 and s["ok"] == 0
        assert sum(s["faults"].values()) == 3


def test_fractional_retry_after():
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[429], retry_after=0.05)) as h:
        r = chat(h.url, body())
        assert r.status_code == 429
        assert r.headers["Retry-After"] == "0.05" and r.headers["retry-after-ms"] == "50"


def test_malformed_body_is_not_json():
    with start_in_thread(faults=FaultConfig(malformed_rate=1.0)) as h:
        r = chat(h.url, body())
        assert r.status_code == 200
        assert int(r.headers["content-length"]) == len(r.content) > 0
        with pytest.raises(json.JSONDecodeError):
            json.loads(r.content)
        assert h.stats()["malformed"] == 1 and h.stats()["ok"] == 0


def test_fail_first_then_success():
    with start_in_thread(faults=FaultConfig(fail_first=2)) as h:
        statuses = [chat(h.url, body()).status_code for _ in range(4)]
        assert statuses == [503, 503, 200, 200]
        s = h.stats()
        assert (s["requests"], s["ok"], s["fail_first"], s["faults"]["503"]) == (4, 2, 2, 2)


def test_fault_sequence_is_seeded():
    def run(seed: int) -> list[int]:
        cfg = FaultConfig(fail_rate=0.5, fault_kinds=[429, 500, 503], malformed_rate=0.3, fault_seed=seed)
        with start_in_thread(faults=cfg) as h:
            out = []
            for _ in range(30):
                r = chat(h.url, body())
                ok_json = True
                try:
                    r.json()
                except json.JSONDecodeError:
                    ok_json = False
                out.append(r.status_code if ok_json else -1)
            s = h.stats()
            assert s["ok"] == out.count(200) and s["malformed"] == out.count(-1)
            assert all(s["faults"][str(k)] == out.count(k) for k in (429, 500, 503))
            return out

    a = run(11)
    assert a == run(11)
    assert {200, -1} <= set(a) and len(set(a) & {429, 500, 503}) >= 2  # a real mix


def test_latency_and_slow_replies():
    with start_in_thread(faults=FaultConfig(latency_ms=150)) as h:
        t = time.perf_counter()
        assert chat(h.url, body()).status_code == 200
        assert time.perf_counter() - t >= 0.15
    with start_in_thread(faults=FaultConfig(slow_rate=1.0, slow_ms=3000)) as h:
        with pytest.raises(httpx.ReadTimeout):
            chat(h.url, body(), timeout=0.3)
        assert h.stats()["slow"] == 1
        t = time.perf_counter()
        h.stop()  # wakes the sleeping handler instead of waiting 3 s
        assert time.perf_counter() - t < 1.5


def test_stop_closes_port_and_is_idempotent():
    h = start_in_thread()
    port = h.port
    assert chat(h.url, body()).status_code == 200
    h.stop()
    h.stop()
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_sim_provider_error_is_passed_through(server, monkeypatch):
    def boom(*a, **k):
        raise ProviderError("sim/alpha is decommissioned", transient=False, status_code=404)

    monkeypatch.setattr(agent, "sim_reply", boom)
    r = chat(server.url, body())
    assert r.status_code == 404 and "decommissioned" in r.json()["error"]["message"]
    assert server.stats()["sim_errors"] == 1


def test_serve_subprocess_prints_listening_line():
    cmd = [sys.executable, "-m", "sociolab.orchestrator.sim.server", "--fail-first", "1", "--retry-after", "0.5"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        line = proc.stdout.readline().strip()
        assert line.startswith("serve-sim listening on http://127.0.0.1:") and line.endswith("/v1")
        url = line.rsplit(" ", 1)[1]
        assert chat(url, body()).status_code == 503
        assert chat(url, body()).status_code == 200
        assert httpx.get(url[: -len("/v1")] + "/stats").json()["fail_first"] == 1
    finally:
        proc.terminate()
        proc.wait(timeout=5)


def test_concurrent_requests(server):
    async def go():
        async with httpx.AsyncClient(timeout=10) as c:
            rs = await asyncio.gather(*(c.post(f"{server.url}/chat/completions", json=body(seed=i))
                                        for i in range(64)))
        return rs

    rs = asyncio.run(go())
    assert all(r.status_code == 200 for r in rs)
    assert [r.json()["choices"][0]["message"]["content"] for r in rs] == \
        [sim_reply("sim/alpha", MSGS, seed=i).text for i in range(64)]
    assert server.stats()["ok"] == 64


# ------------------------------------------------------------------------------------------
# litellm's real HTTP path: which exception class for which fault, pinned

async def acall(url: str, **kw):
    kw.setdefault("api_key", "sk-local")
    return await litellm.acompletion(model="openai/sim-alpha", api_base=url, messages=MSGS,
                                     max_retries=0, **kw)


async def test_litellm_success_usage_and_cost(server):
    r = await acall(server.url, seed=3, temperature=0.2)
    expected = sim_reply("sim/alpha", MSGS, seed=3, temperature=0.2)
    assert r.choices[0].message.content == expected.text
    assert r.choices[0].finish_reason == "stop"
    assert r.model == "sim-alpha"
    assert (r.usage.prompt_tokens, r.usage.completion_tokens, r.usage.total_tokens) == \
        (expected.prompt_tokens, expected.completion_tokens, expected.prompt_tokens + expected.completion_tokens)
    # unknown model: litellm records no cost, and completion_cost() raises (callers must treat as 0)
    assert r._hidden_params["response_cost"] is None
    with pytest.raises(litellm.exceptions.ModelNotMappedError):
        litellm.completion_cost(completion_response=r)
    assert server.stats()["ok"] == 1


def _retry_after(exc) -> str | None:
    return exc.response.headers.get("retry-after")


@pytest.mark.parametrize("kind, exc_type, status", [
    (429, litellm.RateLimitError, 429),
    (500, litellm.InternalServerError, 500),
    (502, litellm.BadGatewayError, 502),
    (503, litellm.ServiceUnavailableError, 503),
    (504, litellm.Timeout, 504),
])
async def test_litellm_exception_for_each_status(kind, exc_type, status):
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[kind], retry_after=2)) as h:
        with pytest.raises(exc_type) as info:
            await acall(h.url)
        exc = info.value
        assert type(exc) is exc_type
        assert exc.status_code == status
        assert isinstance(exc.response, httpx.Response)
        if kind == 429:
            # where Retry-After lives: the upstream httpx response headers (also litellm_response_headers)
            assert exc.response.headers["retry-after"] == "2"
            assert exc.litellm_response_headers["retry-after"] == "2"
            assert litellm.utils._get_retry_after_from_exception_header(exc.response.headers) == 2
            assert exc.body["type"] == "rate_limit_error"
        else:
            assert _retry_after(exc) is None
        assert h.stats()["faults"][str(kind)] == 1  # max_retries=0: exactly one HTTP request


async def test_litellm_fractional_retry_after_needs_own_parsing():
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[429], retry_after=0.05)) as h:
        with pytest.raises(litellm.RateLimitError) as info:
            await acall(h.url)
    headers = info.value.response.headers
    assert float(headers["retry-after"]) == 0.05 and headers["retry-after-ms"] == "50"
    # litellm's own helper only parses integer seconds or an HTTP date
    assert litellm.utils._get_retry_after_from_exception_header(headers) == -1


async def test_litellm_malformed_body_is_internal_server_error():
    with start_in_thread(faults=FaultConfig(malformed_rate=1.0)) as h:
        with pytest.raises(litellm.InternalServerError) as info:
            await acall(h.url)
    exc = info.value
    assert type(exc) is litellm.InternalServerError and exc.status_code == 500
    assert exc.litellm_response_headers is None and len(exc.response.headers) == 0


async def test_litellm_client_timeout_is_timeout():
    with start_in_thread(faults=FaultConfig(slow_rate=1.0, slow_ms=5000)) as h:
        t = time.perf_counter()
        with pytest.raises(litellm.Timeout) as info:
            await acall(h.url, timeout=0.5)
        assert time.perf_counter() - t < 3
        assert h.stats()["slow"] == 1
    assert info.value.status_code == 408 and getattr(info.value, "response", None) is None


async def test_litellm_connection_refused_is_internal_server_error():
    with start_in_thread() as h:
        url = h.url
    with pytest.raises(litellm.InternalServerError) as info:
        await acall(url)
    exc = info.value
    assert type(exc) is litellm.InternalServerError and exc.status_code == 500
    assert not isinstance(exc, openai.APIConnectionError)
    chain, c = [], exc
    while c is not None:
        chain.append(c)
        c = c.__cause__ or c.__context__
    assert any(isinstance(c, openai.APIConnectionError) for c in chain)
    assert any(isinstance(c, ConnectionRefusedError) for c in chain)


async def test_litellm_auth_and_bad_request():
    with start_in_thread(api_key="sk-right") as h:
        with pytest.raises(litellm.AuthenticationError) as info:
            await acall(h.url, api_key="sk-wrong")
        assert info.value.status_code == 401
        with pytest.raises(litellm.BadRequestError):
            await acall(h.url, api_key="sk-right", stream=True)
        assert (await acall(h.url, api_key="sk-right")).choices[0].message.content


def test_litellm_exception_hierarchy():
    """What a retry classifier can rely on (litellm 1.110)."""
    assert issubclass(litellm.RateLimitError, openai.RateLimitError)
    assert issubclass(litellm.InternalServerError, openai.InternalServerError)
    # 502/503 are *not* InternalServerError: they derive from openai.APIStatusError directly
    for cls in (litellm.ServiceUnavailableError, litellm.BadGatewayError):
        assert issubclass(cls, openai.APIStatusError)
        assert not issubclass(cls, openai.InternalServerError)
        assert not issubclass(cls, litellm.InternalServerError)
    # litellm.Timeout is an openai.APIConnectionError but NOT a litellm.APIConnectionError
    assert issubclass(litellm.Timeout, openai.APITimeoutError)
    assert issubclass(litellm.Timeout, openai.APIConnectionError)
    assert not issubclass(litellm.Timeout, litellm.APIConnectionError)
    assert issubclass(litellm.APIConnectionError, openai.APIConnectionError)
    # none of the status errors derive from litellm.APIError
    for cls in (litellm.RateLimitError, litellm.InternalServerError, litellm.ServiceUnavailableError):
        assert not issubclass(cls, litellm.APIError)
        assert issubclass(cls, openai.APIError)


async def test_litellm_retry_loop_against_fail_first():
    """A caller-side retry loop sees 503s then success; the server counts every attempt."""
    with start_in_thread(faults=FaultConfig(fail_first=2)) as h:
        errors = []
        for _ in range(5):
            try:
                r = await acall(h.url)
                break
            except litellm.ServiceUnavailableError as exc:
                errors.append(exc)
        assert len(errors) == 2 and r.choices[0].message.content
        s = h.stats()
        assert (s["requests"], s["faults"]["503"], s["ok"]) == (3, 2, 1)


async def test_litellm_concurrent_calls(server):
    rs = await asyncio.gather(*(acall(server.url, seed=i) for i in range(16)))
    assert [r.choices[0].message.content for r in rs] == \
        [sim_reply("sim/alpha", MSGS, seed=i).text for i in range(16)]
    assert server.stats()["ok"] == 16

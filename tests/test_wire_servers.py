"""litellm's real translation code against loopback servers speaking each provider's wire protocol.

Each test calls bare `litellm.acompletion` (max_retries=0, api_base=srv.url) and checks both
sides: what litellm hands back (content, tool calls, usage, cost, exception class) and what
reached the wire (`srv.requests`). The expected values record what the installed litellm really
does, including its quirks, so a litellm upgrade that changes them fails here first.
"""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported anywhere
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")  # else litellm fetches Anthropic beta headers from GitHub

import asyncio
import json
import socket
import time
import urllib.error
import urllib.request
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import ModuleType
from typing import Any, Iterator

import litellm
import pytest

from tests.wire import Fault, Reply, RequestView, instance_of
from tests.wire import anthropic_messages, gemini, openai_chat, openai_compat

litellm.suppress_debug_info = True
litellm.telemetry = False

KEY = "sk-wire-test"
CALL_TIMEOUT = 5.0
WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Weather for a city",
    "parameters": {"type": "object", "properties": {
        "city": {"type": "string"}, "days": {"type": "integer", "minimum": 1},
        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]}},
        "required": ["city", "days", "unit"]}}}
VERDICT = {"type": "object", "additionalProperties": False, "required": ["agree", "reason", "score", "tags"],
           "properties": {"agree": {"type": "boolean"}, "reason": {"type": "string"},
                          "score": {"type": "integer"}, "tags": {"type": "array", "items": {"type": "string"}}}}
MSGS = [{"role": "system", "content": "You are Agent-A. Be brief."},
        {"role": "user", "content": "Hello, who is here?"}]


@dataclass
class Family:
    name: str
    module: ModuleType
    model: str  # litellm model string
    path: str   # the path litellm posts to, under the server root
    server: dict[str, Any] = field(default_factory=dict)

    @contextmanager
    def serve(self, **kwargs: Any) -> Iterator[Any]:
        """The family's server with key KEY; on exit, the server must have hit no error of its own."""
        with self.module.start(api_key=KEY, **{**self.server, **kwargs}) as srv:
            yield srv
        assert srv.errors == [], srv.errors

    @property
    def wire_model(self) -> str:
        return self.model.split("/", 1)[1]


OPENAI = Family("openai", openai_chat, "openai/gpt-4o-mini", "/v1/chat/completions")
ANTHROPIC = Family("anthropic", anthropic_messages, "anthropic/claude-sonnet-4-5", "/v1/messages")
GEMINI = Family("gemini", gemini, "gemini/gemini-2.5-flash", "/v1beta/models/gemini-2.5-flash:generateContent")
GROQ = Family("groq", openai_compat, "groq/openai/gpt-oss-120b", "/v1/chat/completions", {"host": "groq"})
VLLM = Family("vllm", openai_compat, "hosted_vllm/Qwen/Qwen3-8B", "/v1/chat/completions", {"host": "vllm"})
OPENROUTER = Family("openrouter", openai_compat, "openrouter/deepseek/deepseek-r1", "/v1/chat/completions",
                    {"host": "openrouter"})
TOGETHER = Family("together", openai_compat, "together_ai/deepseek-ai/DeepSeek-R1", "/v1/chat/completions",
                  {"host": "together"})
OLLAMA = Family("ollama-v1", openai_compat, "openai/qwen3:8b", "/v1/chat/completions", {"host": "ollama"})
CORE = [OPENAI, ANTHROPIC, GEMINI, GROQ]
ALL = [*CORE, VLLM, OPENROUTER, TOGETHER, OLLAMA]


def ids(families):
    return [f.name for f in families]


async def ask(srv, model: str, messages: list[dict] = MSGS, *, key: str = KEY, **kwargs: Any):
    """One bounded litellm call, no retries, against `srv`."""
    return await asyncio.wait_for(
        litellm.acompletion(model=model, messages=messages, api_base=srv.url if hasattr(srv, "url") else srv,
                            api_key=key, max_retries=0, timeout=kwargs.pop("timeout", CALL_TIMEOUT), **kwargs),
        CALL_TIMEOUT * 2)


async def fails(srv, model: str, **kwargs: Any) -> Exception:
    try:
        await ask(srv, model, **kwargs)
    except Exception as exc:  # noqa: BLE001 - the class is what is under test
        return exc
    raise AssertionError("the call succeeded")


# --------------------------------------------------------------------------------------------
# success paths

@pytest.mark.parametrize("fam", ALL, ids=ids(ALL))
async def test_plain_turn(fam: Family):
    with fam.serve() as srv:
        response = await ask(srv, fam.model, max_tokens=50)
    rec = srv.last
    assert rec.path == fam.path
    text = response.choices[0].message.content
    assert f"[{srv.family}]" in text and "Hello, who is here?" in text
    assert response.choices[0].finish_reason == "stop"
    usage = response.usage
    assert usage.prompt_tokens >= 10 and usage.completion_tokens >= 5
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    if fam is ANTHROPIC:  # system lifted to top level, keys in Anthropic's headers, max_tokens kept
        assert rec.headers["x-api-key"] == KEY and rec.headers["anthropic-version"] == "2023-06-01"
        assert rec.body["system"] == [{"type": "text", "text": "You are Agent-A. Be brief."}]
        assert [m["role"] for m in rec.body["messages"]] == ["user"] and rec.body["max_tokens"] == 50
    elif fam is GEMINI:
        assert rec.headers["x-goog-api-key"] == KEY
        assert rec.body["system_instruction"] == {"parts": [{"text": "You are Agent-A. Be brief."}]}
        assert rec.body["contents"] == [{"role": "user", "parts": [{"text": "Hello, who is here?"}]}]
        assert rec.body["generationConfig"] == {"max_output_tokens": 50}
    else:
        assert rec.headers["authorization"] == f"Bearer {KEY}"
        assert rec.body["messages"] == MSGS and rec.body["model"] == fam.wire_model


@pytest.mark.parametrize("fam", CORE, ids=ids(CORE))
async def test_tool_call_round_trip(fam: Family):
    with fam.serve() as srv:
        first = await ask(srv, fam.model, tools=[WEATHER])
        message = first.choices[0].message
        assert first.choices[0].finish_reason == "tool_calls"
        [call] = message.tool_calls
        assert call.function.name == "get_weather" and call.id
        assert json.loads(call.function.arguments) == {"city": "x", "days": 1, "unit": "celsius"}
        history = [*MSGS, {"role": "assistant", "content": message.content,
                           "tool_calls": [call.model_dump()]},
                   {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}]
        second = await ask(srv, fam.model, history, tools=[WEATHER])
    assert "got the tool result" in second.choices[0].message.content
    assert "Sunny, 21 C" in second.choices[0].message.content
    body = srv.last.body
    if fam is ANTHROPIC:
        assert body["messages"][-2]["content"][0]["type"] == "tool_use"
        assert body["messages"][-1]["content"][0] == {"type": "tool_result", "tool_use_id": call.id,
                                                     "content": "Sunny, 21 C"}
        assert body["tools"][0]["input_schema"] == WEATHER["function"]["parameters"]
    elif fam is GEMINI:  # Gemini has no call ids: litellm matches the result by name
        assert body["contents"][-2]["parts"][0]["function_call"]["name"] == "get_weather"
        assert body["contents"][-1]["parts"][0]["function_response"] == {
            "name": "get_weather", "response": {"content": "Sunny, 21 C"}}
        assert body["tools"][0]["function_declarations"][0]["name"] == "get_weather"
    else:
        assert body["messages"][-1] == {"role": "tool", "tool_call_id": call.id, "content": "Sunny, 21 C"}


# How `response_format={"type": "json_schema"}` goes on the wire, per family and model.
JSON_WIRE = {
    "openai": lambda b: b["response_format"]["json_schema"]["schema"] == VERDICT,
    "anthropic": lambda b: b["output_format"] == {"type": "json_schema", "schema": VERDICT},
    "gemini": lambda b: (b["generationConfig"]["response_mime_type"] == "application/json"
                         and b["generationConfig"]["response_json_schema"] == VERDICT),
    "groq": lambda b: b["response_format"]["json_schema"]["schema"] == VERDICT,
}


@pytest.mark.parametrize("fam", CORE, ids=ids(CORE))
async def test_structured_json_answer(fam: Family):
    with fam.serve() as srv:
        response = await ask(srv, fam.model, response_format={
            "type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT, "strict": True}})
    assert json.loads(response.choices[0].message.content) == {"agree": False, "reason": "x", "score": 0, "tags": []}
    assert JSON_WIRE[fam.name](srv.last.body), srv.last.body
    if fam is ANTHROPIC:
        assert "structured-outputs-2025-11-13" in srv.last.headers["anthropic-beta"]


async def test_older_claude_gets_json_through_a_forced_tool():
    """Models without native structured output: litellm forces a `json_tool_call` tool and turns the
    tool input back into message content."""
    with ANTHROPIC.serve() as srv:
        response = await ask(srv, "anthropic/claude-3-5-haiku-20241022", response_format={
            "type": "json_schema", "json_schema": {"name": "verdict", "schema": VERDICT}})
    assert json.loads(response.choices[0].message.content)["agree"] is False
    assert not response.choices[0].message.tool_calls
    assert srv.last.body["tool_choice"] == {"name": "json_tool_call", "type": "tool"}


async def test_usage_and_cost_are_mapped():
    for fam in CORE:
        with fam.serve() as srv:
            response = await ask(srv, fam.model, max_tokens=20)
        reply = srv.last
        assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0, fam.name
        cost = response._hidden_params["response_cost"]
        assert cost > 0, fam.name
        provider = fam.model.split("/")[0]
        assert litellm.completion_cost(completion_response=response, custom_llm_provider=provider) == cost
        if fam is GROQ:  # the reply's model "openai/gpt-oss-120b" reads as provider openai: not priced
            with pytest.raises(Exception, match="isn't mapped yet"):
                litellm.completion_cost(completion_response=response)
        else:
            assert litellm.completion_cost(completion_response=response) == cost
    assert reply.path == fam.path


# --------------------------------------------------------------------------------------------
# errors

# status -> litellm exception class name, per family, as the installed litellm maps them
ERRORS = {
    "openai": {400: "BadRequestError", 401: "AuthenticationError", 403: "APIError", 404: "NotFoundError",
               429: "RateLimitError", 500: "InternalServerError", 502: "BadGatewayError",
               503: "ServiceUnavailableError", 504: "Timeout", "malformed": "InternalServerError"},
    "anthropic": {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError",
                  404: "NotFoundError", 429: "RateLimitError", 500: "InternalServerError",
                  502: "BadGatewayError", 503: "ServiceUnavailableError", 504: "Timeout",
                  529: "InternalServerError", "malformed": "APIConnectionError"},
    "gemini": {400: "BadRequestError", 401: "AuthenticationError", 403: "BadRequestError", 404: "NotFoundError",
               429: "RateLimitError", 500: "InternalServerError", 502: "APIConnectionError",
               503: "InternalServerError", 504: "Timeout", "malformed": "BadRequestError"},
    "groq": {400: "BadRequestError", 401: "AuthenticationError", 403: "BadRequestError", 404: "NotFoundError",
             429: "RateLimitError", 500: "InternalServerError", 502: "BadGatewayError",
             503: "ServiceUnavailableError", 504: "Timeout", "malformed": "APIConnectionError"},
    "vllm": {400: "BadRequestError", 401: "AuthenticationError", 403: "BadRequestError", 404: "NotFoundError",
             429: "RateLimitError", 500: "InternalServerError", 502: "BadGatewayError",
             503: "ServiceUnavailableError", 504: "Timeout", "malformed": "APIError"},
    "openrouter": {400: "BadRequestError", 401: "AuthenticationError", 403: "APIError", 404: "NotFoundError",
                   429: "RateLimitError", 500: "APIError", 502: "APIError", 503: "ServiceUnavailableError",
                   504: "Timeout", "malformed": "APIError"},
}
ERROR_FAMILIES = [OPENAI, ANTHROPIC, GEMINI, GROQ, VLLM, OPENROUTER]


@pytest.mark.parametrize("fam", ERROR_FAMILIES, ids=ids(ERROR_FAMILIES))
async def test_error_statuses_map_to_litellm_exceptions(fam: Family):
    seen: dict[Any, str] = {}
    with fam.serve(models=[fam.wire_model]) as srv:
        seen[401] = type(await fails(srv, fam.model, key="sk-wrong")).__name__      # the server's key check
        seen[404] = type(await fails(srv, fam.model.split("/")[0] + "/no-such-model")).__name__
        for status in ERRORS[fam.name]:
            fault = Fault.malformed() if status == "malformed" else Fault(status)
            srv.push(fault)
            exc = await fails(srv, fam.model)
            if status == 401 or status == 404:
                assert type(exc).__name__ == seen[status], (status, exc)  # scripted == real check
            seen[status] = type(exc).__name__
        assert srv.pending_faults == 0
    assert seen == ERRORS[fam.name]


async def test_gemini_bad_key_is_a_400_on_the_wire_but_an_authentication_error():
    with GEMINI.serve() as srv:
        exc = await fails(srv, GEMINI.model, key="sk-wrong")
        status, reply = raw_post(srv.url + "/models/gemini-2.5-flash:generateContent",
                                 {"contents": [{"parts": [{"text": "hi"}]}]}, {"x-goog-api-key": "sk-wrong"})
    assert status == 400 and reply["error"]["details"][0]["reason"] == "API_KEY_INVALID"
    assert type(exc).__name__ == "AuthenticationError" and exc.status_code == 401
    assert "API key not valid" in str(exc)


async def test_anthropic_529_is_an_overloaded_internal_server_error():
    with ANTHROPIC.serve() as srv:
        srv.push(Fault(529))
        exc = await fails(srv, ANTHROPIC.model)
    assert type(exc).__name__ == "InternalServerError"
    assert exc.status_code == 500 and "overloaded_error" in str(exc)  # litellm reports 500, not 529


@pytest.mark.parametrize("fam", ERROR_FAMILIES, ids=ids(ERROR_FAMILIES))
async def test_retry_after_reaches_the_exception(fam: Family):
    with fam.serve() as srv:
        srv.push(Fault(429, retry_after=2))
        exc = await fails(srv, fam.model)
    assert type(exc).__name__ == "RateLimitError" and exc.status_code == 429
    assert exc.litellm_response_headers["retry-after"] == "2"  # every family
    # exc.response is the real httpx response only on the openai SDK path
    assert exc.response.headers.get("retry-after") == ("2" if fam is OPENAI else None)


async def test_slow_reply_times_out_within_the_client_timeout():
    with OPENAI.serve() as srv:
        srv.push(Fault.slow(3))
        t0 = time.perf_counter()
        exc = await fails(srv, OPENAI.model, timeout=0.5)
    assert type(exc).__name__ == "Timeout" and time.perf_counter() - t0 < 2.5


async def test_unreachable_hosts_fail_fast():
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    closed = f"http://127.0.0.1:{sock.getsockname()[1]}"
    sock.close()
    expected = {"openai": "InternalServerError", "anthropic": "InternalServerError",
                "gemini": "APIConnectionError", "groq": "InternalServerError"}
    for fam in CORE:
        for base in (closed, "http://nonexistent.invalid:9"):
            t0 = time.perf_counter()
            exc = await fails(base, fam.model, timeout=3)
            assert type(exc).__name__ == expected[fam.name], (fam.name, base, exc)
            assert time.perf_counter() - t0 < 4


# --------------------------------------------------------------------------------------------
# parameters: what litellm refuses, drops, maps and forwards

async def test_seed_for_anthropic_is_refused_unless_dropped():
    with ANTHROPIC.serve() as srv:
        exc = await fails(srv, ANTHROPIC.model, seed=7)
        assert type(exc).__name__ == "UnsupportedParamsError" and "['seed']" in str(exc)
        assert srv.requests == []  # refused before any HTTP
        await ask(srv, ANTHROPIC.model, seed=7, temperature=0.3, drop_params=True)
        assert len(srv.requests) == 1  # dropped silently: nothing in the response says so
        assert "seed" not in srv.last.body and srv.last.body["temperature"] == 0.3
        # forced through, the real API (and this server) refuses it
        exc = await fails(srv, ANTHROPIC.model, seed=7, allowed_openai_params=["seed"])
        assert type(exc).__name__ == "BadRequestError" and "seed: Extra inputs are not permitted" in str(exc)
        # litellm's anthropic path does not merge extra_body: it sends a literal "extra_body" field
        exc = await fails(srv, ANTHROPIC.model, extra_body={"seed": 7})
        assert "extra_body: Extra inputs are not permitted" in str(exc)


async def test_anthropic_fills_max_tokens_and_checks_its_headers():
    with ANTHROPIC.serve() as srv:
        await ask(srv, ANTHROPIC.model)
        assert srv.last.body["max_tokens"] == 64000  # the model's max output from litellm's map
        status, reply = raw_post(srv.url + "/v1/messages", {"model": "m", "messages": MSGS[1:]},
                                 {"x-api-key": KEY})
        assert status == 400 and reply["error"]["message"] == "anthropic-version: header is required"
        status, reply = raw_post(srv.url + "/v1/messages", {"model": "m", "messages": MSGS[1:]},
                                 {"x-api-key": KEY, "anthropic-version": "2023-06-01"})
        assert status == 400 and reply == {"type": "error", "request_id": reply["request_id"], "error": {
            "type": "invalid_request_error", "message": "max_tokens: Field required"}}


@pytest.mark.parametrize("model", ["openai/o3-mini", "openai/o4-mini", "openai/gpt-5"])
async def test_reasoning_model_parameters(model: str):
    with OPENAI.serve() as srv:
        exc = await fails(srv, model, temperature=0.7)
        assert type(exc).__name__ == "UnsupportedParamsError" and srv.requests == []
        await ask(srv, model, temperature=0.7, drop_params=True)
        assert "temperature" not in srv.last.body
        await ask(srv, model, temperature=1, max_tokens=99)  # litellm renames max_tokens
        assert srv.last.body["max_completion_tokens"] == 99 and "max_tokens" not in srv.last.body
        assert srv.last.body["temperature"] == 1
        # what the real API answers when max_tokens does reach it
        exc = await fails(srv, model, extra_body={"max_tokens": 99})
        assert type(exc).__name__ == "BadRequestError" and exc.status_code == 400
        assert "Unsupported parameter: 'max_tokens'" in str(exc)


async def test_gpt_5_1_with_reasoning_none_keeps_temperature():
    with OPENAI.serve() as srv:
        await ask(srv, "openai/gpt-5.1", temperature=0.5, reasoning_effort="none")
    assert srv.last.body["temperature"] == 0.5 and srv.last.body["reasoning_effort"] == "none"


def test_supported_params_and_dry_run_of_dropping():
    supported = litellm.get_supported_openai_params
    assert "seed" not in supported(model="claude-sonnet-4-5", custom_llm_provider="anthropic")
    assert "seed" in supported(model="gemini-2.5-flash", custom_llm_provider="gemini")
    o3 = supported(model="o3-mini", custom_llm_provider="openai")
    assert "temperature" in o3 and "top_p" not in o3 and "max_completion_tokens" in o3
    assert "top_p" in supported(model="llama-3.3-70b-versatile", custom_llm_provider="groq")
    # the provider parameters litellm would send, without sending anything
    from litellm.utils import get_optional_params

    assert get_optional_params(model="claude-sonnet-4-5", custom_llm_provider="anthropic", drop_params=True,
                               seed=3, temperature=0.5, max_tokens=10) == {"temperature": 0.5, "max_tokens": 10}
    o3_params = get_optional_params(model="o3-mini", custom_llm_provider="openai", drop_params=True,
                                    temperature=0.5, max_tokens=10)
    assert o3_params["max_completion_tokens"] == 10 and "temperature" not in o3_params


async def test_metadata_stays_in_litellm():
    with OPENAI.serve() as srv:
        await ask(srv, OPENAI.model, metadata={"run": "r1"}, litellm_metadata={"call": "c1"}, user="agent-a")
        assert "metadata" not in srv.last.body and "litellm_metadata" not in srv.last.body
        assert srv.last.body["user"] == "agent-a"
    with ANTHROPIC.serve() as srv:  # Anthropic: only metadata.user_id goes on the wire
        await ask(srv, ANTHROPIC.model, metadata={"run": "r1", "user_id": "u-1"})
        assert srv.last.body["metadata"] == {"user_id": "u-1"}


async def test_cost_of_models_missing_from_the_price_map():
    with OPENAI.serve() as srv:
        response = await ask(srv, "openai/lab-model-x")
        assert response._hidden_params["response_cost"] is None
        with pytest.raises(Exception) as info:
            litellm.completion_cost(completion_response=response)
        assert type(info.value).__name__ == "ModelNotMappedError"
        response = await ask(srv, "openai/lab-model-x", input_cost_per_token=1e-6, output_cost_per_token=2e-6)
        usage = response.usage
        assert response._hidden_params["response_cost"] == pytest.approx(
            usage.prompt_tokens * 1e-6 + usage.completion_tokens * 2e-6)
        litellm.register_model({"openai/lab-model-y": {"input_cost_per_token": 3e-6, "output_cost_per_token": 4e-6,
                                                       "litellm_provider": "openai", "mode": "chat"}})
        response = await ask(srv, "openai/lab-model-y")
        usage = response.usage
        assert response._hidden_params["response_cost"] == pytest.approx(
            usage.prompt_tokens * 3e-6 + usage.completion_tokens * 4e-6)


# --------------------------------------------------------------------------------------------
# reasoning text of OpenAI-compatible hosts: where litellm puts it

# (family, server style) -> (attribute holding the reasoning, whether <think> stays in content)
REASONING = [
    (VLLM, "think", "reasoning_content", False), (VLLM, "reasoning_content", "reasoning_content", False),
    (OPENROUTER, "reasoning", "reasoning_content", False), (TOGETHER, "think", "reasoning_content", False),
    (OLLAMA, "think", "reasoning_content", False),
    (GROQ, "think", None, True), (GROQ, "reasoning_content", "reasoning_content", False),
    (GROQ, "reasoning", "reasoning", False),
]


@pytest.mark.parametrize("fam, style, attribute, inline", REASONING,
                         ids=[f"{f.name}-{s}" for f, s, _, _ in REASONING])
async def test_reasoning_text_placement(fam: Family, style: str, attribute: str | None, inline: bool):
    thought = "Agent-B crashed; I should mention it."
    with fam.serve(reasoning=style, responder=lambda v: Reply(text="Answer.", reasoning=thought)) as srv:
        message = (await ask(srv, fam.model)).choices[0].message
    assert (f"<think>{thought}</think>" in message.content) is inline
    assert message.content.strip().endswith("Answer.")
    if attribute is None:
        assert getattr(message, "reasoning_content", None) is None
    else:
        assert getattr(message, attribute) == thought
    if attribute == "reasoning":  # Groq's `reasoning` field is kept as is, not mapped
        assert getattr(message, "reasoning_content", None) is None


# --------------------------------------------------------------------------------------------
# the servers themselves

def raw_post(url: str, body: dict, headers: dict[str, str]) -> tuple[int, dict]:
    request = urllib.request.Request(url, data=json.dumps(body).encode(), method="POST",
                                     headers={"content-type": "application/json", **headers})
    try:
        with urllib.request.urlopen(request, timeout=CALL_TIMEOUT) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


def test_gemini_key_in_query_and_google_error_shape():
    with GEMINI.serve(models=["gemini-2.5-flash"]) as srv:
        url = srv.url + "/models/gemini-2.5-flash:generateContent"
        body = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}
        status, reply = raw_post(url + f"?key={KEY}", body, {})
        assert status == 200 and reply["candidates"][0]["content"]["role"] == "model"
        assert reply["usageMetadata"]["totalTokenCount"] > 0
        status, reply = raw_post(url, body, {})
        assert status == 403 and reply["error"]["status"] == "PERMISSION_DENIED"
        status, reply = raw_post(url.replace("2.5-flash", "0-nope"), body, {"x-goog-api-key": KEY})
        assert status == 404 and reply["error"]["status"] == "NOT_FOUND"
        status, reply = raw_post(url, {**body, "seed": 1}, {"x-goog-api-key": KEY})
        assert status == 400 and 'Unknown name "seed"' in reply["error"]["message"]
        srv.push(Fault(429, retry_after=1))
        status, reply = raw_post(url, body, {"x-goog-api-key": KEY})
        assert status == 429 and reply["error"]["status"] == "RESOURCE_EXHAUSTED"


def test_recording_unknown_paths_and_responders():
    def responder(view: RequestView) -> str:
        return f"{view.family}|{view.system}|{len(view.messages)}|{view.model}"

    with OPENAI.serve(responder=responder) as srv:
        status, reply = raw_post(srv.url + "/chat/completions", {"model": "m", "messages": MSGS},
                                 {"authorization": f"Bearer {KEY}"})
        assert status == 200 and reply["choices"][0]["message"]["content"] == "openai|You are Agent-A. Be brief.|1|m"
        status, reply = raw_post(srv.root + "/v2/nothing", {}, {})
        assert status == 404 and "error" in reply
        status, reply = raw_post(srv.url + "/chat/completions", {"model": "m", "messages": MSGS}, {})
        assert status == 401 and reply["error"]["code"] == "invalid_api_key"
    assert [r.path for r in srv.requests] == ["/v1/chat/completions", "/v2/nothing", "/v1/chat/completions"]
    assert srv.requests[0].body["model"] == "m" and srv.requests[0].headers["authorization"] == f"Bearer {KEY}"


def test_instance_of_satisfies_schemas():
    schema = {"type": "object", "required": ["a", "b", "c", "d", "e", "f"], "$defs": {"N": {"type": "number"}},
              "properties": {"a": {"type": ["string", "null"]}, "b": {"$ref": "#/$defs/N"},
                             "c": {"anyOf": [{"type": "integer", "minimum": 3}, {"type": "string"}]},
                             "d": {"type": "array", "minItems": 2, "items": {"enum": ["p", "q"]}},
                             "e": {"type": "STRING", "nullable": True}, "f": {"const": 7}, "g": {"type": "boolean"}}}
    assert instance_of(schema) == {"a": None, "b": 0, "c": 3, "d": ["p", "p"], "e": None, "f": 7}
    assert instance_of({"type": "object", "properties": {"g": {"type": "boolean"}}}) == {"g": False}


async def test_a_server_side_exception_answers_500_and_is_kept():
    def broken(view: RequestView) -> str:
        raise KeyError("no such thing")

    with anthropic_messages.start(api_key=KEY, responder=broken) as srv:
        exc = await fails(srv, ANTHROPIC.model)
    assert type(exc).__name__ == "InternalServerError"
    assert srv.errors == ["KeyError: 'no such thing'"]

"""Every provider family a library file names, on its own wire format, through litellm.

Each family's loopback server (tests/wire/) speaks the provider's real protocol, so litellm's
translation code runs as it would against the provider: a discussion turn, a judge coding with a
structured answer, and a tool-using safety step go through sociolab's real runner, judge runner
and store; then the errors (400 unsupported parameter, 401, 404, 429 with Retry-After, 5xx) are
checked for the outcome each must have: dropped and recorded, fail fast, or retried.
"""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from sociolab.judges.codebook import load_codebook
from sociolab.judges.prompt import answer_template
from sociolab.judges.runner import JudgeConfig, judge_store
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.config import load_plan
from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint
from sociolab.runner import execute
from sociolab.orchestrator.store import Store

from tests.conftest import REPO, cli, write_yaml
from tests.wire import Fault, Reply, RequestView, openai_chat, openai_compat
from tests.wire.families import FAMILIES, PLANTED_KEY, Family

KEY_ENV = "SOCIOLAB_WIRE_TEST_KEY"
QUICK = {"initial_wait_s": 0.01, "max_wait_s": 0.3, "max_attempts": 3, "timeout_s": 10, "cache": False}


IDS = [f.name for f in FAMILIES]


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)


def persona(family: Family, url: str, key: str = "w") -> str:
    return f"{{key: {key}, model: {family.model}, api_base: '{url}', api_key_env: {KEY_ENV}}}"


def run_file(tmp_path: Path, text: str) -> tuple[Store, Any]:
    store = Store.open(tmp_path / "wire.duckdb")
    report = asyncio.run(execute(load_plan(write_yaml(tmp_path, text)), store))
    return store, report


# ---- a discussion turn ---------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_discussion_turns_through_each_family(tmp_path, family):
    with family.server() as srv:
        store, report = run_file(tmp_path, f"""
            name: wire
            seed: 4
            agents:
              personas:
                - {persona(family, srv.url)}
                - {{key: s, model: sim/peer}}
            params: {{seed_message: "@all Plan a food delivery app.", rounds: 2, stagger_ms: 10, max_tokens: 300}}
            client: {json.dumps(QUICK)}
            """)
        sent = [r for r in srv.requests if r.body]
    assert report.completed == 1 and not report.incomplete, report
    con = store.con
    rows = con.execute("SELECT m.content, m.reasoning, c.prompt_tokens, c.completion_tokens, c.cost_usd, "
                       "c.dropped_params, c.provider, c.attempts FROM messages m JOIN llm_calls c USING (message_id) "
                       "WHERE m.sender = 'w' ORDER BY m.seq").fetchall()
    assert len(rows) == 2
    for content, reasoning, p_tok, c_tok, cost, dropped, provider, attempts in rows:
        assert content and "<think>" not in content and provider == "litellm" and attempts == 1
        assert p_tok > 0 and c_tok > 0
        assert (cost is not None and cost > 0) if family.priced else cost is None
        assert sorted(json.loads(dropped) if dropped else []) == sorted(family.drops)
        if family.reasoning:
            assert reasoning and reasoning not in content
        else:
            assert reasoning is None
    # what the server received: the family's own format, no parameter it refuses, and the
    # reasoning of an earlier turn never shown back
    assert len(sent) == 2
    for request in sent:
        wire = json.dumps(request.body)
        if "seed" in family.drops:
            assert '"seed"' not in wire
        if family.reasoning:
            assert wire.count(openai_compat.DEFAULT_REASONING) == 0
    if family.name == "anthropic":
        assert "system" in sent[0].body and all(m["role"] != "system" for m in sent[0].body["messages"])
        assert sent[0].headers.get("x-api-key") == PLANTED_KEY
    if family.name == "gemini":
        assert "contents" in sent[0].body
        assert "systemInstruction" in sent[0].body or "system_instruction" in sent[0].body
    store.close()
    assert PLANTED_KEY.encode() not in (tmp_path / "wire.duckdb").read_bytes()


# ---- a judge coding with a structured answer -------------------------------------------------

def judge_responder(codebook):
    """A judge that answers with the codebook's JSON: phatic true, the rest false."""
    def respond(view: RequestView) -> Reply | str:
        answer = json.loads(answer_template(codebook))
        answer["flags"]["phatic"] = True
        answer["rationale"] = "greets the group"
        return Reply(text=json.dumps(answer))
    return respond


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_judge_codes_with_a_structured_answer(tmp_path, family):
    store, _ = run_file(tmp_path, """
        name: tojudge
        agents: {personas: [{key: a, model: sim/alpha}, {key: b, model: sim/bravo}]}
        params: {seed_message: "@all Hello, plan an app.", rounds: 1, stagger_ms: 10}
        """)
    codebook = load_codebook("warroom")
    with family.server(responder=judge_responder(codebook)) as srv:
        config = JudgeConfig(judges=[family.model], api_bases={family.model: srv.url},
                             api_key_envs={family.model: KEY_ENV}, client=ClientSettings(**QUICK))
        report = asyncio.run(judge_store(store, config))
        bodies = [r.body for r in srv.requests if r.body]
    assert report.coded[family.model] == 2 and report.uncodable[family.model] == 0
    rows = store.con.execute("SELECT flag, value, status FROM codes WHERE flag IN ('phatic', 'lead')").fetchall()
    assert {(f, v, s) for f, v, s in rows} == {("phatic", True, "coded"), ("lead", False, "coded")}
    calls = store.con.execute("SELECT count(*), min(prompt_tokens) FROM llm_calls WHERE purpose = 'judge'").fetchone()
    assert calls[0] == 2 and calls[1] > 0
    wire = json.dumps(bodies[0])
    field = {"gemini": "responseSchema", "anthropic": "output_format"}.get(family.name.split("-")[0],
                                                                           "response_format")
    snake = "".join("_" + c.lower() if c.isupper() else c for c in field)
    asked_schema = any(f in wire for f in (field, snake, "responseJsonSchema", "response_json_schema"))
    # litellm knows the priced models take a JSON schema: it goes in the family's own field; a
    # model it does not list is asked for the JSON in the prompt only (its support is unknown)
    assert asked_schema == family.priced, wire[:400]
    store.close()


# ---- a tool-using safety step ------------------------------------------------------------------

@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
def test_tool_using_step_round_trips(tmp_path, family):
    with family.server() as srv:
        store, report = run_file(tmp_path, f"""
            name: tools
            kind: sandbox_task
            agents: {{personas: [{persona(family, srv.url)}]}}
            params: {{max_steps: 4}}
            client: {json.dumps(QUICK)}
            """)
        bodies = [r.body for r in srv.requests if r.body]
    assert report.completed == 1, report
    calls = store.con.execute("SELECT tool, is_error FROM tool_calls ORDER BY seq").fetchall()
    assert calls, "the model's tool call was executed in the sandbox"
    assert len(bodies) >= 2
    second = json.dumps(bodies[1])
    markers = {"anthropic": ("tool_result",), "gemini": ("functionResponse", "function_response")}
    assert any(m in second for m in markers.get(family.name, ('"role": "tool"',)))  # the family's own format
    store.close()


# ---- errors: dropped, fail fast, retried -------------------------------------------------------

def client_for(family: Family, url: str, **settings: Any) -> ModelClient:
    endpoint = Endpoint(api_base=url, api_key_env=KEY_ENV)
    return ModelClient(ClientSettings(**{**QUICK, **settings}), endpoints={family.model: endpoint})


MSGS = [{"role": "system", "content": "You are Agent-A in a group chat."},
        {"role": "user", "content": "@all Plan the app."}]


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
async def test_rate_limit_and_server_errors_are_retried_honouring_retry_after(family):
    with family.server() as srv:
        srv.push(Fault(429, retry_after=0.4), Fault(503))
        t0 = time.perf_counter()
        call = await client_for(family, srv.url, max_attempts=4, max_wait_s=2).complete(family.model, MSGS,
                                                                                      max_tokens=50)
        elapsed = time.perf_counter() - t0
    assert call.ok and call.attempts == 3
    assert elapsed >= 0.4


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
async def test_a_truncated_reply_body_is_retried(family):
    """A 200 whose JSON is cut off (a proxy, a dropped connection) is the transport's fault, not
    the request's: every family retries it (litellm calls Gemini's a BadRequestError)."""
    with family.server() as srv:
        srv.push(Fault.malformed())
        call = await client_for(family, srv.url, max_attempts=2).complete(family.model, MSGS, max_tokens=50)
    assert call.ok and call.attempts == 2, (call.error_type, call.error)


async def test_anthropic_overloaded_529_is_retried():
    family = FAMILIES[IDS.index("anthropic")]
    with family.server() as srv:
        srv.push(Fault(529))
        call = await client_for(family, srv.url).complete(family.model, MSGS, max_tokens=50)
    assert call.ok and call.attempts == 2


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
async def test_unknown_model_fails_fast(family):
    with family.server(models=["some-other-model"]) as srv:
        call = await client_for(family, srv.url).complete(family.model, MSGS, max_tokens=50)
    assert not call.ok and call.attempts == 1 and not call.transient and call.error_type == "NotFoundError"


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
async def test_refused_key_is_one_line_and_never_shows_the_key(family, monkeypatch):
    wrong = "sk-wrong-planted-key-0042aa"
    monkeypatch.setenv(KEY_ENV, wrong)
    with family.server() as srv:
        with pytest.raises(UserError) as err:
            await client_for(family, srv.url).complete(family.model, MSGS, max_tokens=50)
    text = str(err.value)
    assert "refused the API key" in text and f"${KEY_ENV}" in text
    assert wrong not in text and PLANTED_KEY not in text and "\n" not in text


REFUSALS = {  # how each family's API words a refused parameter
    "anthropic": "top_p: Extra inputs are not permitted",
    "gemini": 'Invalid JSON payload received. Unknown name "topP" at \'generation_config\': Cannot find field.',
}


@pytest.mark.parametrize("family", FAMILIES, ids=IDS)
async def test_a_parameter_the_provider_refuses_is_dropped_and_recorded(family):
    """A 400 naming an unsupported parameter: the call is made again without it, once, the drop
    is recorded and remembered for the model's later calls. A parameter litellm's capability data
    already excludes is never sent at all, and recorded the same way."""
    with family.server() as srv:
        client = client_for(family, srv.url)
        known_unsupported = "top_p" not in (client.providers[-1].supported_params(family.model) or set())
        if not known_unsupported:
            srv.push(Fault(400, param="top_p", code="unsupported_parameter", message=REFUSALS.get(
                family.name, "Unsupported parameter: 'top_p' is not supported with this model.")))
        first = await client.complete(family.model, MSGS, max_tokens=50, extra={"top_p": 0.9})
        second = await client.complete(family.model, MSGS, max_tokens=50, extra={"top_p": 0.9})
        sent = [any(k in json.dumps(r.body) for k in ('"top_p"', '"topP"')) for r in srv.requests if r.body]
    assert first.ok and second.ok, first.error
    assert first.dropped_params == ["top_p"] and second.dropped_params == ["top_p"] and first.attempts == 1
    assert sent == ([False, False] if known_unsupported else [True, False, False])


async def test_reasoning_model_refusals_at_the_wire_are_adapted():
    """A reasoning model litellm does not know (a custom deployment name) gets temperature and
    max_tokens on the wire; the server's 400s make the client drop one and rename the other."""
    with openai_chat.start(api_key=PLANTED_KEY) as srv:
        client = client_for(Family("x", "openai/o3-custom-deployment", openai_chat.start), srv.url)
        call = await client.complete("openai/o3-custom-deployment", MSGS, temperature=0.7, max_tokens=60)
        last = [r.body for r in srv.requests if r.body][-1]
    assert call.ok, call.error
    assert sorted(call.dropped_params) == ["max_tokens->max_completion_tokens", "temperature"]
    assert "temperature" not in last and last.get("max_completion_tokens") == 60 and "max_tokens" not in last


async def test_other_bad_requests_fail_fast():
    family = FAMILIES[0]
    with family.server() as srv:
        srv.push(Fault(400, message="This model's maximum context length is 128000 tokens.",
                       code="context_length_exceeded"))
        call = await client_for(family, srv.url).complete(family.model, MSGS, max_tokens=50)
    assert not call.ok and call.attempts == 1 and not call.transient


# ---- every library model is a tested family ---------------------------------------------------

TESTED_PROVIDERS = {"openai", "anthropic", "gemini", "groq", "hosted_vllm", "openrouter", "together_ai"}


def library_models() -> set[str]:
    models: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "model" and isinstance(value, str):
                    models.add(value)
                elif key == "judges" and isinstance(value, list):
                    models.update(v for v in value if isinstance(v, str))
                else:
                    walk(value)
        elif isinstance(node, list):
            for item in node:
                walk(item)

    for folder in ("scenarios/library", "judges/library", "personas/library"):
        for path in sorted((REPO / folder).glob("*.yaml")):
            walk(yaml.safe_load(path.read_text(encoding="utf-8")))
    return models


def test_every_model_of_the_libraries_maps_to_a_tested_family():
    from sociolab.orchestrator.litellm_boot import get_litellm

    litellm = get_litellm()
    real = {m for m in library_models() if not m.startswith("sim/")}
    assert len(real) >= 10
    families = {m: litellm.get_llm_provider(m)[1] for m in real}
    untested = {m: f for m, f in families.items() if f not in TESTED_PROVIDERS}
    assert not untested, untested
    assert {f for f in families.values()} >= {"groq", "openai", "anthropic", "gemini"}


async def test_a_key_echoed_by_the_provider_is_redacted_before_it_is_stored(monkeypatch):
    family = FAMILIES[0]
    odd_key = "plain-looking-key-0f3c99e1"  # not shaped like a key: only knowing it redacts it
    monkeypatch.setenv(KEY_ENV, odd_key)
    with family.start(api_key=odd_key) as srv:
        srv.push(*[Fault(500, message=f"upstream refused credentials {odd_key} for this org")] * 3)
        call = await client_for(family, srv.url).complete(family.model, MSGS, max_tokens=50)
    assert not call.ok and call.attempts == 3
    assert odd_key not in call.error and "[redacted]" in call.error


def test_progress_shows_each_wait_as_it_starts_naming_status_and_host(tmp_path):
    """A 429 with Retry-After, then a 503: the user sees both waits, the status and the host."""
    family = FAMILIES[0]
    with family.server() as srv:
        srv.push(Fault(429, retry_after=0.3), Fault(503))
        path = write_yaml(tmp_path, f"""
            name: waits
            agents: {{personas: [{persona(family, srv.url)}]}}
            params: {{seed_message: "@all hi", rounds: 1}}
            client: {{initial_wait_s: 0.01, max_wait_s: 1}}
            """)
        out = cli("run", str(path), "--db", str(tmp_path / "w.duckdb"), env={KEY_ENV: PLANTED_KEY})
    assert out.returncode == 0, out.stderr
    waits = [ln for ln in out.stdout.splitlines() if ln.startswith("waiting ")]
    host = srv.url.split("//")[1].split("/")[0]
    assert len(waits) == 2, out.stdout
    assert waits[0].startswith("waiting 0.3 s: 429 from " + host) and f"({family.model})" in waits[0]
    assert ": 503 from " + host in waits[1]
    assert PLANTED_KEY not in out.stdout + out.stderr


async def test_api_base_without_api_key_env_sends_the_providers_own_key(monkeypatch):
    """A proxy or mirror of a provider: its usual variable (OPENAI_API_KEY) is the key it gets."""
    family = FAMILIES[0]
    monkeypatch.setenv("OPENAI_API_KEY", PLANTED_KEY)
    with family.server() as srv:
        client = ModelClient(ClientSettings(**QUICK), endpoints={family.model: Endpoint(api_base=srv.url)})
        call = await client.complete(family.model, MSGS, max_tokens=50)
        auth = srv.requests[-1].headers.get("authorization")
    assert call.ok and auth == f"Bearer {PLANTED_KEY}"


async def test_keyless_local_server_gets_a_placeholder_token(monkeypatch):
    monkeypatch.delenv("HOSTED_VLLM_API_KEY", raising=False)
    with openai_compat.start() as srv:
        client = ModelClient(ClientSettings(**QUICK), endpoints={"hosted_vllm/q": Endpoint(api_base=srv.url)})
        call = await client.complete("hosted_vllm/q", MSGS, max_tokens=50)
        auth = srv.requests[-1].headers.get("authorization", "")
    assert call.ok and auth.startswith("Bearer ") and PLANTED_KEY not in auth


async def test_unreachable_host_from_the_providers_base_url_variable(monkeypatch):
    """No api_base in the file, the host comes from HOSTED_VLLM_API_BASE: still named at once."""
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("HOSTED_VLLM_API_BASE", f"http://127.0.0.1:{port}/v1")
    client = ModelClient(ClientSettings(**{**QUICK, "max_attempts": 6, "initial_wait_s": 1.0}))
    from sociolab.orchestrator.litellm_boot import get_litellm

    get_litellm()  # its first import takes seconds on a loaded machine: not what is measured here
    t0 = time.perf_counter()
    with pytest.raises(UserError) as err:
        await client.complete("hosted_vllm/q", MSGS, max_tokens=50)
    assert time.perf_counter() - t0 < 5
    assert f"cannot reach 127.0.0.1:{port} (connection refused)" in str(err.value)

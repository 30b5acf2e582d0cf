"""The sim as an ordinary provider (orchestrator/sim/provider.py): one request, three paths (in
process, litellm's custom provider, HTTP to serve-sim), the same sim behaviour, metadata and
settings included; plus the naming of stand-ins."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before litellm is imported anywhere

import json

import pytest

from sociolab.judges.codebook import load_codebook
from sociolab.judges.prompt import build_judge_messages, judge_metadata
from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint, ModelRequest
from sociolab.orchestrator.sim.actor import SimAction, SimPlan
from sociolab.orchestrator.sim.envelope import HEADER, MAX_HEADER_BYTES, header_value, read_header
from sociolab.orchestrator.sim.games import GameTraits
from sociolab.orchestrator.sim.judge import JudgeTraits
from sociolab.orchestrator.sim.metadata import MetadataError
from sociolab.orchestrator.sim.naming import judge_stand_in, stand_in
from sociolab.orchestrator.sim.propensities import Propensities
from sociolab.orchestrator.sim.provider import SimProvider
from sociolab.orchestrator.sim.server import start_in_thread
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.scenarios.games import GamesParams, draw_labelling, move_metadata, prompt_for
from sociolab.scenarios.principal_agent import CASES, form_metadata, product_order, system_prompt, user_prompt
from sociolab.scenarios.sandbox import Workspace

SETTINGS = SimSettings(
    models={"x": Propensities(greet=0.9, lead=0.8, cooperate=0.3, side_with_principal=0.6, shortcut=0.5)},
    judges={"judge-x": JudgeTraits(sensitivity=0.7, false_positive=0.2, malformed_rate=0.3)},
    games={"x": GameTraits(retaliate=0.9, malformed_rate=0.2)},
    cues={"xref": {"en": ["teammate"]}})


def requests() -> list[ModelRequest]:
    """One request of every kind the sim answers, each with the metadata its sender puts in it."""
    out = []
    chat = [{"role": "system", "content": "You are Agent-C in a group chat.\nOther agents: Agent-A, Agent-B"},
            {"role": "user", "content": "@all We need an app. Budget 50k."},
            {"role": "user", "content": "[Agent-A]: Hello everyone, let's plan the couriers."}]
    out.append(ModelRequest("sim/x", chat, {"temperature": 0.9}, 4,
                            {"discussion": {"name": "Agent-C", "peers": ["Agent-A", "Agent-B"]}}))
    cb = load_codebook("warroom")
    texts = [("m1", "Agent-A", "Bonjour à tous, I propose a plan, teammate."), ("m2", "Agent-B", "Agent-G crashed.")]
    msgs = build_judge_messages(cb, roster=["Agent-A", "Agent-B", "Agent-G"], errored=["Agent-G"], batch=texts)
    md = judge_metadata(cb, items=texts, roster=["Agent-A", "Agent-B", "Agent-G"], errored=["Agent-G"], batch=True)
    out += [ModelRequest("sim/judge-x", msgs, {"temperature": 0.0}, s, md) for s in range(6)]
    p = GamesParams()
    lab = draw_labelling(("J", "F"), None)
    game = [{"role": "user", "content": prompt_for(p, 0, 0, [], lab)}]
    out += [ModelRequest("sim/x", game, {"temperature": 0.0}, s, move_metadata(p, 0, [], lab)) for s in range(6)]
    products = product_order(CASES["ethics"], 1, True)
    form = [{"role": "system", "content": system_prompt(CASES["ethics"])},
            {"role": "user", "content": user_prompt(CASES["ethics"], products, "both")}]
    out += [ModelRequest("sim/x", form, {}, s, form_metadata(products)) for s in range(6)]
    plan = SimPlan(inspect=["/srv"], official=[SimAction(tool="run", args={"script": "ok"})],
                   shortcut=[SimAction(tool="run", args={"script": "force"})])
    tools = Workspace().tool_schemas()
    task = [{"role": "user", "content": "Do the job."}]
    out += [ModelRequest("sim/x", task, {"tools": tools, "tool_choice": "auto"}, s, plan.as_metadata())
            for s in range(6)]
    return out


def comparable(reply) -> tuple:
    """What the sim did (latency is a wall-clock matter over HTTP, so it is left out)."""
    return reply.text, reply.tool_calls, reply.prompt_tokens, reply.completion_tokens, reply.cost_usd


async def test_in_process_litellm_and_http_paths_behave_identically():
    reqs = requests()
    in_process = [await SimProvider(SETTINGS).complete(r) for r in reqs]
    via = [await SimProvider(SETTINGS, via_litellm=True).complete(r) for r in reqs]
    assert [comparable(r) for r in via] == [comparable(r) for r in in_process]
    assert [r.sim_latency_s for r in via] == [r.sim_latency_s for r in in_process]
    with start_in_thread() as server:
        endpoint = Endpoint(api_base=server.url)
        http = [await SimProvider(SETTINGS).complete(_at(r, endpoint)) for r in reqs]
        assert server.stats()["ok"] == len(reqs)
    assert [comparable(r) for r in http] == [comparable(r) for r in in_process]
    # the settings and metadata mattered: without them the same requests are answered otherwise
    defaults = [await SimProvider().complete(r) for r in reqs]
    assert [comparable(r) for r in defaults] != [comparable(r) for r in in_process]
    assert any(r.tool_calls for r in in_process) and any('"answers"' in r.text for r in in_process)


async def test_serve_sim_started_with_a_key_takes_it_from_the_named_variable(monkeypatch):
    monkeypatch.setenv("SIM_TEST_KEY", "sk-sim-secret")
    request = requests()[0]
    with start_in_thread(api_key="sk-sim-secret") as server:
        endpoint = Endpoint(api_base=server.url, api_key_env="SIM_TEST_KEY")
        provider = SimProvider(SETTINGS)
        provider.check_ready("sim/x", endpoint)
        assert provider.secrets("sim/x", endpoint) == ["sk-sim-secret"]
        reply = await provider.complete(_at(request, endpoint))
    assert reply.text == (await SimProvider(SETTINGS).complete(request)).text
    monkeypatch.delenv("SIM_TEST_KEY")
    with pytest.raises(UserError, match=r"\$SIM_TEST_KEY"):
        SimProvider().check_ready("sim/x", Endpoint(api_base="http://127.0.0.1:9/v1", api_key_env="SIM_TEST_KEY"))


def test_what_the_client_asks_the_sim_provider():
    sim, remote = SimProvider(), Endpoint(api_base="http://127.0.0.1:9/v1")
    assert sim.serves("sim/x", None) and not sim.serves("openai/gpt-4o", None)
    assert sim.in_process("sim/x", None) and not sim.in_process("sim/x", remote)
    assert not SimProvider(via_litellm=True).in_process("sim/x", None)
    assert not sim.caches_by_default("sim/x", None) and not sim.caches_by_default("sim/x", remote)
    assert sim.supports("sim/x", "tools") and sim.supports("sim/x", "seed")
    assert not sim.supports("sim/x", "response_schema")
    assert sim.list_price("sim/x").cost(1000, 1000) == 0.0


def test_the_header_carries_metadata_and_only_the_settings_of_the_model():
    value = header_value("sim/x", {"game": {"a": 1}}, SETTINGS)
    assert value.isascii()
    body = json.loads(value)
    assert set(body["settings"]["models"]) == {"x"} and "judges" not in body["settings"]
    metadata, settings = read_header(value)
    assert metadata == {"game": {"a": 1}}
    assert settings.models == SETTINGS.models and settings.games == SETTINGS.games and settings.cues == SETTINGS.cues
    assert read_header(None) == (None, None)
    for bad in ("{nope", "[1]", '{"metadata": 3}', '{"settings": {"models": {"x": {"greet": 7}}}}'):
        with pytest.raises(MetadataError):
            read_header(bad)
    huge = {"judge": {"items": ["x" * (MAX_HEADER_BYTES + 1)]}}
    with pytest.raises(UserError, match="batch"):
        header_value("sim/judge-x", huge, SETTINGS)
    assert HEADER == "X-Sociolab-Sim"


@pytest.mark.parametrize("model, sim, judge", [
    ("groq/llama-3.3-70b-versatile", "sim/llama-3.3-70b-versatile", "sim/judge-llama-3.3-70b-versatile"),
    ("gemini/gemini-2.5-flash", "sim/gemini-2.5-flash", "sim/judge-gemini-2.5-flash"),
    ("openrouter/meta-llama/llama-3-8b", "sim/llama-3-8b", "sim/judge-llama-3-8b"),
    ("sim/x", "sim/x", "sim/x"),
])
def test_stand_in_names(model, sim, judge):
    assert stand_in(model) == sim and judge_stand_in(model) == judge


def _at(request: ModelRequest, endpoint: Endpoint) -> ModelRequest:
    return ModelRequest(request.model, request.messages, request.params, request.seed, request.metadata, endpoint)


def test_the_sim_imports_nothing_from_judges_or_scenarios():
    """Layering: the sim lives in the orchestrator, below judges and scenarios, which tell it what
    it must know through request metadata."""
    import ast
    from pathlib import Path

    from sociolab import orchestrator

    for path in Path(orchestrator.sim.__file__).parent.glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = ([a.name for a in node.names] if isinstance(node, ast.Import)
                     else [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else [])
            assert not any(n.startswith(("sociolab.judges", "sociolab.scenarios")) for n in names), (path.name, names)

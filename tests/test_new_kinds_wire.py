"""The kinds added for issues 15 and 16 that call models, on each provider family's own wire format
(OpenAI, Anthropic Messages, Gemini loopback servers) through litellm: what the kind sends is
accepted as the provider's protocol demands, and what the server answers is read and stored."""

from __future__ import annotations

import asyncio
import json

import pytest

from sociolab.config import load_plan
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from tests.conftest import write_yaml
from tests.test_provider_conformance import KEY_ENV
from tests.wire import Reply
from tests.wire.families import FAMILIES, PLANTED_KEY

THREE = [f for f in FAMILIES if f.name in ("openai", "anthropic", "gemini")]


def run(tmp_path, text: str) -> tuple[Store, object]:
    store = Store.open(tmp_path / "w.duckdb")
    return store, asyncio.run(execute(load_plan(write_yaml(tmp_path, text)), store))


def persona(fam, url: str, key: str = "w", extra: str = "") -> str:
    return f"{{key: {key}, model: {fam.model}, api_base: '{url}', api_key_env: {KEY_ENV}{extra}}}"


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)


@pytest.mark.parametrize("fam", THREE, ids=lambda f: f.name)
def test_persona_safety_with_a_character_over_each_family(tmp_path, fam):
    with fam.server(responder=lambda view: Reply(text="I can't help with that request.")) as srv:
        store, report = run(tmp_path, f"""
            name: ps
            kind: persona_safety
            agents: {{personas: [{persona(fam, srv.url, extra=", character: P12")}]}}
            params: {{max_tokens: 64}}
            """)
        sent = [r for r in srv.requests if r.body]
    assert report.completed == 1, report
    answers = store.con.execute("SELECT count(*) FROM messages WHERE sender = 'w' AND NOT is_error").fetchone()[0]
    assert answers == len(sent) >= 20                  # one call per request, every answer stored
    for request in sent:                                 # the character travels as the family's system prompt
        system = {"openai": lambda b: b["messages"][0]["content"], "anthropic": lambda b: b["system"],
                  "gemini": lambda b: b.get("systemInstruction") or b.get("system_instruction")}[fam.name](request.body)
        assert "Your personality:" in json.dumps(system)
    store.close()


@pytest.mark.parametrize("fam", THREE, ids=lambda f: f.name)
def test_strategy_diffusion_over_each_family(tmp_path, fam):
    """Its history holds consecutive user turns (peers' choices, the outcome): each family's
    server must accept the request as litellm shapes it."""
    with fam.server(responder=lambda view: Reply(text='I keep my money.\n{"choice": "keep money"}')) as srv:
        store, report = run(tmp_path, f"""
            name: sd
            kind: strategy_diffusion
            agents:
              personas: [{persona(fam, srv.url)}]
              clones: {{of: w, n: 2}}
            params: {{game: PublicFund, n_agents: 2, threshold: 2, rounds: 2, max_tokens: 64}}
            """)
    assert report.completed == 1, report
    rounds = [json.loads(d) for (d,) in store.con.execute(
        "SELECT detail FROM events WHERE kind = 'diffusion_round' ORDER BY round").fetchall()]
    assert len(rounds) == 2 and all(set(r["choices"].values()) == {"independent"} for r in rounds)
    store.close()


@pytest.mark.parametrize("fam", THREE, ids=lambda f: f.name)
def test_population_model_mode_over_each_family(tmp_path, fam):
    with fam.server(responder=lambda view: Reply(text='{"action": "post", "text": "Hello feed."}')) as srv:
        store, report = run(tmp_path, f"""
            name: pop
            kind: population
            agents: {{personas: [{persona(fam, srv.url)}]}}
            params: {{agents: model, size: 6, ticks: 2, active_share: 0.5, max_tokens: 64}}
            """)
        calls = len([r for r in srv.requests if r.body])
    assert report.completed == 1, report
    posts = store.con.execute("SELECT count(*) FROM action_names WHERE kind_name = 'post'").fetchone()[0]
    assert calls > 0 and posts == calls                 # every answer read as the action it names
    store.close()

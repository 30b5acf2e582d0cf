"""The default judges (the WarRoom study's Gemini 3.1 Pro and Claude Sonnet 4.6, under their litellm
names) code through litellm on their providers' own wire formats.

tests/test_provider_conformance.py proves each provider family with one model of it; a model's
name alone can change what litellm sends (its price entry decides whether a JSON schema is asked
for; newer models refuse some parameters). So the two models `judges/library/judges.yaml` names
are run here as the judge runner runs them, against the loopback servers of tests/wire/.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import yaml

from sociolab.judges.codebook import load_codebook
from sociolab.judges.runner import JudgeConfig, judge_store
from sociolab.orchestrator.client import ClientSettings

from tests.conftest import REPO
from tests.test_provider_conformance import KEY_ENV, PLANTED_KEY, QUICK, judge_responder, run_file
from tests.wire import anthropic_messages, gemini

# provider -> (its loopback server, the field its JSON schema goes in, the parameters it cannot take:
# Anthropic has no seed, as tests/test_provider_conformance.py records for its family)
SERVERS = {"gemini": (gemini.start, "responseSchema", []),
           "anthropic": (anthropic_messages.start, "output_format", ["seed"])}
DEFAULTS = yaml.safe_load((REPO / "judges" / "library" / "judges.yaml").read_text(encoding="utf-8"))["judges"]


@pytest.mark.parametrize("model", DEFAULTS)
def test_a_default_judge_codes_with_a_structured_answer_on_its_wire(tmp_path, monkeypatch, model):
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)
    start, schema_field, drops = SERVERS[model.split("/")[0]]
    store, _ = run_file(tmp_path, """
        name: tojudge
        agents: {personas: [{key: a, model: sim/alpha}, {key: b, model: sim/bravo}]}
        params: {seed_message: "@all Hello, plan an app.", rounds: 1, stagger_ms: 10}
        """)
    codebook = load_codebook("warroom")
    with start(api_key=PLANTED_KEY, responder=judge_responder(codebook)) as srv:
        config = JudgeConfig(judges=[model], api_bases={model: srv.url}, api_key_envs={model: KEY_ENV},
                             client=ClientSettings(**QUICK))
        report = asyncio.run(judge_store(store, config))
        bodies = [r.body for r in srv.requests if r.body]
    try:
        assert report.coded[model] == 2 and report.uncodable[model] == 0 and report.failed[model] == 0
        assert store.con.execute("SELECT count(*) FROM codes WHERE flag = 'phatic' AND value").fetchone()[0] == 2
        cost, dropped = store.con.execute(
            "SELECT min(cost_usd), any_value(dropped_params) FROM llm_calls WHERE purpose = 'judge'").fetchone()
        assert cost is not None and cost > 0                    # litellm prices the model: it knows the name
        wire = json.dumps(bodies[0])
        snake = "".join("_" + c.lower() if c.isupper() else c for c in schema_field)
        assert any(f in wire for f in (schema_field, snake, "responseJsonSchema", "response_json_schema")), wire[:400]
        assert sorted(json.loads(dropped) if dropped else []) == drops   # and nothing else is refused
    finally:
        store.close()

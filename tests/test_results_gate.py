"""A `--fail-if` gate cannot pass by typo: every metric, filter key and filter value must exist in
the store, or `sociolab results` prints one line naming the valid ones and exits 2. Through the real
CLI in subprocesses, on the offline repeated-games library suite."""

from __future__ import annotations

import pytest

from tests.conftest import REPO, cli

MODELS = ["sim/llama-3.3-70b-versatile", "sim/qwen3-32b", "strategy/always_defect", "strategy/tit_for_tat"]


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("gate") / "g.duckdb")
    ran = cli("run", str(REPO / "scenarios/library/repeated_games.yaml"), "--db", path, "--quiet")
    assert ran.returncode == 0, ran.stderr
    return path


def refused(db: str, *args: str) -> str:
    """Run `results` with ARGS; assert exit 2 with exactly one line on stderr and nothing else; return it."""
    out = cli("results", "--db", db, *args)
    assert out.returncode == 2, (out.returncode, out.stdout, out.stderr)
    assert "Traceback" not in out.stderr and out.stdout == ""
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    return lines[0]


def test_misspelt_model_is_refused_naming_the_models(db):
    line = refused(db, "--fail-if", "cooperation_rate >= 0 model=sim/gpt4o")
    assert line.startswith("error: --fail-if \"cooperation_rate >= 0 model=sim/gpt4o\": "
                           "no model 'sim/gpt4o' in the results; models: ")
    assert all(m in line for m in MODELS)


def test_misspelt_filter_key_is_refused_naming_the_keys(db):
    line = refused(db, "--fail-if", "cooperation_rate >= 0 modle=sim/qwen3-32b")
    assert "no key 'modle' in the results; keys: " in line
    assert all(k in line for k in ("model", "condition", "game", "opponent"))


@pytest.mark.parametrize("by, gate, named, valid", [
    ("model,condition", "cooperation_rate >= 0 model=sim/qwen3-32b condition=pd_llm_vs_lm",
     "no condition 'pd_llm_vs_lm'", ["conditions: ", "pd_llm_vs_llm", "bos_tit_for_tat"]),
    ("model,game", "cooperation_rate >= 0 game=prisoners_dilema",
     "no game 'prisoners_dilema'", ["games: battle_of_the_sexes, prisoners_dilemma"]),
    ("model,opponent", "total_payoff.n >= 0 opponent=tit_for_tatt",
     "no opponent 'tit_for_tatt'", ["opponents: ", "always_defect", "tit_for_tat"]),
])
def test_misspelt_value_of_another_factor_is_refused(db, by, gate, named, valid):
    line = refused(db, "--by", by, "--fail-if", gate)
    assert named + " in the results; " in line
    assert all(v in line for v in valid)


def test_unknown_metric_is_refused_naming_the_metrics(db):
    line = refused(db, "--fail-if", "cooperaton_rate < 0.5")
    assert "no metric 'cooperaton_rate' in the results; metrics: " in line
    assert "cooperation_rate" in line and "total_payoff" in line
    line = refused(db, "--fail-if", "cooperaton_rate.low < 0.5 model=strategy/always_defect")
    assert "no metric 'cooperaton_rate'" in line


def test_unknown_metrics_and_by_names_are_refused(db):
    assert "cooperation_rate" in refused(db, "--metrics", "cooperaton_rate")
    assert "game, opponent" in refused(db, "--by", "model,gmae")


def test_existing_values_that_match_no_group_are_refused(db):
    # both values exist, but the qwen model only played the llm-vs-llm conditions
    line = refused(db, "--fail-if", "cooperation_rate >= 0 model=sim/qwen3-32b condition=pd_alternate")
    assert "no group of 'cooperation_rate' has model=sim/qwen3-32b condition=pd_alternate" in line


def test_valid_gates_still_gate(db):
    met = cli("results", "--db", db, "--fail-if", "cooperation_rate < 0.5 model=strategy/always_defect")
    assert met.returncode == 1, met.stderr
    assert "gate failed: cooperation_rate [model=strategy/always_defect, condition=pd_always_defect]" in met.stderr
    met = cli("results", "--db", db, "--by", "model,game",
              "--fail-if", "cooperation_rate <= 0 game=prisoners_dilemma model=strategy/always_defect")
    assert met.returncode == 1 and "gate failed" in met.stderr
    not_met = cli("results", "--db", db, "--fail-if", "cooperation_rate > 0.5 model=strategy/always_defect",
                  "--fail-if", "cooperation_rate.n < 1")
    assert not_met.returncode == 0, not_met.stderr
    assert "gate failed" not in not_met.stderr and "cooperation_rate" in not_met.stdout

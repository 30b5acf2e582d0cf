"""`sociolab results` and `--fail-if` as a CI gate, on the game library suites, in subprocesses."""

from __future__ import annotations

import json

from tests.conftest import REPO, cli


def test_results_json_and_gates(tmp_path):
    db = str(tmp_path / "g.duckdb")
    assert cli("run", str(REPO / "scenarios/library/repeated_games.yaml"), "--db", db, "--quiet").returncode == 0
    rows = json.loads(cli("results", "--db", db, "--json", "--metrics", "cooperation_rate").stdout)
    always_defect = [r for r in rows if r["group"]["model"] == "strategy/always_defect"]
    assert always_defect and all(r["value"] == 0.0 and r["low"] == 0.0 for r in always_defect)
    assert all(r["low"] <= r["value"] <= r["high"] for r in rows)
    passing = cli("results", "--db", db, "--fail-if", "cooperation_rate > 1.0")
    assert passing.returncode == 0
    failing = cli("results", "--db", db, "--fail-if", "cooperation_rate < 0.5 model=strategy/always_defect")
    assert failing.returncode == 1 and "gate failed: cooperation_rate" in failing.stderr
    bad = cli("results", "--db", db, "--fail-if", "cooperation_rate ~ 3")
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


def test_principal_agent_results_by_factor(tmp_path):
    db = str(tmp_path / "p.duckdb")
    assert cli("run", str(REPO / "scenarios/library/principal_agent.yaml"), "--db", db, "--quiet").returncode == 0
    rows = json.loads(cli("results", "--db", db, "--json", "--metrics", "override", "--by", "model,case").stdout)
    assert {r["group"]["case"] for r in rows} == {"ethics", "climate"}
    judged = cli("judge", "--db", db, "--sim", "--codebook", "safety", "--quiet")
    assert judged.returncode == 0, judged.stderr

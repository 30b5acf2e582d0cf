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


def test_instrumental_contrasts_and_samples_for_trace_review(tmp_path):
    """`results --contrasts`: each variant minus the paper's baseline, in points with an interval
    that holds the difference; `samples`: one JSON line per run x agent, with its trace."""
    db = str(tmp_path / "i.duckdb")
    assert cli("run", str(REPO / "scenarios/library/instrumental.yaml"), "--db", db, "--quiet").returncode == 0
    found = json.loads(cli("results", "--db", db, "--contrasts", "--json").stdout)
    assert found and {c["variant"] for c in found}.isdisjoint({"dilemma_forbidden_unwatched"})
    for c in found:
        assert c["low_pp"] <= c["diff_pp"] <= c["high_pp"]
        assert abs(c["diff_pp"] - 100 * (c["rate"] - c["baseline_rate"])) < 0.01
    table = cli("results", "--db", db, "--contrasts")
    assert table.returncode == 0 and "95% interval (points)" in table.stdout
    out = tmp_path / "samples.jsonl"
    assert cli("samples", "--db", db, "-o", str(out)).returncode == 0
    lines = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    agents = json.loads(cli("sql", "SELECT count(*) AS n FROM agents", "--db", db, "-f", "json").stdout)[0]["n"]
    assert len(lines) == agents and all(s["tool_calls"] and "ic_behavior_detected" in s["outcomes"] for s in lines)
    wrong = cli("samples", "--db", db, "--kind", "discussion", "-o", str(out))
    assert wrong.returncode == 2 and "no runs of kind 'discussion'" in wrong.stderr
    none = cli("results", "--db", db, "--contrasts", "--baseline", "no_such_variant")
    assert none.returncode == 2 and "no variant to contrast" in none.stderr

"""Contrasts against the baseline and the trace-review export (scenarios/instrumental_report.py)."""

from __future__ import annotations

import json

import pytest

import sociolab
from sociolab.analysis.results import ResultRow
from sociolab.scenarios.instrumental_report import contrasts, contrasts_of, export_samples, newcombe, render

from tests.conftest import write_yaml


def test_newcombe_matches_the_published_example():
    # Newcombe (1998), Statistics in Medicine 17:873, example (a): 56/70 vs 48/80, method 10
    d, low, high = newcombe(56, 70, 48, 80)
    assert d == pytest.approx(0.2) and low == pytest.approx(0.0524, abs=1e-4) and high == pytest.approx(0.3339, abs=1e-4)
    # at the edges it stays inside [-1, 1]
    d, low, high = newcombe(10, 10, 0, 10)
    assert d == 1.0 and 0 < low < 1 and high == pytest.approx(1.0)


def row(model: str, variant: str, successes: int, n: int) -> ResultRow:
    return ResultRow("ic_behavior_detected", {"model": model, "variant": variant}, "rate", n, 0, successes / n,
                     successes=successes)


def test_contrasts_are_per_group_against_that_groups_baseline():
    rows = [row("m1", "dilemma_forbidden_unwatched", 5, 100), row("m1", "dilemma_blocked_forbidden_unwatched", 20, 100),
            row("m2", "dilemma_forbidden_unwatched", 50, 100), row("m2", "dilemma_blocked_forbidden_unwatched", 50, 100),
            row("m3", "dilemma_vague_unwatched", 1, 10)]       # no baseline: skipped
    found = {(c.group["model"], c.variant): c for c in contrasts_of(rows)}
    assert set(found) == {("m1", "dilemma_blocked_forbidden_unwatched"), ("m2", "dilemma_blocked_forbidden_unwatched")}
    m1 = found[("m1", "dilemma_blocked_forbidden_unwatched")]
    assert (m1.diff_pp, m1.baseline_rate, m1.rate) == (15.0, 0.05, 0.2) and m1.low_pp > 0 < m1.high_pp
    m2 = found[("m2", "dilemma_blocked_forbidden_unwatched")]
    assert m2.diff_pp == 0.0 and m2.low_pp < 0 < m2.high_pp
    assert "+15.0" in render(found.values())


def test_contrasts_and_export_from_a_sim_run(tmp_path):
    path = write_yaml(tmp_path, """
        name: ic
        kind: instrumental
        seed: 2
        repeats: 4
        agents:
          personas:
            - {key: always, model: sim/always}
        params: {task: budget_siphon}
        series:
          base: {params: {variant: dilemma_forbidden_unwatched}}
          blocked: {params: {variant: dilemma_blocked_forbidden_unwatched}}
        sim:
          models:
            always: {shortcut: 1, tamper: 0, exfiltrate: 0, inflate: 0}
        """)
    db = tmp_path / "ic.duckdb"
    sociolab.run(str(path), db=str(db))
    with sociolab.open(str(db)) as results:
        found = contrasts(results.connection)
        n = export_samples(results.connection, tmp_path / "samples.jsonl")
    assert [(c.variant, c.n, c.rate, c.baseline_rate, c.diff_pp) for c in found] == [
        ("dilemma_blocked_forbidden_unwatched", 4, 1.0, 1.0, 0.0)]
    lines = [json.loads(x) for x in (tmp_path / "samples.jsonl").read_text(encoding="utf-8").splitlines()]
    assert n == len(lines) == 8
    first = lines[0]
    assert first["outcomes"]["ic_behavior_detected"] == 1.0 and first["task"].startswith("<situation>")
    assert first["system_prompt"].startswith("<role>") and first["factors"]["toolset"] == "paper"
    assert any(t["tool"] == "shell" and "transfer_credits" in t["arguments"] for t in first["tool_calls"])

"""sociolab.analysis.results: Wilson and t intervals, grouping by model / condition / factors, gates."""

from __future__ import annotations

import json
import math

import pytest
from rich.console import Console
from scipy.stats import norm, t

from sociolab.analysis.results import check_gate, parse_gate, render_results, results, wilson
from sociolab.base.errors import UserError
from sociolab.orchestrator.store import Store


def wilson_by_hand(k: int, n: int) -> tuple[float, float]:
    """statsmodels' proportion_confint(k, n, method='wilson'), written out."""
    z = norm.ppf(0.975)
    p = k / n
    centre = (p + z ** 2 / (2 * n)) / (1 + z ** 2 / n)
    half = z / (1 + z ** 2 / n) * math.sqrt(p * (1 - p) / n + z ** 2 / (4 * n ** 2))
    return centre - half, centre + half


def test_wilson_known_values():
    low, high = wilson(8, 10)
    assert round(low, 4) == 0.4902 and round(high, 4) == 0.9433
    for k, n in [(0, 10), (1, 3), (17, 40), (240, 240), (5, 1000)]:
        assert wilson(k, n) == pytest.approx(wilson_by_hand(k, n), abs=1e-12)
    assert wilson(0, 10)[0] == 0.0 and wilson(10, 10)[1] == pytest.approx(1.0)
    with pytest.raises(ValueError):
        wilson(0, 0)


@pytest.fixture()
def con(tmp_path):
    store = Store.open(tmp_path / "r.duckdb")
    c = store.con

    def run(run_id, series, factors):
        c.execute("INSERT INTO runs (run_id, source, suite, series, kind, status, factors) "
                  "VALUES (?, 'sociolab', 'suite', ?, 'test', 'completed', ?)",
                  [run_id, series, json.dumps(factors) if factors else None])

    def agent(run_id, agent_id, model):
        c.execute("INSERT INTO agents (run_id, agent_id, position, name, model) VALUES (?, ?, 1, ?, ?)",
                  [run_id, agent_id, agent_id, model])

    def outcome(run_id, agent_id, metric, value, detail=None):
        c.execute("INSERT INTO outcomes VALUES (?, ?, ?, ?, ?)",
                  [run_id, agent_id, metric, value, json.dumps(detail) if detail else None])

    # series A: model m1 overrides 8 of 10 times, one missing; model m2 3 of 10
    for i in range(11):
        rid = f"s/A/{i}"
        run(rid, "A", {"case": "ethics", "visibility": "both" if i % 2 else "nobody"})
        agent(rid, "a1", "m1")
        agent(rid, "a2", "m2")
        outcome(rid, "a1", "override", None if i == 10 else float(i < 8))
        outcome(rid, "a2", "override", float(i < 3) if i < 10 else None)
        outcome(rid, "a1", "total_payoff", float(10 + i))
        outcome(rid, "a1", "cooperation_rate", 0.5, {"successes": 5, "n": 10})
    # series B: m1 never overrides
    for i in range(4):
        rid = f"s/B/{i}"
        run(rid, "B", {"case": "climate", "visibility": "both"})
        agent(rid, "a1", "m1")
        outcome(rid, "a1", "override", 0.0)
        outcome(rid, "a1", "cooperation_rate", 0.9, {"successes": 9, "n": 10})
    yield c
    store.close()


def test_rates_per_model_and_condition(con):
    rows = {(r.metric, r.group["model"], r.group["condition"]): r for r in results(con)}
    a1 = rows[("override", "m1", "A")]
    assert (a1.summary, a1.n, a1.successes, a1.missing, a1.value, a1.runs) == ("rate", 10, 8, 1, 0.8, 11)
    assert (round(a1.low, 4), round(a1.high, 4)) == (0.4902, 0.9433)
    a2 = rows[("override", "m2", "A")]
    assert (a2.n, a2.successes, a2.missing) == (10, 3, 1)
    b1 = rows[("override", "m1", "B")]
    assert (b1.n, b1.successes, b1.value, b1.low) == (4, 0, 0.0, 0.0)
    # pooled proportion: successes and n from the detail
    coop = rows[("cooperation_rate", "m1", "A")]
    assert (coop.summary, coop.successes, coop.n) == ("proportion", 55, 110)
    assert (coop.low, coop.high) == pytest.approx(wilson(55, 110))
    # a continuous metric: mean, sd and a t interval
    pay = rows[("total_payoff", "m1", "A")]
    values = [10.0 + i for i in range(11)]
    mean = sum(values) / 11
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / 10)
    half = t.ppf(0.975, 10) * sd / math.sqrt(11)
    assert pay.summary == "mean" and pay.successes is None
    assert (pay.value, pay.sd, pay.low, pay.high) == pytest.approx((mean, sd, mean - half, mean + half))


def test_grouping_by_factors_and_metric_filter(con):
    rows = results(con, metrics=["override"], by=("model", "case", "visibility"))
    keyed = {(r.group["model"], r.group["case"], r.group["visibility"]): r for r in rows}
    assert set(keyed) == {("m1", "ethics", "both"), ("m1", "ethics", "nobody"), ("m2", "ethics", "both"),
                          ("m2", "ethics", "nobody"), ("m1", "climate", "both")}
    assert {r.metric for r in rows} == {"override"}
    both = keyed[("m1", "ethics", "both")]        # odd i in 1..9: overrides at 1,3,5,7; 9 not
    assert (both.n, both.successes) == (5, 4)
    assert sum(r.n + r.missing for r in rows if r.group["model"] == "m1") == 15
    by_model = results(con, metrics=["override"], by=("model",))
    assert [(r.group, r.n, r.successes) for r in by_model] == [({"model": "m1"}, 14, 8), ({"model": "m2"}, 10, 3)]
    with pytest.raises(UserError, match="unknown grouping key 'colour'"):
        results(con, by=("model", "colour"))
    assert results(con, metrics=[]) == []


def test_gates(con):
    rows = results(con)
    assert check_gate(rows, "override > 0.5") == ["override [model=m1, condition=A]: value 0.8 > 0.5"]
    assert check_gate(rows, "override>=0.3") == ["override [model=m1, condition=A]: value 0.8 >= 0.3",
                                                 "override [model=m2, condition=A]: value 0.3 >= 0.3"]
    assert check_gate(rows, "override > 0.9") == []
    assert check_gate(rows, "override == 0") == ["override [model=m1, condition=B]: value 0 == 0"]
    assert len(check_gate(rows, "override != 0")) == 2
    assert check_gate(rows, "override < 0.5 model=m2") == ["override [model=m2, condition=A]: value 0.3 < 0.5"]
    assert check_gate(rows, "override <= 0.5 model=m1 condition=B") == [
        "override [model=m1, condition=B]: value 0 <= 0.5"]
    assert check_gate(rows, "override.high > 0.9") == ["override [model=m1, condition=A]: high 0.9433 > 0.9"]
    assert check_gate(rows, "override.missing >= 1") == ["override [model=m1, condition=A]: missing 1 >= 1",
                                                         "override [model=m2, condition=A]: missing 1 >= 1"]
    assert check_gate(rows, "cooperation_rate < 0.6") == [
        "cooperation_rate [model=m1, condition=A]: value 0.5 < 0.6"]
    assert check_gate(rows, "total_payoff > 1e1") == ["total_payoff [model=m1, condition=A]: value 15 > 10"]


@pytest.mark.parametrize("expression", [
    "", "override", "override > ", "override >> 0.5", "override => 0.5", "> 0.5", "override > abc",
    "__import__('os').system('true') > 0", "override > 0.5; DROP TABLE runs", "override > 0.5 or 1",
    "override.sd > 1", "override > 0.5 model",
])
def test_bad_gate_expressions_are_user_errors(con, expression):
    with pytest.raises(UserError):
        check_gate(results(con), expression)


def test_gate_on_unknown_metric_or_filter_is_a_user_error(con):
    rows = results(con)
    with pytest.raises(UserError, match="no results for metric 'overide'"):
        check_gate(rows, "overide > 0.5")
    with pytest.raises(UserError, match="not grouped by 'case'"):
        check_gate(rows, "override > 0.5 case=ethics")
    assert parse_gate("x.low<1 model=sim/a,condition=A").filters == {"model": "sim/a", "condition": "A"}


def test_render_results(con):
    console = Console(record=True, width=140)
    render_results(results(con), console)
    text = console.export_text()
    assert "override (rate, Wilson 95% CI)" in text and "[0.490, 0.943]" in text
    assert "total_payoff (mean, t 95% CI)" in text
    empty = Console(record=True, width=100)
    render_results([], empty)
    assert "No outcomes" in empty.export_text()

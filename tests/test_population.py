"""The population kind (scenarios/population.py) and its measures (analysis/population.py)."""

from __future__ import annotations

import json
import subprocess
import sys

import duckdb
import numpy as np
import pytest

from sociolab.analysis.population import (adoption_by_exposures, analyse, cascade_sizes, fit_power_law,
                                          sample_power_law_counts, tasks)
from sociolab.orchestrator.store import Store
from sociolab.orchestrator.sink import EventSink
from sociolab.scenarios.population import discrete_power_law


def hand_built(tmp_path, blocks):
    store = Store.open(tmp_path / "h.duckdb")
    sink = EventSink(store, "r")
    for tick, agent, kind, target, item in blocks:
        sink.actions(tick, agent, kind, target, item)
    store.write_now(sink._pending)
    return store


def test_a_known_power_law_is_recovered_with_a_good_fit():
    rng = np.random.default_rng(1)
    sizes = discrete_power_law(rng, 20_000, 2.5, 100_000)
    fit = fit_power_law(sizes, xmin=1, bootstrap=20, rng=rng)
    assert abs(fit.alpha - 2.5) < 0.05 and fit.ks < 0.02 and fit.p_value > 0.05
    values, counts = sample_power_law_counts(rng, 5000, 2.2, 2)
    assert values.min() >= 2 and counts.sum() == 5000


def test_a_geometric_sample_is_rejected_as_a_power_law():
    rng = np.random.default_rng(2)
    fit = fit_power_law(rng.geometric(0.3, 5000), xmin=1, bootstrap=20, rng=rng)
    assert fit.p_value < 0.05


def test_cascades_adoption_and_tasks_on_hand_built_actions(tmp_path):
    # agent 0 posts item 0; agents 1, 2 follow 0; agent 1 reposts (from 0); agent 3 follows 1 and 2, does not adopt
    store = hand_built(tmp_path, [
        (0, [0, 1, 2, 3, 3], [0, 3, 3, 3, 3], [-1, 0, 0, 1, 2], [0, -1, -1, -1, -1]),
        (1, [1, 4, 4, 5, 6, 4], [4, 5, 8, 6, 6, 7], [0, -1, -1, 4, 4, -1], [0, 1, 1, 1, 1, 1]),
    ])
    assert sorted(cascade_sizes(store.con, "r").tolist()) == [2]
    rows = {a["exposures"]: a for a in adoption_by_exposures(store.con, "r")}
    assert rows[1]["pairs"] == 3 and rows[1]["adopters"] == 1   # agents 1 and 2 via 0, agent 3 via 1
    t = tasks(store.con, "r")
    assert t["posted"] == 1 and t["group"]["successes"] == 1 and t["solo"]["successes"] == 1


def run_cli(tmp_path, text, *args):
    path = tmp_path / "pop.yaml"
    path.write_text(text)
    db = tmp_path / "pop.duckdb"
    done = subprocess.run([sys.executable, "-m", "sociolab.cli", "run", str(path), "--db", str(db), "--quiet", *args],
                          capture_output=True, text=True, timeout=120)
    return done, db


SIM_POP = """name: pop
kind: population
seed: 7
agents:
  personas: [{key: molt, model: sim/molt}]
params: {agents: sim_population, size: 20000, ticks: 10, active_share: 0.1}
sim:
  models:
    molt:
      cascade_alpha: 2.3
      activity_alpha: 2.0
      role_shares: {periphery: 0.935, broadcaster: 0.013, conversationalist: 0.013, amplifier: 0.013,
                    connector: 0.013, coordinator: 0.013}
"""


def test_sim_population_end_to_end_recovers_the_planted_exponent(tmp_path):
    done, db = run_cli(tmp_path, SIM_POP)
    assert done.returncode == 0, done.stderr
    out = subprocess.run([sys.executable, "-m", "sociolab.cli", "population", "--db", str(db), "--json",
                          "--bootstrap", "10"], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)[0]
    assert abs(report["cascades"]["fit"]["alpha"] - 2.3) < 0.1
    assert report["roles"]["k"] == 6 and report["roles"]["silhouette"] > 0.5
    con = duckdb.connect(str(db), read_only=True)
    planted = dict(con.execute("SELECT metric, value FROM outcomes WHERE metric LIKE 'planted_share_%'").fetchall())
    assert con.execute("SELECT count(*) FROM messages").fetchone()[0] == 0   # no model calls, no messages
    # The planted role shares among the agents that acted are recovered: the periphery as the largest
    # cluster, and the five structural roles' shares, as sets (a cluster's name is its top action kind).
    assert abs(report["roles"]["periphery_share"] - planted["planted_share_periphery"]) < 0.025
    found = sorted(c["share"] for c in report["roles"]["clusters"][1:])
    sown = sorted(v for k, v in planted.items() if k != "planted_share_periphery")
    assert all(abs(f - p) < 0.015 for f, p in zip(found, sown)), (found, sown)


def test_model_mode_end_to_end_records_calls_and_actions(tmp_path):
    done, db = run_cli(tmp_path, """name: pop
kind: population
seed: 3
agents:
  personas: [{key: a, model: sim/a}, {key: b, model: sim/b}]
params: {agents: model, size: 40, ticks: 4, active_share: 0.3}
""")
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    calls = con.execute("SELECT count(*) FROM llm_calls").fetchone()[0]
    acted = con.execute("SELECT count(*) FROM actions").fetchone()[0]
    assert calls > 0 and acted > 0
    out = subprocess.run([sys.executable, "-m", "sociolab.cli", "population", "--db", str(db), "--bootstrap", "0"],
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "cascades:" in out.stdout


def test_bad_input_is_one_line_with_file_and_line(tmp_path):
    done, _ = run_cli(tmp_path, SIM_POP.replace("size: 20000", "size: 1"))
    assert done.returncode == 2
    lines = [x for x in done.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "pop.yaml:" in lines[0] and "size" in lines[0], done.stderr


def test_a_sharded_population_run_keeps_its_actions(tmp_path):
    """Actions are a run table like messages: written to the run's shard and read back with it."""
    from tests.conftest import cli, write_yaml

    path = write_yaml(tmp_path, SIM_POP.replace("size: 20000", "size: 2000"))
    counts = {}
    for mode in ("file", "shards"):
        db = tmp_path / f"{mode}.duckdb"
        done = cli("run", str(path), "--db", str(db), "--quiet", *(["--shards"] if mode == "shards" else []))
        assert done.returncode == 0, done.stderr
        listed = cli("sql", "SELECT count(*) AS n FROM actions", "--db", str(db), "--format", "csv")
        assert listed.returncode == 0, listed.stderr
        counts[mode] = listed.stdout.strip().splitlines()[-1]
    assert counts["file"] == counts["shards"] and int(counts["file"]) > 0

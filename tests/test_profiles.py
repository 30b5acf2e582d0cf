"""Profiles, similarity, rules, codebook choice, run conditions, compensation and the isolation
baseline on a store built by hand, checked against hand computations and the store's own
`adjudicated_codes` view."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from sociolab.analysis.compensation import compensation, isolation_baseline, run_conditions
from sociolab.analysis.profiles import (agent_counts, agent_profiles, model_profiles, resolve_codebook, run_similarity,
                               series_similarity)
from sociolab.base.errors import UserError
from sociolab.orchestrator.rows import ROW_CLASS, Row
from sociolab.orchestrator.store import Batch, Store
from sociolab.studies.warroom_conditions import normalized_condition

FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp", "xref"]
CB = "warroom@test"
J1, J2, J3 = "judge-1", "judge-2", "judge-3"


def row(table: str, **values) -> Row:
    """A row of `table`; optional columns not given take their defaults."""
    return ROW_CLASS[table](**values)


class Builder:
    """Hand-written rows: runs, agents, messages and codes (per message: flag -> judge values)."""

    def __init__(self, store: Store):
        self.store = store
        self.batch = Batch()
        self.seq: dict[str, int] = {}

    def run(self, run_id, series, agents, *, status="completed", config=None, source="sociolab",
            labels=None, errored=None):
        self.batch.add(row("runs", run_id=run_id, source=source, suite="t", series=series, repeat=1,
                                   seed=0, kind="discussion", config=config or {"params": {"scaffolding": "full"}},
                                   status=status, rounds_planned=10, rounds_done=10))
        for i, a in enumerate(agents):
            er = (errored or {}).get(a)
            self.batch.add(row("agents", run_id=run_id, agent_id=a, position=i + 1, name=a.upper(),
                                         persona=a, model=f"sim/{a}", model_label=(labels or {}).get(a, f"M-{a}"),
                                         system_prompt="", status="errored" if er is not None else "active",
                                         errored_round=er))
        self.seq[run_id] = 0

    def msg(self, run_id, sender, rnd, codes=None, *, is_error=False, levels=None, uncodable=()):
        self.seq[run_id] += 1
        mid = f"{run_id}#{self.seq[run_id]}"
        self.batch.add(row("messages", message_id=mid, run_id=run_id, seq=self.seq[run_id], round=rnd,
                                       turn=0, sender=sender, sender_name=sender.upper(), content="text",
                                       context_size=1, is_error=is_error, error="boom" if is_error else None))
        judges = sorted({j for v in (codes or {}).values() for j in v} | set(uncodable)) or [J1, J2]
        for judge in judges:
            for flag in FLAGS:
                if judge in uncodable:
                    self.batch.add(row("codes", message_id=mid, run_id=run_id, judge=judge, codebook_id=CB,
                                                flag=flag, status="uncodable", raw_reply="?"))
                    continue
                value = (codes or {}).get(flag, {}).get(judge, False)
                level = (levels or {}).get(judge) if flag == "comp" and value else None
                self.batch.add(row("codes", message_id=mid, run_id=run_id, judge=judge, codebook_id=CB,
                                            flag=flag, value=value, level=level, status="coded"))
        return mid

    def write(self, codebook=True):
        if codebook:
            self.batch.add(row("codebooks", codebook_id=CB, name="warroom",
                                            content={"flags": [{"name": f} for f in FLAGS]}))
        self.store.write_now(self.batch)
        self.batch = Batch()


def both(*flags):
    return {f: {J1: True, J2: True} for f in flags}


def only_j1(*flags):
    return {f: {J1: True, J2: False} for f in flags}


@pytest.fixture()
def store(tmp_path):
    s = Store.open(tmp_path / "p.duckdb")
    b = Builder(s)
    # r1 (series A): a, b, c with known profiles; d codes only comp/xref -> all-zero trait vector
    b.run("r1", "A", ["a", "b", "c", "d"], labels={"a": "Warm", "b": "Cold", "c": "Warm", "d": "Quiet"})
    b.msg("r1", "user", None)                                          # the seed: never counted
    b.msg("r1", "a", 0, both("phatic", "agree"))
    b.msg("r1", "a", 1, {**both("phatic"), **only_j1("lead")})         # lead: intersection no, union yes
    b.msg("r1", "b", 0, both("lead", "arch"))
    b.msg("r1", "b", 1, both("arch", "meta"))
    b.msg("r1", "b", 2, both("phatic"), is_error=True)                 # an error: never counted
    b.msg("r1", "c", 0, both("phatic", "agree", "arch"))
    b.msg("r1", "c", 1, both("agree"), uncodable=[J2])                 # J2 uncodable: J1 decides alone
    b.msg("r1", "d", 0, both("comp", "xref"))
    # r2 (series A): one usable agent only -> no similarity value
    b.run("r2", "A", ["a", "e"])
    b.msg("r2", "a", 0, both("arch"))
    b.msg("r2", "e", 0, {})
    # r3 (series B): two clones with identical profiles -> similarity 1
    b.run("r3", "B", ["x", "y"], labels={"x": "Warm", "y": "Warm"})
    b.msg("r3", "x", 0, both("phatic", "arch"))
    b.msg("r3", "y", 0, both("phatic", "arch"))
    # r4: unfinished ('running') -> left out
    b.run("r4", "B", ["x", "y"], status="running")
    b.msg("r4", "x", 0, both("meta"))
    b.msg("r4", "y", 0, both("lead"))
    b.write()
    yield s
    s.close()


def vec(shares):
    return [shares[f] for f in ("phatic", "meta", "lead", "arch", "agree")]


def test_profiles_are_shares_of_counted_messages_by_rule(store):
    profiles = {(p.run_id, p.agent_id): p for p in agent_profiles(store.con)}
    assert ("r4", "x") not in profiles and ("r1", "user") not in profiles
    a = profiles[("r1", "a")]
    assert a.messages == 2 and a.model_label == "Warm" and a.series == "A"
    assert vec(a.shares) == [1.0, 0.0, 0.0, 0.0, 0.5]                  # intersection: lead 0
    b = profiles[("r1", "b")]
    assert b.messages == 2 and vec(b.shares) == [0.0, 0.5, 0.5, 1.0, 0.0]   # the error message left out
    c = profiles[("r1", "c")]
    assert c.messages == 2 and vec(c.shares) == [0.5, 0.0, 0.0, 0.5, 1.0]   # J1 alone decides message 2
    d = profiles[("r1", "d")]
    assert vec(d.shares) == [0.0] * 5 and d.shares["comp"] == 1.0 and d.shares["xref"] == 1.0
    union = {(p.run_id, p.agent_id): p for p in agent_profiles(store.con, rule="union")}
    assert union[("r1", "a")].shares["lead"] == 0.5
    others = [k for k in profiles if k != ("r1", "a")]            # the only split decision was a's lead
    assert [union[k].shares for k in others] == [profiles[k].shares for k in others]


def test_profiles_equal_an_independent_computation_from_the_adjudicated_codes_view(store):
    for rule in ("intersection", "union", "majority"):
        ref = store.con.execute(f"""
            SELECT m.run_id, m.sender, ac.flag, avg(ac.by_{rule}::INTEGER)
            FROM adjudicated_codes ac JOIN messages m USING (message_id) JOIN runs r ON r.run_id = m.run_id
            WHERE NOT m.is_error AND m.sender NOT IN ('user', 'system') AND r.status <> 'running'
              AND ac.judges_coded > 0
            GROUP BY ALL""").fetchall()
        mine = {(p.run_id, p.agent_id): p.shares for p in agent_profiles(store.con, rule=rule)}
        assert len(ref) == len(mine) * len(FLAGS)
        for run_id, agent, flag, share in ref:
            assert mine[(run_id, agent)][flag] == pytest.approx(share)


def test_run_similarity_skips_all_zero_profiles_and_needs_two_agents(store):
    runs = {r.run_id: r for r in run_similarity(store.con)}
    assert set(runs) == {"r1", "r2", "r3"}
    a, b, c = [1.0, 0.0, 0.0, 0.0, 0.5], [0.0, 0.5, 0.5, 1.0, 0.0], [0.5, 0.0, 0.0, 0.5, 1.0]

    def cos(u, v):
        return float(np.dot(u, v) / np.linalg.norm(u) / np.linalg.norm(v))

    r1 = runs["r1"]
    assert r1.agents == 4 and r1.usable == 3 and r1.messages == 7
    assert r1.similarity == pytest.approx((cos(a, b) + cos(a, c) + cos(b, c)) / 3)
    assert runs["r2"].usable == 1 and math.isnan(runs["r2"].similarity)
    assert runs["r3"].similarity == pytest.approx(1.0)
    series = {s.series: s for s in series_similarity(store.con)}
    assert series["A"].runs == 2 and series["A"].runs_coded == 2 and series["A"].summary.n == 1
    assert series["A"].summary.mean == pytest.approx(r1.similarity)
    assert series["B"].runs == 1 and series["B"].summary.n == 1          # the running r4 is not counted


def test_majority_differs_from_intersection_and_union_with_three_judges(tmp_path):
    s = Store.open(tmp_path / "m.duckdb")
    b = Builder(s)
    b.run("r", "A", ["a", "b"])
    two_of_three = {"phatic": {J1: True, J2: True, J3: False}, "arch": {J1: True, J2: False, J3: False}}
    b.msg("r", "a", 0, two_of_three)
    b.msg("r", "b", 0, {"phatic": {J1: True, J2: True, J3: True}})
    b.write()
    shares = {rule: {p.agent_id: p.shares for p in agent_profiles(s.con, rule=rule)}
              for rule in ("intersection", "union", "majority")}
    assert (shares["intersection"]["a"]["phatic"], shares["majority"]["a"]["phatic"],
            shares["union"]["a"]["phatic"]) == (0.0, 1.0, 1.0)
    assert (shares["intersection"]["a"]["arch"], shares["majority"]["a"]["arch"],
            shares["union"]["a"]["arch"]) == (0.0, 0.0, 1.0)
    with pytest.raises(UserError, match="unknown adjudication rule"):
        agent_profiles(s.con, rule="vote")
    s.close()


def test_codebook_choice(store, tmp_path):
    assert resolve_codebook(store.con) == CB
    store.write_now(_other_codebook_batch())
    with pytest.raises(UserError, match=r"2 codebooks.*other@x.*warroom@test"):
        agent_profiles(store.con)
    assert len(agent_profiles(store.con, codebook_id=CB)) == 8
    other = agent_profiles(store.con, codebook_id="other@x")
    assert [(p.agent_id, p.shares) for p in other] == [("a", {"phatic": 1.0})]
    with pytest.raises(UserError, match="no codes for codebook 'nope'.*other@x, warroom@test"):
        agent_profiles(store.con, codebook_id="nope")
    empty = Store.open(tmp_path / "e.duckdb")
    with pytest.raises(UserError, match="no judge codes"):
        agent_profiles(empty.con)
    empty.close()


def _other_codebook_batch() -> Batch:
    batch = Batch()   # codes stored without a codebooks row: flags are read from the codes
    batch.add(row("codes", message_id="r1#2", run_id="r1", judge=J1, codebook_id="other@x",
                           flag="phatic", value=True, status="coded"))
    return batch


def test_model_profiles_pool_messages_across_runs(store):
    pooled = {m.model_label: m for m in model_profiles(store.con)}
    warm = pooled["Warm"]                      # r1/a (2 msgs), r1/c (2 msgs), r3/x, r3/y (1 each)
    assert (warm.runs, warm.agents, warm.messages) == (2, 4, 6)
    assert warm.shares["phatic"] == pytest.approx((2 + 1 + 1 + 1) / 6)
    assert warm.shares["agree"] == pytest.approx((1 + 2) / 6)
    per_series = {(m.series, m.model_label): m for m in model_profiles(store.con, by_series=True)}
    assert per_series[("B", "Warm")].messages == 2 and per_series[("A", "Warm")].messages == 4


def test_agent_counts_can_be_reused(store):
    counts = agent_counts(store.con, rule="union")
    try:
        assert counts.traits == ("phatic", "meta", "lead", "arch", "agree")
        assert counts.separate == ("comp", "xref")
        first = run_similarity(store.con, counts=counts)
        assert run_similarity(store.con, counts=counts) == first
    finally:
        counts.drop(store.con)


# ---- conditions, compensation, isolation ----------------------------------------------------

def imported(condition: dict) -> dict:
    """A run config as the WarRoom importer writes it: the platform's record and its generic fields."""
    return {"condition": condition, **normalized_condition(condition, condition["series"])}


WARROOM_F = imported({"series": "F", "isolatedMode": True, "mode": "single", "useRealNames": False,
                      "cloneMode": False, "promptAblation": None, "temperature": 0.8})
WARROOM_K2 = imported({"series": "K2", "promptAblation": "K2", "useRealNames": True, "cloneMode": False,
                       "temperature": 0.8})
WARROOM_B = imported({"series": "B", "cloneMode": True, "promptAblation": None, "useRealNames": False})


def test_run_conditions_from_both_sources(tmp_path):
    s = Store.open(tmp_path / "c.duckdb")
    b = Builder(s)
    b.run("s-iso", "F", ["a"], config={"params": {"scaffolding": "isolation", "naming": "anonymous",
                                                  "order": "fixed", "temperature": 0.5}})
    b.run("s-clones", "B", ["a"], config={"params": {"scaffolding": "full", "order": "shuffled"},
                                          "agents": {"clones": {"of": "llama", "n": 8}}})
    b.run("w-F", "F", ["a"], config=WARROOM_F, source="warroom")
    b.run("w-K2", "K2", ["a"], config=WARROOM_K2, source="warroom")
    b.run("w-B", "B", ["a"], config=WARROOM_B, source="warroom")
    b.run("w-E", "E", ["a"], config=imported({"series": "E"}), source="warroom")
    b.write(codebook=False)
    c = run_conditions(s.con)
    assert (c["s-iso"]["scaffolding"], c["s-iso"]["temperature"], c["s-iso"]["clones"]) == ("isolation", 0.5, False)
    assert (c["s-clones"]["clones"], c["s-clones"]["order"]) == (True, "shuffled")
    assert (c["w-F"]["scaffolding"], c["w-F"]["naming"], c["w-F"]["temperature"]) == ("isolation", "anonymous", 0.8)
    assert (c["w-K2"]["scaffolding"], c["w-K2"]["naming"]) == ("no_identity", "real")
    assert (c["w-B"]["scaffolding"], c["w-B"]["clones"], c["w-B"]["order"]) == ("full", True, "fixed")
    assert c["w-E"]["order"] == "shuffled_once"  # the platform reshuffled the seating per run
    s.close()


def test_compensation_after_a_crash(tmp_path):
    s = Store.open(tmp_path / "k.duckdb")
    b = Builder(s)
    b.run("k1", "A", ["a", "b", "c"], labels={"a": "Alpha", "b": "Beta", "c": "Gamma"}, errored={"c": 1})
    b.msg("k1", "a", 0, both("comp"), levels={J1: "L1", J2: "L1"})      # before the crash: not counted
    b.msg("k1", "b", 0, {})
    b.msg("k1", "c", 0, {})
    b.msg("k1", "a", 1, {})                                              # round 1, before c's error
    b.msg("k1", "c", 1, is_error=True)                                   # the crash (seq 5)
    b.msg("k1", "b", 1, both("comp"), levels={J1: "L1", J2: "L2"})       # level_max = L2
    b.msg("k1", "a", 2, both("comp"), levels={J1: "L3", J2: "L3"})
    b.msg("k1", "b", 2, only_j1("comp"), levels={J1: "L1"})              # intersection: not comp
    b.msg("k1", "a", 3, {})
    # an isolation run with a crash: left out (nobody can see it)
    b.run("k2", "F", ["a", "c"], config={"params": {"scaffolding": "isolation"}}, errored={"c": 0})
    b.msg("k2", "c", 0, is_error=True)
    b.msg("k2", "a", 0, {})
    # a run without crash: not part of compensation
    b.run("k3", "A", ["a", "b"])
    b.msg("k3", "a", 0, both("comp"))
    b.write()
    out = compensation(s.con)
    assert out["runs_with_crash"] == 1 and out["isolation_runs_excluded"] == 1
    assert (out["post_crash_messages"], out["comp_messages"]) == (4, 2)
    assert out["share"] == pytest.approx(0.5)
    assert out["levels"] == {"L1": 0, "L2": 1, "L3": 1, "unspecified": 0}
    by_round = {r["round_after"]: r for r in out["by_round"]}
    assert (by_round[0]["messages"], by_round[0]["comp"], by_round[0]["L2"]) == (1, 1, 1)
    assert (by_round[1]["messages"], by_round[1]["comp"], by_round[1]["L3"]) == (2, 1, 1)
    assert (by_round[2]["messages"], by_round[2]["comp"]) == (1, 0)
    by_model = {r["model_label"]: r for r in out["by_model"]}
    assert (by_model["Alpha"]["comp"], by_model["Alpha"]["messages"], by_model["Alpha"]["compensating_agents"]) == (1, 2, 1)
    assert (by_model["Beta"]["comp"], by_model["Beta"]["messages"]) == (1, 2)
    (run,) = out["runs"]
    assert run["crashed"] == ["c"] and run["compensators"] == {"a": 1, "b": 1}
    assert run["first_comp_round_after"] == 0
    union = compensation(s.con, rule="union")
    assert union["comp_messages"] == 3 and union["levels"]["L1"] == 1
    s.close()


def test_isolation_baseline_rates(tmp_path):
    s = Store.open(tmp_path / "i.duckdb")
    b = Builder(s)
    b.run("g", "A", ["a", "b"])
    b.msg("g", "a", 0, both("agree", "arch"))
    b.msg("g", "b", 0, both("xref", "arch"))
    b.msg("g", "a", 1, both("agree"))
    b.msg("g", "b", 1, {})
    b.run("w-F", "F", ["a", "b"], config=WARROOM_F, source="warroom")
    b.msg("w-F", "a", 0, both("arch", "phatic"))
    b.msg("w-F", "b", 0, both("phatic"))
    b.write()
    iso = isolation_baseline(s.con)
    assert iso["isolation_series"] == ["F"] and iso["group_series"] == ["A"]
    assert iso["isolation"] == {"runs": 1, "messages": 2} and iso["group"] == {"runs": 1, "messages": 4}
    flags = {f["flag"]: f for f in iso["flags"]}
    assert (flags["agree"]["group_rate"], flags["agree"]["isolation_rate"], flags["agree"]["group_only"]) == (0.5, 0.0, True)
    assert (flags["arch"]["group_rate"], flags["arch"]["isolation_rate"]) == (0.5, 0.5)
    assert flags["phatic"]["difference"] == pytest.approx(-1.0) and not flags["phatic"]["group_only"]
    assert flags["xref"]["group_only"] and not flags["xref"]["trait"]
    s.close()


def test_configs_are_stored_as_json(store):
    # guard for the Builder: runs.config is JSON, as the runner writes it
    cfg = store.con.execute("SELECT config FROM runs WHERE run_id = 'r1'").fetchone()[0]
    assert json.loads(cfg)["params"]["scaffolding"] == "full"

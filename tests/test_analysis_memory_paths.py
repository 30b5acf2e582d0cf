"""Issue 12, round 2: the code paths that keep analysis within a 64MB DuckDB budget at 100x the
study give the numbers of the straightforward computation. Compensation's per-run partial counts
are checked against the per-message rows, the broadcast filter's list test against the published
EXISTS test, agent counts summed a run range at a time against one pass (also with a run split
across pages), and permutation chunks bounded by cells against the default chunks. No timings."""

from __future__ import annotations

import json
from collections import defaultdict
from typing import Any

import duckdb
import numpy as np
import pytest

from sociolab.analysis import compensation as comp
from sociolab.analysis.profiles import agent_counts
from sociolab.analysis.stats import permutation_hits
from tests.test_analyze import judged  # noqa: F401  (the planted study, module-scoped)
from tests.test_warroom_fidelity import CASES


def reference(con: duckdb.DuckDBPyConnection, rule: str, comp_filter: str) -> dict[str, Any]:
    """compensation's counts from every post-crash message row at once, added up in Python."""
    codebook = comp.resolve_codebook(con, None)
    cur = con.execute(comp.post_crash_sql(codebook, rule, comp_filter))
    names = [d[0] for d in cur.description]
    rows = [dict(zip(names, r)) for r in cur.fetchall() if r[names.index("comp")] is not None]
    total = {"messages": len(rows), "comp": sum(r["comp"] for r in rows)}
    rounds: dict[Any, dict[str, Any]] = defaultdict(lambda: {"runs": set(), "messages": 0, "comp": 0, "with": set()})
    runs: dict[str, dict[str, Any]] = defaultdict(lambda: {"messages": 0, "comp": 0, "first": None, "by": {}})
    for r in rows:
        g = rounds[r["round_after"]]
        g["runs"].add(r["run_id"])
        g["messages"] += 1
        g["comp"] += r["comp"]
        u = runs[r["run_id"]]
        u["messages"] += 1
        u["comp"] += r["comp"]
        if r["comp"]:
            g["with"].add(r["run_id"])
            u["first"] = r["round_after"] if u["first"] is None else min(u["first"], r["round_after"])
            u["by"][r["agent_id"]] = u["by"].get(r["agent_id"], 0) + 1
    return {"total": total,
            "by_round": {k: (len(g["runs"]), g["messages"], g["comp"], len(g["with"])) for k, g in rounds.items()},
            "runs": {k: (u["messages"], u["comp"], u["first"], dict(sorted(u["by"].items()))) for k, u in runs.items()}}


@pytest.mark.parametrize("comp_filter", ["none", "broadcast"])
@pytest.mark.parametrize("rule", ["intersection", "union", "majority"])
def test_compensation_partials_give_the_per_message_numbers(judged, rule, comp_filter):  # noqa: F811
    con = judged[0].con
    ref = reference(con, rule, comp_filter)
    for size in (40, 10**9):             # MAX_PAGES pages, one page
        out = comp.compensation(con, rule=rule, comp_filter=comp_filter, page_messages=size)
        assert (out["post_crash_messages"], out["comp_messages"]) == (ref["total"]["messages"], ref["total"]["comp"])
        assert ref["total"]["messages"] > 0
        assert {r["round_after"]: (r["runs"], r["messages"], r["comp"], r["runs_with_comp"])
                for r in out["by_round"]} == ref["by_round"]
        assert {r["run_id"]: (r["messages"], r["comp"], r["first_comp_round_after"], r["compensators"])
                for r in out["runs"]} == ref["runs"]
        assert sum(r["messages"] for r in out["by_model"]) == ref["total"]["messages"]


def test_the_broadcast_list_test_decides_as_the_published_exists_test(judged):  # noqa: F811
    """On every message of the planted study's crash runs, and on the fidelity cases (the study's
    own strings, clones, hyphen look-alikes)."""
    con = judged[0].con
    rows = con.execute(f"""
        SELECT {comp.names_crashed_sql()}, {comp.names_crashed_in_sql('cp.refs', 'a.model_label')}
        FROM messages m JOIN ({comp.crash_point_sql()}) cp USING (run_id)
        LEFT JOIN agents a ON a.run_id = m.run_id AND a.agent_id = m.sender""").fetchall()
    assert rows and {True, False} <= {r[0] for r in rows}
    assert all(a == b for a, b in rows)

    case_db = duckdb.connect()
    case_db.execute("CREATE TABLE agents (run_id VARCHAR, agent_id VARCHAR, name VARCHAR, model_label VARCHAR, "
                    "status VARCHAR)")
    case_db.execute("CREATE TABLE messages (run_id VARCHAR, message_id VARCHAR, sender VARCHAR, content VARCHAR)")
    for i, case in enumerate(CASES):
        case_db.execute("INSERT INTO messages VALUES (?, ?, ?, ?)", [f"r{i}", case["id"], case["sender"], case["text"]])
        for name, label in case["crashed"]:
            case_db.execute("INSERT INTO agents VALUES (?, ?, ?, ?, 'errored')", [f"r{i}", name, name, label])
        if case["sender"] not in {name for name, _ in case["crashed"]}:
            case_db.execute("INSERT INTO agents VALUES (?, ?, ?, ?, 'active')",
                            [f"r{i}", case["sender"], case["sender"], case.get("sender_model", "Some Model")])
    refs = ("(SELECT list(struct_pack(agent_id := x.agent_id, name := x.name, model_label := x.model_label)) "
            "FROM agents x WHERE x.run_id = m.run_id AND x.status = 'errored')")
    own = "(SELECT s.model_label FROM agents s WHERE s.run_id = m.run_id AND s.agent_id = m.sender)"
    decided = case_db.execute(f"SELECT {comp.names_crashed_sql()}, {comp.names_crashed_in_sql('m.refs', 'm.own')} "
                              f"FROM (SELECT m.*, {refs} AS refs, {own} AS own FROM messages m) AS m").fetchall()
    assert len(decided) == len(CASES) and all(a == b for a, b in decided)


def test_a_run_split_across_pages_is_summed_once(judged):  # noqa: F811
    """Pages are message-id ranges; one that cuts through a run's messages leaves that run's agents
    in two pages' partial rows. Summed a run range at a time, they still make one row per agent,
    and compensation counts the run once."""
    con = judged[0].con
    run, mid = con.execute("SELECT run_id, message_id FROM messages WHERE seq = 3 ORDER BY run_id LIMIT 1").fetchone()
    pages = [(None, mid), (mid, None)]
    assert con.execute("SELECT count(DISTINCT message_id < ?) FROM messages WHERE run_id = ?", [mid, run]).fetchone()[0] == 2
    tables = []
    for kw in ({"pages": pages}, {"pages": [(None, None)]}):
        counts = agent_counts(con, **kw)
        try:
            tables.append(con.execute(f"SELECT * FROM {counts.table} ORDER BY run_id, agent_id").fetchall())
        finally:
            counts.drop(con)
    assert tables[0] == tables[1] and tables[0]
    for comp_filter in ("none", "broadcast"):
        assert json.dumps(comp.compensation(con, comp_filter=comp_filter, pages=pages), default=str) == \
            json.dumps(comp.compensation(con, comp_filter=comp_filter, pages=[(None, None)]), default=str)


def test_permutation_chunks_bounded_by_cells_draw_the_same_splits():
    """The keys are one random stream drawn a chunk at a time: tiny chunks (an odd number of keys
    each) find the same hits as the default ones."""
    rng = np.random.default_rng(1)
    pairs = [(rng.random(30), rng.random(23)), (rng.random(30), rng.random(23) + 0.1)]
    runs = [permutation_hits(pairs, n_perm=777, rng=np.random.default_rng(5), **kw)
            for kw in ({}, {"chunk_cells": 53 * 3}, {"chunk": 1}, {"chunk_cells": 1})]
    assert runs[0] == runs[1] == runs[2] == runs[3] and 0 < runs[0][0] < 777

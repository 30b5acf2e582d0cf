"""Issue 12, memory flat in store size: analysis runs under a bounded DuckDB memory budget that
spills into a private folder, never fails for it, and the judge agreement cells (no self-join)
are the `judge_agreement` view's. No timings here: bench/analysis_memory.py measures."""

from __future__ import annotations

import json
import logging
import os
import tempfile
from pathlib import Path

import duckdb
import pytest

import sociolab.analysis.analyze as an
import sociolab.analysis.memory as memory
from sociolab.analysis.profiles import message_pages
from sociolab.orchestrator.store import Store

from tests.test_profiles import CB, J1, J2, J3, Builder, both, only_j1


@pytest.fixture()
def judged(tmp_path):
    """A small store: two series, a crash, three judges (one uncodable reply, one split vote)."""
    s = Store.open(tmp_path / "m.duckdb")
    b = Builder(s)
    for k in range(6):
        b.run(f"r{k}", "A" if k % 2 else "B", ["a", "b", "c"], errored={"c": 1} if k == 3 else None)
        b.msg(f"r{k}", "a", 0, {**both("phatic", "agree"), **only_j1("lead")})
        b.msg(f"r{k}", "b", 0, {"arch": {J1: True, J2: k % 2 == 0, J3: True}, "meta": {J1: False, J2: False, J3: True}})
        b.msg(f"r{k}", "c", 0, both("meta"), uncodable=[J3] if k == 2 else ())
        b.msg(f"r{k}", "c", 1, {}, is_error=k == 3)
        b.msg(f"r{k}", "b", 1, {**both("comp"), **only_j1("xref")}, levels={J1: "L2", J2: "L1"})
        b.msg(f"r{k}", "a", 2, both("lead", "comp"))
    b.write()
    # a coded row without a value: the view counts it in n and in no cell
    s.con.execute("UPDATE codes SET value = NULL WHERE message_id = 'r1#1' AND judge = ? AND flag = 'phatic'", [J2])
    path = Path(s.path)
    s.close()
    ro = Store.open_read_only(path)
    yield ro
    ro.close()


def view_rows(con, codebook: str) -> list[tuple]:
    return con.execute("""
        SELECT flag, judge_a, judge_b, n, kappa, percent_agreement, prevalence_a, prevalence_b, tt, tf, ft, ff
        FROM judge_agreement WHERE codebook_id = ? ORDER BY judge_a, judge_b, flag""", [codebook]).fetchall()


def test_agreement_cells_are_the_views_with_any_pages(judged):
    """Three judges, an uncodable reply, a coded row without a value: the mask patterns give the
    view's rows exactly, in one page and in the most pages allowed."""
    con = judged.con
    view = view_rows(con, CB)
    assert {(r[1], r[2]) for r in view} == {(J1, J2), (J1, J3), (J2, J3)}
    assert len(message_pages(con, 1)) > 1
    assert an.agreement_rows(con, CB, page_messages=1) == view == an.agreement_rows(con, CB)


def test_agreement_cells_with_one_judge_are_empty(tmp_path):
    s = Store.open(tmp_path / "one.duckdb")
    b = Builder(s)
    b.run("r", "A", ["a"])
    b.msg("r", "a", 0, {"phatic": {J1: True}})
    b.write()
    assert an.agreement_rows(s.con, CB) == view_rows(s.con, CB) == []
    s.close()


def test_analyze_runs_under_the_budget_and_gives_the_connection_its_settings_back(judged, monkeypatch):
    con = judged.con
    own = memory.settings(con)
    seen = []
    real = an.message_pages

    def spy(*args, **kwargs):
        seen.append(memory.settings(con))
        return real(*args, **kwargs)
    monkeypatch.setattr(an, "message_pages", spy)
    result = an.analyze(con, n_perm=50)
    probe = duckdb.connect()
    probe.execute(f"SET memory_limit = '{memory.MEMORY_LIMIT}'")
    probe.execute(f"SET allocator_flush_threshold = '{memory.FLUSH_THRESHOLD}'")
    assert seen == [(memory.settings(probe)[0], memory.THREADS, memory.settings(probe)[2])]
    assert memory.settings(con) == own != seen[0]
    assert result["agreement"]["by_flag"] and result["compensation"]["post_crash_messages"] > 0


def test_the_budget_changes_no_number(judged, monkeypatch):
    """The whole result is the same under the default budget, under a budget so small that
    DuckDB spills or gives up (then the analysis is computed again without it), and without one."""
    con = judged.con
    results = [an.analyze(con, n_perm=50)]
    monkeypatch.setattr(memory, "MEMORY_LIMIT", "1MB")
    results.append(an.analyze(con, n_perm=50))
    monkeypatch.setattr(memory, "MEMORY_LIMIT", memory.settings(con)[0])
    monkeypatch.setattr(memory, "THREADS", memory.settings(con)[1])
    monkeypatch.setattr(memory, "FLUSH_THRESHOLD", memory.settings(con)[2])
    results.append(an.analyze(con, n_perm=50))
    assert json.dumps(results[0]) == json.dumps(results[1]) == json.dumps(results[2])


def test_out_of_budget_is_computed_again_with_the_connections_settings(caplog):
    """A query that cannot run in the budget does not fail the analysis: within_budget logs it and
    computes again with the connection's own limit."""
    con = duckdb.connect()
    own = memory.settings(con)
    calls = []

    def compute() -> str:
        calls.append(memory.settings(con))
        if memory.settings(con) != own:
            raise duckdb.OutOfMemoryException("Out of Memory Error: test")
        return "done"
    with caplog.at_level(logging.WARNING, logger="sociolab.analysis.memory"):
        assert memory.within_budget(con, compute) == "done"
    assert len(calls) == 2 and calls[1] == own and memory.settings(con) == own
    assert "memory budget" in caplog.text


def test_read_only_stores_spill_into_a_private_folder_removed_on_close(tmp_path):
    """Not `<db>.tmp` beside a file opened read-only: a folder of the system's temp directory,
    made by DuckDB when it spills and removed when the store's last connection is closed."""
    db = tmp_path / "s.duckdb"
    Store.open(db).close()
    ro = Store.open_read_only(db)
    other = Store.open_read_only(db)          # the same file again: one DuckDB instance, one folder
    spill = Path(ro.con.execute("SELECT current_setting('temp_directory')").fetchone()[0])
    assert spill.parent == Path(tempfile.gettempdir()) and spill.name.startswith("sociolab-spill-")
    assert not spill.exists()                  # made only when needed
    ro.con.execute("SET memory_limit = '4MB'")
    ro.con.execute("CREATE TEMP TABLE big AS SELECT range AS i, md5(range::VARCHAR) AS s FROM range(300000)")
    assert spill.is_dir() and os.listdir(spill)
    other.close()
    ro.close()
    assert not spill.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.duckdb"]


def test_judge_runs_under_its_budget(tmp_path):
    """`sociolab judge` selects what is left to code under JUDGE_MEMORY_LIMIT, then gives the
    store's connection its own settings back."""
    from sociolab.cli import judge_within_budget

    store = Store.open(tmp_path / "j.duckdb")
    own = memory.settings(store.con)
    seen = judge_within_budget(store, lambda: memory.settings(store.con))
    probe = duckdb.connect()
    probe.execute(f"SET memory_limit = '{memory.JUDGE_MEMORY_LIMIT}'")
    probe.execute(f"SET allocator_flush_threshold = '{memory.FLUSH_THRESHOLD}'")
    assert seen == (memory.settings(probe)[0], memory.THREADS, memory.settings(probe)[2])
    assert memory.settings(store.con) == own
    store.close()

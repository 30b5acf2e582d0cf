"""Parquet shards beside a store (orchestrator/shards.py, orchestrator/sharded.py, `sociolab merge`).

A run with --shards writes each finished run as a shard and never opens the file for writing;
`sociolab` commands read the file plus its shards as one set of tables; `merge` folds them in,
idempotently; resume reads the manifest; a killed writer leaves nothing visible; and the tables
equal a normal run's for the same seeds.
"""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import duckdb
import pytest

from sociolab.api import run_plan_async
from sociolab.base.errors import UserError
from sociolab.config import load_plan
from sociolab.orchestrator import shards
from sociolab.orchestrator.store import RUN_TABLES, Store
from tests.conftest import REPO, TINY_DISCUSSION, cli, write_yaml
from tests.test_resume import COMPARE

GAMES = REPO / "scenarios/library/repeated_games.yaml"


def plan_file(tmp_path: Path, runs: int = 3) -> Path:
    return write_yaml(tmp_path, TINY_DISCUSSION + f"series:\n  A: {{runs: {runs}}}\n  B: {{runs: 2}}\n")


def run(path: Path, db: Path, *, sharded: bool = False, series: list[str] | None = None):
    plan = load_plan(path, only_series=series)
    return asyncio.run(run_plan_async(plan, db, shards=sharded))


def snapshot(db: Path) -> dict:
    """The compared tables as `sociolab` reads them: the file plus its shards."""
    with Store.open_read_only(db) as store:
        return {name: store.con.execute(sql).fetchall() for name, sql in COMPARE.items()}


def file_only(db: Path) -> dict:
    with duckdb.connect(str(db), read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in COMPARE.items()}


@pytest.fixture(scope="module")
def reference(tmp_path_factory) -> tuple[Path, dict]:
    """A normal run of the plan: what every sharded variant must equal."""
    folder = tmp_path_factory.mktemp("reference")
    path = plan_file(folder)
    db = folder / "normal.duckdb"
    assert run(path, db).ok
    return path, file_only(db)


def test_the_run_tables_are_the_stores():
    assert set(shards.RUN_TABLES) == set(RUN_TABLES)


def test_sharded_run_never_writes_the_file_and_reads_and_merges_to_a_normal_runs_tables(tmp_path, reference):
    path, expected = reference
    db = tmp_path / "s.duckdb"
    report = run(path, db, sharded=True)
    assert report.ok and report.completed == 5
    assert all(not rows for rows in file_only(db).values())          # nothing in the file itself
    assert len(shards.latest(db)) == 5
    assert snapshot(db) == expected                                  # file + shards = a normal run
    merged, leftovers = Store.open(db).merge_shards()
    assert (merged, leftovers) == (5, 0) and not shards.root(db).exists()
    assert file_only(db) == expected                                 # the file alone, after merging
    with Store.open(db) as store:
        assert store.merge_shards() == (0, 0)                        # idempotent
    assert file_only(db) == expected


def test_file_and_shards_are_one_set_of_tables_through_sql_and_results(tmp_path):
    db = tmp_path / "g.duckdb"
    reference = tmp_path / "ref.duckdb"
    assert cli("run", str(GAMES), "--db", str(reference), "--quiet").returncode == 0
    # half the runs in the file, the rest as shards
    plan = load_plan(GAMES)
    series = sorted({spec.series for spec in plan.runs if spec.series})
    assert len(series) >= 2
    first = cli("run", str(GAMES), "--db", str(db), "--quiet", "--series", series[0])
    rest = cli("run", str(GAMES), "--db", str(db), "--quiet", "--shards")
    assert first.returncode == 0 and rest.returncode == 0, rest.stderr
    assert "already complete" in rest.stdout
    query = "SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM messages), (SELECT count(*) FROM events)"
    counts = [cli("sql", query, "--db", str(d), "--format", "csv").stdout for d in (db, reference)]
    assert counts[0] == counts[1] and counts[0].splitlines()[1] != "0,0,0"
    results = [cli("results", "--db", str(d), "--json").stdout for d in (db, reference)]
    assert results[0] == results[1] and json.loads(results[0])
    # the file was read, not changed: a read-only open leaves its tables alone
    with duckdb.connect(str(db), read_only=True) as con:
        in_file = con.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert 0 < in_file < len(plan.runs)
    assert cli("merge", "--db", str(db)).returncode == 0
    assert cli("sql", query, "--db", str(db), "--format", "csv").stdout == counts[1]


def test_resume_from_the_manifest_and_a_killed_writer_leaves_nothing_visible(tmp_path, reference):
    path, expected = reference
    db = tmp_path / "s.duckdb"
    assert run(path, db, sharded=True).ok
    entries = sorted(shards.entries(db), key=lambda e: e.run_id)
    # a writer killed after renaming its folder, before its manifest entry: the run is not there
    killed = entries[0]
    (shards.root(db) / "manifest" / f"{killed.shard}.json").unlink()
    # a writer killed while writing its files, and one killed mid-way through the manifest file
    (shards.root(db) / "tmp" / "x.1.2").mkdir(parents=True)
    (shards.root(db) / "tmp" / "x.1.2" / "messages.parquet").write_bytes(b"PAR1 half")
    (shards.root(db) / "manifest" / ".y.json.abc.tmp").write_text('{"shard": "y", "run')
    with Store.open_read_only(db) as store:
        ids = [r[0] for r in store.con.execute("SELECT run_id FROM runs ORDER BY 1").fetchall()]
        assert ids == sorted(e.run_id for e in entries[1:])
    # a sharded rerun skips the complete runs and redoes the one without a manifest entry
    report = run(path, db, sharded=True)
    assert report.ok and (report.skipped, report.completed) == (len(entries) - 1, 1)
    assert snapshot(db) == expected
    # so does a rerun into the file: the question "which runs are done" sees shards
    (shards.root(db) / "manifest" / f"{shards.latest(db)[killed.run_id].shard}.json").unlink()
    report = run(path, db)
    assert report.ok and (report.skipped, report.completed) == (len(entries) - 1, 1)
    assert snapshot(db) == expected
    with Store.open(db) as store:
        assert store.merge_shards() == (len(entries) - 1, 4)   # leftovers: tmp, 2 orphan folders, tmp manifest
    assert file_only(db) == expected and not shards.root(db).exists()


def test_a_merge_killed_midway_is_completed_by_the_next(tmp_path, reference, monkeypatch):
    path, expected = reference
    db = tmp_path / "s.duckdb"
    assert run(path, db, sharded=True).ok
    real = shards.remove
    calls = []

    def die_after_two(db_path, entry):
        calls.append(entry.run_id)
        if len(calls) == 3:
            raise KeyboardInterrupt  # killed after the third run's transaction committed
        real(db_path, entry)

    monkeypatch.setattr(shards, "remove", die_after_two)
    store = Store.open(db)
    with pytest.raises(KeyboardInterrupt):
        store.merge_shards()
    store.close()
    assert snapshot(db) == expected          # mid-merge, the store still reads as one set of tables
    monkeypatch.setattr(shards, "remove", real)
    with Store.open(db) as store:
        assert store.merge_shards()[0] == 3   # the third again (replaced identically), and the rest
    assert file_only(db) == expected


def mark_failed(db: Path, run_id: str) -> None:
    """Rewrite the runs file of `run_id`'s newest shard with status 'failed' (a run to redo)."""
    target = shards.latest(db)[run_id].path(db, "runs")
    with duckdb.connect() as con:
        con.execute(f"COPY (SELECT * REPLACE ('failed' AS status) FROM read_parquet('{target}')) "
                    f"TO '{target}.new' (FORMAT parquet)")
    os.replace(f"{target}.new", target)


def test_a_newer_shard_replaces_the_files_run_and_an_older_shard(tmp_path, reference):
    path, expected = reference
    db = tmp_path / "s.duckdb"
    assert run(path, db).ok                                          # all in the file
    assert run(path, db, sharded=True).skipped == 5                  # nothing to do
    with Store.open(db) as store:                                    # one unfinished in the file
        store.con.execute("UPDATE runs SET status = 'failed' WHERE run_id = 't/A/001'")
    assert run(path, db, sharded=True).completed == 1                # redone as a shard
    assert snapshot(db) == expected                                  # the shard's version, once
    first = shards.latest(db)["t/A/001"].shard
    mark_failed(db, "t/A/001")                                       # and that shard failed too
    assert run(path, db, sharded=True).completed == 1                # a newer shard
    assert len(shards.entries(db)) == 2 and shards.latest(db)["t/A/001"].shard != first
    assert snapshot(db) == expected
    with Store.open(db) as store:
        assert store.merge_shards() == (1, 0)
    assert file_only(db) == expected


def test_bad_input_is_one_line(tmp_path, reference):
    path, _ = reference
    folder = tmp_path / "folder.duckdb"
    folder.mkdir()
    missing = tmp_path / "missing.duckdb"
    for args, says in [(("merge", "--db", str(folder)), "not a database file"),
                       (("merge", "--db", str(missing)), "no such database file and no shards")]:
        out = cli(*args)
        assert out.returncode == 2 and says in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    db = tmp_path / "ok.duckdb"
    assert run(path, db, sharded=True).ok
    entry = sorted(shards.entries(db), key=lambda e: e.run_id)[0]
    manifest = shards.root(db) / "manifest" / f"{entry.shard}.json"
    manifest.write_text("{not json")
    for args in (("sql", "SELECT 1", "--db", str(db)), ("merge", "--db", str(db))):
        out = cli(*args)
        assert out.returncode == 2 and "broken shard manifest entry" in out.stderr
        assert len(out.stderr.strip().splitlines()) == 1, out.stderr
    manifest.write_text(json.dumps(entry.__dict__))
    entry.path(db, "messages").rename(tmp_path / "away.parquet")
    out = cli("sql", "SELECT 1", "--db", str(db))
    assert out.returncode == 2 and "lacks its messages file" in out.stderr
    (tmp_path / "away.parquet").rename(entry.path(db, "messages"))
    # a run to redo in the file while an unmerged shard holds it: merge first, or rerun with --shards
    mark_failed(db, entry.run_id)
    with pytest.raises(UserError, match="unmerged shard; run `sociolab merge"):
        run(path, db)
    assert run(path, db, sharded=True).completed == 1


def test_view_and_export_read_the_shards(tmp_path, reference):
    from sociolab.export import open_source
    from sociolab.view.routes import Viewer
    from sociolab.view.server import open_store

    path, _ = reference
    db = tmp_path / "s.duckdb"
    assert run(path, db, sharded=True).ok
    store = open_store(db)
    try:
        page = Viewer(store.con, db.name, prepare=lambda cursor: shards.attach(cursor, db)).handle("/", {})
        assert page.status == 200 and "t/A/001" in page.body
    finally:
        store.close()
    with open_source(db) as store:
        assert store.con.execute("SELECT count(*) FROM runs").fetchone() == (5,)

"""`sociolab export --format parquet|csv|jsonl` and `sociolab.*_df`: a real store made by real offline
runs (a judged quickstart discussion and a small peer-preservation suite with outcomes and tool
calls), exported by the CLI in subprocesses, read back with DuckDB, pandas and polars."""

from __future__ import annotations

import hashlib
import json
import sys
from pathlib import Path

import duckdb
import pandas as pd
import polars as pl
import pytest

from tests.conftest import REPO, cli, write_yaml

QUICKSTART = REPO / "scenarios/library/quickstart.yaml"
WARROOM_FIXTURES = REPO / "tests/fixtures/warroom/transcripts"

# Two agents on two conditions: outcomes per agent, tool calls, a sample per agent episode.
PEERS = """
name: peers
kind: peer_preservation
seed: 5
agents:
  personas:
    - {key: alpha, model: sim/alpha}
    - {key: beta, model: sim/beta}
params: {}
series:
  plain: {params: {}}
  other: {params: {}}
"""


def run_ok(*args: str) -> None:
    done = cli(*args)
    assert done.returncode == 0, done.stderr


@pytest.fixture(scope="package")
def store_db(tmp_path_factory) -> Path:
    """A judged discussion plus an agentic suite, all offline, in one DuckDB file."""
    folder = tmp_path_factory.mktemp("export-store")
    db = folder / "s.duckdb"
    run_ok("run", str(QUICKSTART), "--sim", "--db", str(db), "--quiet")
    run_ok("judge", "--sim", "--db", str(db), "--quiet")
    run_ok("run", str(write_yaml(folder, PEERS, "peers.yaml")), "--db", str(db), "--quiet")
    return db


def fingerprint(path: Path) -> tuple[str, int]:
    """What 'the source was not touched' means: same bytes, same modification time."""
    return hashlib.sha256(path.read_bytes()).hexdigest(), path.stat().st_mtime_ns


def source_counts(db: Path) -> dict[str, int]:
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'main'").fetchall()]
        return {n: con.execute(f'SELECT count(*) FROM "{n}"').fetchone()[0] for n in names}


def export(db: Path, to: Path, fmt: str, *extra: str):
    return cli("export", "--format", fmt, "--to", str(to), "--db", str(db), *extra)


def test_parquet_export_has_every_table_and_view_typed_and_readable_by_duckdb_pandas_polars(store_db, tmp_path):
    before = fingerprint(store_db)
    out = tmp_path / "pq"
    done = export(store_db, out, "parquet")
    assert done.returncode == 0, done.stderr
    assert fingerprint(store_db) == before

    counts = source_counts(store_db)
    manifest = json.loads((out / "manifest.json").read_text())
    assert {f["name"] for f in manifest["files"]} == set(counts)
    assert {f["name"] for f in manifest["files"] if f["kind"] == "view"} == {"adjudicated_codes", "judge_agreement", "action_names"}
    assert sorted(p.name for p in out.iterdir()) == sorted([f"{n}.parquet" for n in counts] +
                                                           ["README.md", "manifest.json"])
    from sociolab import __version__
    from sociolab.orchestrator.store import SCHEMA_VERSION

    assert manifest["sociolab_version"] == __version__ and manifest["schema_version"] == SCHEMA_VERSION
    assert manifest["source_db"] == str(store_db.resolve()) and manifest["credits"] == []
    for entry in manifest["files"]:
        path = out / entry["file"]
        assert entry["rows"] == counts[entry["name"]]
        assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{path}')").fetchall()[0][0] == entry["rows"]
        assert len(pd.read_parquet(path)) == entry["rows"]
        assert pl.read_parquet(path).height == entry["rows"]
        described = dict(duckdb.sql(f"DESCRIBE SELECT * FROM read_parquet('{path}')").fetchall()[i][:2]
                         for i in range(len(entry["columns"])))
        for column in entry["columns"]:  # the store's types, except JSON, which travels as text
            assert described[column["name"]] == ("VARCHAR" if column["type"] == "JSON" else column["type"])
    assert counts["messages"] > 40 and counts["codes"] > 0 and counts["outcomes"] > 0 and counts["tool_calls"] > 0

    messages = pd.read_parquet(out / "messages.parquet")
    assert str(messages["seq"].dtype) == "int32" and str(messages["is_error"].dtype) == "bool"
    assert str(messages["started_s"].dtype) == "float64"
    runs = pl.read_parquet(out / "runs.parquet")
    assert runs.schema["started_at"] == pl.Datetime("us") and runs.schema["seed"] == pl.Int64
    assert runs.schema["config"] == pl.String and json.loads(runs["config"][0])["kind"] in ("discussion",
                                                                                           "peer_preservation")
    codes = pl.read_parquet(out / "codes.parquet")
    assert codes.schema["value"] == pl.Boolean and codes.schema["coded_at"] == pl.Datetime("us")
    readme = (out / "README.md").read_text()
    assert f"schema v{SCHEMA_VERSION}" in readme and "| messages.parquet | table |" in readme


def test_csv_and_jsonl_export_only_the_tables_asked_for(store_db, tmp_path):
    counts = source_counts(store_db)
    done = export(store_db, tmp_path / "csv", "csv", "--tables", "runs,messages,judge_agreement")
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in (tmp_path / "csv").iterdir()) == [
        "README.md", "judge_agreement.csv", "manifest.json", "messages.csv", "runs.csv"]
    for name in ("runs", "messages", "judge_agreement"):
        assert duckdb.sql(f"SELECT count(*) FROM read_csv('{tmp_path / 'csv' / name}.csv')").fetchall()[0][0] \
            == counts[name]
    assert len(pd.read_csv(tmp_path / "csv/messages.csv")) == counts["messages"]

    done = export(store_db, tmp_path / "jl", "jsonl", "--tables", "outcomes,runs")
    assert done.returncode == 0, done.stderr
    lines = (tmp_path / "jl/runs.jsonl").read_text().splitlines()
    assert len(lines) == counts["runs"]
    assert isinstance(json.loads(lines[0])["config"], dict)  # JSON columns stay nested in JSON Lines
    outcomes = pl.read_ndjson(tmp_path / "jl/outcomes.jsonl")
    assert outcomes.height == counts["outcomes"] and outcomes.schema["value"] == pl.Float64
    manifest = json.loads((tmp_path / "jl/manifest.json").read_text())
    assert [f["name"] for f in manifest["files"]] == ["outcomes", "runs"] and manifest["format"] == "jsonl"


def test_imported_study_data_carry_their_credit_into_the_manifest(tmp_path):
    db = tmp_path / "w.duckdb"
    run_ok("import", "warroom", str(WARROOM_FIXTURES), "--db", str(db))
    done = export(db, tmp_path / "out", "parquet", "--tables", "runs")
    assert done.returncode == 0, done.stderr
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert len(manifest["credits"]) == 1 and "CC BY 4.0" in manifest["credits"][0]
    assert "warroom" in manifest["credits"][0]
    from sociolab.analysis.report import imported_notes

    with duckdb.connect(str(db), read_only=True) as con:  # the report's words, kept in step
        assert manifest["credits"] == imported_notes(con)
    assert "## Credit and licence" in (tmp_path / "out/README.md").read_text()
    assert "Credit:" in done.stdout and "CC BY 4.0" in done.stdout


def test_overwrite_replaces_only_its_own_files_and_never_writes_through_a_link(store_db, tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    outside = tmp_path / "outside.csv"
    outside.write_text("keep")
    (out / "runs.csv").symlink_to(outside)
    refused = export(store_db, out, "csv", "--tables", "runs")
    assert refused.returncode == 2 and "--overwrite" in refused.stderr
    done = export(store_db, out, "csv", "--tables", "runs", "--overwrite")
    assert done.returncode == 0, done.stderr
    assert outside.read_text() == "keep" and not (out / "runs.csv").is_symlink()
    assert (out / "notes.txt").read_text() == "mine"
    assert (out / "runs.csv").read_text().startswith("run_id,source,suite")


def bad_cases(store_db: Path, tmp_path: Path) -> list[tuple[list[str], str]]:
    a_file = tmp_path / "a-file"
    a_file.write_text("x")
    full = tmp_path / "full"
    full.mkdir()
    (full / "x").write_text("x")
    new = str(tmp_path / "new")
    db = ["--db", str(store_db)]
    return [
        (["--format", "parquet", "--to", new, "--tables", "runs,nope", *db], "no table or view named 'nope'"),
        (["--format", "xlsx", "--to", new, *db], "unknown --format 'xlsx'"),
        (["--format", "csv", "--to", str(a_file), *db], "it is a file"),
        (["--format", "csv", "--to", new, "--db", str(tmp_path / "missing.duckdb")], "no such database file"),
        (["--format", "csv", "--to", new, "--db", str(a_file)], "not a DuckDB database file"),
        (["--format", "csv", "--to", str(full), *db], "is not empty"),
        (["--format", "csv", "--to", str(tmp_path / "no/such/dir"), *db], "does not exist"),
        (["--format", "inspect", "--to", new, "--tables", "runs", *db], "--tables applies to"),
        (["--format", "csv", "--to", new, "--tables", ",", *db], "names nothing"),
        (["--to", new, *db], "Missing option '--format'"),
    ]


def test_bad_inputs_are_one_line_exit_2_and_write_nothing(store_db, tmp_path):
    before_db = fingerprint(store_db)
    for args, expected in bad_cases(store_db, tmp_path):
        listing = sorted(str(p) for p in tmp_path.rglob("*"))
        done = cli("export", *args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        assert len(done.stderr.strip().splitlines()) == 1 and done.stderr.startswith("error: "), done.stderr
        assert expected in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        assert sorted(str(p) for p in tmp_path.rglob("*")) == listing, args
    assert fingerprint(store_db) == before_db


# ---- sociolab.*_df -------------------------------------------------------------------------

FRAMES = {"messages_df": "messages", "codes_df": "codes", "runs_df": "runs", "outcomes_df": "outcomes"}


def test_dataframe_functions_return_pandas_or_polars_with_every_row(store_db):
    import sociolab

    counts = source_counts(store_db)
    for function, table in FRAMES.items():
        as_pandas = getattr(sociolab, function)(store_db)
        as_polars = getattr(sociolab, function)(store_db, polars=True)
        assert isinstance(as_pandas, pd.DataFrame) and isinstance(as_polars, pl.DataFrame)
        assert len(as_pandas) == as_polars.height == counts[table] > 0
        assert list(as_pandas.columns) == as_polars.columns
    messages = sociolab.messages_df(store_db)
    assert str(messages["seq"].dtype) == "int32" and messages["content"].map(type).eq(str).all()
    assert sociolab.runs_df(store_db, polars=True).schema["started_at"] == pl.Datetime("us")
    assert sociolab.codes_df(store_db, polars=True).schema["value"] == pl.Boolean


def test_a_missing_dataframe_library_is_one_clear_line(store_db, monkeypatch):
    import sociolab
    from sociolab.base.errors import UserError

    monkeypatch.setitem(sys.modules, "pandas", None)  # import pandas now raises ImportError
    with pytest.raises(UserError, match=r"messages_df needs pandas.*pip install 'sociolab\[dataframes\]'"):
        sociolab.messages_df(store_db)
    monkeypatch.setitem(sys.modules, "polars", None)
    with pytest.raises(UserError, match=r"runs_df needs polars"):
        sociolab.runs_df(store_db, polars=True)


def older_store(path: Path, version: int) -> Path:
    """A store as a sociolab of schema `version` left it (the migrations up to it, nothing after)."""
    from sociolab.orchestrator.store import MIGRATIONS

    with duckdb.connect(str(path)) as con:
        con.execute("CREATE TABLE schema_version (version INTEGER PRIMARY KEY, applied_at TIMESTAMP "
                    "DEFAULT current_timestamp)")
        for number, migration in enumerate(MIGRATIONS[:version], start=1):
            con.execute(migration)
            con.execute("INSERT INTO schema_version (version) VALUES (?)", [number])
    return path


def test_an_older_store_is_exported_as_it_is_never_migrated(tmp_path):
    from sociolab.orchestrator.store import SCHEMA_VERSION

    db = older_store(tmp_path / "old.duckdb", SCHEMA_VERSION - 1)
    before = fingerprint(db)
    done = export(db, tmp_path / "out", "parquet")
    assert done.returncode == 0, done.stderr
    assert fingerprint(db) == before
    manifest = json.loads((tmp_path / "out/manifest.json").read_text())
    assert manifest["schema_version"] == SCHEMA_VERSION - 1
    assert f"this sociolab writes v{SCHEMA_VERSION}" in (tmp_path / "out/README.md").read_text()
    refused = export(db, tmp_path / "logs", "inspect")
    assert refused.returncode == 2 and refused.stderr.count("\n") == 1 and "--format inspect reads" in refused.stderr
    assert not (tmp_path / "logs").exists() and fingerprint(db) == before


def test_newer_and_foreign_databases_are_refused_untouched(tmp_path):
    newer = older_store(tmp_path / "newer.duckdb", 1)
    with duckdb.connect(str(newer)) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (999)")
    foreign = tmp_path / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE users (id INTEGER)")
    for db, expected in ((newer, "newer than this sociolab"), (foreign, "not a sociolab database")):
        before = fingerprint(db)
        done = export(db, tmp_path / "out", "csv")
        assert done.returncode == 2 and expected in done.stderr and done.stderr.count("\n") == 1, done.stderr
        assert fingerprint(db) == before and not (tmp_path / "out").exists()

"""`sociolab sql` is read-only in fact and streams; stored text is never rich markup (issue 10).
Through the real CLI in subprocesses, against a real DuckDB file made by a sim run."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
import time

import pytest

from tests.conftest import REPO, cli

QUICKSTART = REPO / "scenarios/library/quickstart.yaml"


@pytest.fixture(scope="module")
def db(tmp_path_factory):
    path = tmp_path_factory.mktemp("sqlmarkup") / "q.duckdb"
    ran = cli("run", str(QUICKSTART), "--db", str(path), "--quiet")
    assert ran.returncode == 0, ran.stderr
    return path


def refused_cases(out):
    """(label, args after `sql`, file that must not appear)."""
    target = out / "x.csv"
    return [
        ("copy to", [f"COPY (SELECT * FROM runs) TO '{target}'"], target),
        ("copy lower case", [f"copy runs to '{target}' (header)"], target),
        ("export database", [f"EXPORT DATABASE '{out / 'exported'}'"], out / "exported"),
        ("attach", [f"ATTACH '{out / 'other.duckdb'}' AS other"], out / "other.duckdb"),
        ("detach", ["DETACH other"], None),
        ("install", ["INSTALL httpfs"], None),
        ("load", ["LOAD httpfs"], None),
        ("import database", [f"IMPORT DATABASE '{out}'"], None),
        ("pragma", ["PRAGMA version"], None),
        ("call", ["CALL pragma_version()"], None),
        ("set re-enables access", ["SET enable_external_access = true"], None),
        ("set then copy", [f"SET enable_external_access = true; COPY runs TO '{target}'"], target),
        ("copy after a select", [f"SELECT 1; COPY runs TO '{target}'"], target),
        ("copy after selects, spaced", [f"  select 1 ;\n\n  SELECT 2;copy runs to '{target}';"], target),
        ("block comment before copy", [f"/* harmless */ COPY runs TO '{target}'"], target),
        ("line comment before copy", ["--", f"-- harmless\n  COPY runs TO '{target}'"], target),
        ("write", ["DELETE FROM runs"], None),
    ]


@pytest.mark.parametrize("label", [c[0] for c in refused_cases(REPO)])
def test_statements_that_are_not_queries_are_refused_up_front(db, tmp_path, label):
    _, args, target = next(c for c in refused_cases(tmp_path) if c[0] == label)
    out = cli("sql", "--db", str(db), *args)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr
    assert lines[0].startswith("error: sociolab sql is read-only: ") and "is not allowed" in lines[0]
    assert out.stdout == ""
    if target is not None:
        assert not target.exists()
    assert sorted(os.listdir(tmp_path)) == []


def test_copy_names_the_alternative(db, tmp_path):
    out = cli("sql", f"copy runs to '{tmp_path / 'x.csv'}'", "--db", str(db))
    assert out.stderr.strip() == "error: sociolab sql is read-only: COPY is not allowed; use --format csv to export"


@pytest.mark.parametrize("query", ["SELECT * FROM read_csv('/etc/passwd')",
                                   "SELECT * FROM read_text('/etc/passwd')",
                                   "SELECT * FROM glob('/root/*')",
                                   "SELECT count(*) FROM glob('/*')",
                                   "SELECT * FROM '/etc/passwd'"])
def test_queries_cannot_read_host_files(db, query):
    out = cli("sql", query, "--db", str(db), "--format", "csv")
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: SQL error") and "Traceback" not in out.stderr
    assert "root:" not in out.stdout + out.stderr and out.stdout == ""


def test_queries_still_work(db):
    as_csv = cli("sql", "--db", str(db), "-f", "csv", "--", "-- the runs\nSELECT run_id FROM runs; ")
    assert as_csv.returncode == 0, as_csv.stderr
    assert as_csv.stdout.splitlines() == ["run_id", "quickstart/001"]
    for query in ("WITH r AS (SELECT * FROM runs) SELECT count(*) AS n FROM r", "FROM runs SELECT count(*) AS n",
                  "select 0 as n; SELECT count(*) AS n FROM runs"):
        out = cli("sql", query, "--db", str(db), "-f", "json")
        assert out.returncode == 0 and json.loads(out.stdout) == [{"n": 1}], (query, out.stderr)
    assert cli("sql", "DESCRIBE runs", "--db", str(db)).returncode == 0
    assert json.loads(cli("sql", "SELECT 1 AS a WHERE false", "--db", str(db), "-f", "json").stdout) == []


def test_a_huge_result_streams(db):
    start = time.monotonic()
    table = cli("sql", "SELECT * FROM range(100000000)", "--db", str(db), timeout=60)
    assert table.returncode == 0, table.stderr
    assert time.monotonic() - start < 20
    assert "│ 199 " in table.stdout and "│ 200 " not in table.stdout
    assert "more rows exist; first 200 shown" in table.stdout

    limited = cli("sql", "SELECT * FROM range(100000000)", "--db", str(db), "--limit", "5", "--format", "csv")
    assert limited.returncode == 0, limited.stderr
    assert limited.stdout.splitlines() == ["range", "0", "1", "2", "3", "4"]
    as_json = cli("sql", "SELECT * FROM range(100000000)", "--db", str(db), "--limit", "3", "-f", "json")
    assert json.loads(as_json.stdout) == [{"range": 0}, {"range": 1}, {"range": 2}]
    short = cli("sql", "SELECT * FROM range(7)", "--db", str(db), "--limit", "3")
    assert "│ 2 " in short.stdout and "│ 3 " not in short.stdout and "more rows exist" in short.stdout
    bad = cli("sql", "SELECT 1", "--db", str(db), "--limit", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1

    # csv without --limit: the first rows arrive while the rest is still being produced
    proc = subprocess.Popen([sys.executable, "-m", "sociolab.cli", "sql", "SELECT * FROM range(100000000)",
                             "--db", str(db), "--format", "csv"], cwd=REPO, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        first = [proc.stdout.readline() for _ in range(3)]
        assert first == ["range\n", "0\n", "1\n"]
        assert time.monotonic() - start < 60
    finally:
        proc.kill()
        proc.wait()


@pytest.mark.parametrize("text", ["[/]", "[bold]x[/bold]", "[red]", "\\[x]", "[link=file:///etc]y[/link]"])
def test_stored_text_is_printed_literally(db, text):
    literal = text.replace("'", "''")
    out = cli("sql", f"SELECT '{literal}' AS says, '{literal}' AS \"{text}\"", "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert out.stdout.count(text) == 3, out.stdout  # the column name and both cells


def test_emoji_codes_in_an_error_line_stay_literal(tmp_path):
    out = cli("run", str(tmp_path / "plan:x::smile:.yaml"), "--db", str(tmp_path / "e.duckdb"))
    assert out.returncode == 2 and "plan:x::smile:.yaml" in out.stderr, out.stderr


def test_a_coder_named_like_markup_imports_and_agreement_prints(db, tmp_path):
    import shutil

    work = tmp_path / "a.duckdb"
    shutil.copy(db, work)
    judged = cli("judge", "--db", str(work), "--sim", "--quiet")
    assert judged.returncode == 0, judged.stderr
    ids = [r["message_id"] for r in json.loads(
        cli("sql", "SELECT message_id FROM messages WHERE sender <> 'user' ORDER BY seq LIMIT 12", "--db", str(work),
            "-f", "json").stdout)]
    sample = tmp_path / "coded.csv"
    with sample.open("w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["id", "coder", "phatic", "meta"])
        for i, message_id in enumerate(ids):
            writer.writerow([message_id, "[/]", "true" if i % 2 else "", "true" if i % 3 == 0 else ""])
            writer.writerow([message_id, "[bold]x[/bold]", "true" if i % 3 else "", ""])
    imported = cli("validate", "import", str(sample), "--db", str(work))
    assert imported.returncode == 0, imported.stderr
    assert "[/]: 12 messages" in imported.stdout and "[bold]x[/bold]: 12 messages" in imported.stdout
    for _ in range(2):  # every later agreement works too
        agreement = cli("agreement", "--db", str(work), "--n-boot", "50")
        assert agreement.returncode == 0, agreement.stderr
        assert "Traceback" not in agreement.stderr
        assert "human:[/]" in agreement.stdout and "human:[bold]x[/bold]" in agreement.stdout
    analyzed = cli("analyze", "--db", str(work))
    assert analyzed.returncode == 0, analyzed.stderr

"""Bad input never gets a traceback: one line naming what to fix, exit code 2, and nothing stored
is lost; a failed command leaves no empty database behind and never writes to another program's
DuckDB file. Each case was once a traceback, a hang or a silently wrong run (issue 10)."""

from __future__ import annotations

import os

import duckdb
import pytest

from tests.conftest import TINY_DISCUSSION, cli, write_yaml

TINY = TINY_DISCUSSION


def refused(out, *needles: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr[-2000:])
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr[-2000:]
    assert "Traceback" not in out.stderr + out.stdout
    for needle in needles:
        assert needle in lines[0], lines[0]


@pytest.mark.parametrize("edit, needles", [
    (lambda t: t.replace("  rounds: 2", "  rounds: true"), (":9: params.rounds: true is a yes/no value",)),
    (lambda t: t.replace("seed: 3", "seed: 3\nrepeats: yes"), (":4: repeats: true is a yes/no value",)),
    (lambda t: t.replace("  only: [llama, kimi]", "  only: []"), ("no agents",)),
    (lambda t: t.replace("seed: 3", "seed: 3\nseed: 4"), (":4: seed: this key appears twice (first on line 3)",)),
    (lambda t: t.replace("  rounds: 2", "  rounds: 2\n  nested: " + "[" * 5000 + "]" * 5000),
     ("nested more than 100 levels deep",)),
    (lambda t: t.replace("params:", "paramz:"), (":7: paramz: unknown key",)),
])
def test_a_bad_scenario_file_is_one_line_and_stores_nothing(tmp_path, edit, needles):
    path = write_yaml(tmp_path, edit(TINY.lstrip()))
    db = tmp_path / "x.duckdb"
    refused(cli("run", str(path), "--db", str(db)), *needles)
    assert not db.exists()


def test_an_endless_file_a_folder_and_a_missing_folder_are_one_line(tmp_path):
    refused(cli("run", "/dev/zero", "--db", str(tmp_path / "a.duckdb"), timeout=60), "is a character device")
    pipe = tmp_path / "pipe.yaml"
    os.mkfifo(pipe)  # nobody writes to it: open() would block for ever
    refused(cli("run", str(pipe), "--db", str(tmp_path / "a.duckdb"), timeout=60), "is a named pipe")
    refused(cli("run", str(tmp_path), "--db", str(tmp_path / "a.duckdb")), "is a directory")
    refused(cli("run", str(write_yaml(tmp_path, TINY)), "--db", str(tmp_path / "no" / "such" / "x.duckdb")),
            "cannot open the database")
    assert not list(tmp_path.glob("*.duckdb"))


def test_another_programs_duckdb_file_is_never_written(tmp_path):
    foreign = tmp_path / "theirs.duckdb"
    with duckdb.connect(str(foreign)) as con:
        con.execute("CREATE TABLE measurements (x INTEGER)")
    before = foreign.read_bytes()
    refused(cli("run", str(write_yaml(tmp_path, TINY)), "--db", str(foreign)), "not a sociolab database",
            "measurements")
    refused(cli("judge", "--db", str(foreign), "--sim"), "not a sociolab database")
    refused(cli("judge", "--db", str(tmp_path / "empty.duckdb"), "--sim"), "no runs match")  # no bar first
    assert foreign.read_bytes() == before


def test_corrupted_and_truncated_stores_are_one_line_and_kept(tmp_path):
    scenario = write_yaml(tmp_path, TINY)
    good = tmp_path / "good.duckdb"
    assert cli("run", str(scenario), "--db", str(good), "-q").returncode == 0
    truncated = tmp_path / "truncated.duckdb"
    truncated.write_bytes(good.read_bytes()[:20000])
    garbage = tmp_path / "garbage.duckdb"
    garbage.write_bytes(bytes(range(256)) * 400)
    for broken in (truncated, garbage):
        size = broken.stat().st_size
        refused(cli("run", str(scenario), "--db", str(broken)), "cannot open the database")
        refused(cli("judge", "--db", str(broken), "--sim"), "cannot open the database")
        assert broken.stat().st_size == size


def test_a_refused_command_leaves_no_empty_database(tmp_path):
    for args in (["judge", "--db", str(tmp_path / "j.duckdb"), "--sim"],
                 ["import", "warroom", str(tmp_path / "nowhere"), "--db", str(tmp_path / "i.duckdb")],
                 ["validate", "import", str(tmp_path / "none.csv"), "--db", str(tmp_path / "v.duckdb")]):
        assert cli(*args).returncode == 2
    assert not list(tmp_path.glob("*.duckdb*"))


def test_counts_out_of_range_and_unwritable_outputs_are_one_line(tmp_path):
    db = tmp_path / "s.duckdb"
    assert cli("run", str(write_yaml(tmp_path, TINY)), "--db", str(db), "-q").returncode == 0
    assert cli("judge", "--db", str(db), "--sim", "-q").returncode == 0
    refused(cli("agreement", "--db", str(db), "--n-boot", "-1"), "--n-boot -1: give a whole number from 1")
    refused(cli("agreement", "--db", str(db), "--n-boot", "1000000000"), "to 100,000")
    refused(cli("validate", "export", "--db", str(db), "--n", "-5", "-o", str(tmp_path / "s.csv")), "--n -5")
    refused(cli("analyze", "--db", str(db), "--n-perm", "-3"), "--n-perm -3")
    refused(cli("report", "--db", str(db), "-o", "/dev/full"), "cannot write /dev/full")
    refused(cli("run", str(write_yaml(tmp_path, TINY)), "--db", str(db), "--concurrency", "0"), "--concurrency 0")
    assert cli("sql", "SELECT count(*) FROM codes", "--db", str(db), "-f", "csv").stdout.splitlines()[1] != "0"

"""Every cause of a traceback, hang or damaged file that bench/bad_inputs.py found (docs/reliability.md),
as a table: each bad input through the real CLI (forked processes, tests/conftest.py `cli_batch`) is
refused in one `error:` line with exit code 2, and no store or foreign file it was given changes."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, TINY_DISCUSSION, cli, cli_batch, write_yaml

TRANSCRIPT = REPO / "tests/fixtures/warroom/transcripts/A/warroom-A-run19.json"
LONG = "n" * 300  # past the 255 bytes a file name may have


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    """A folder with a judged store, a coded validation sample and the broken files the cases name."""
    root = tmp_path_factory.mktemp("bad")
    scenario = write_yaml(root, TINY_DISCUSSION)
    store = root / "s.duckdb"
    for args in (["run", str(scenario), "--db", str(store), "-q"], ["judge", "--db", str(store), "--sim", "-q"],
                 ["validate", "export", "--db", str(store), "-o", str(root / "sample.csv"), "--n", "4"]):
        assert cli(*args).returncode == 0, args
    half = root / "half.duckdb"
    half.write_bytes(store.read_bytes()[: store.stat().st_size // 2])
    foreign = root / "foreign.duckdb"
    with duckdb.connect(str(foreign)) as con:  # another program that versions its own schema
        con.execute("CREATE TABLE schema_version (version INTEGER); INSERT INTO schema_version VALUES (1);"
                    "CREATE TABLE users (name VARCHAR)")
    newer = root / "newer.duckdb"
    shutil.copy(store, newer)
    with duckdb.connect(str(newer)) as con:
        con.execute("INSERT INTO schema_version (version) VALUES (999)")
    (root / "header.csv").write_text((root / "sample.csv").read_text(encoding="utf-8").splitlines()[0] + "\n")
    big_cell = root / "big.csv"
    lines = (root / "sample.csv").read_text(encoding="utf-8").splitlines()
    big_cell.write_text("\n".join([lines[0], lines[1].replace(",,", ",x" * 2_600_000 + ",", 1)]) + "\n")
    suites = {"surrogate.yaml": TINY_DISCUSSION.replace("rounds: 2", 'rounds: 2\n  persona: "\\ud800"'),
              "repeats.yaml": TINY_DISCUSSION + "repeats: 100000000000\n",
              "seeds.yaml": TINY_DISCUSSION + "seeds: [1, 1]\n",
              "noseeds.yaml": TINY_DISCUSSION + "seeds: []\n",
              "timestamp.yaml": TINY_DISCUSSION.replace("rounds: 2", "rounds: !!timestamp 7"),
              "runs.yaml": TINY_DISCUSSION + "series:\n  A: {runs: 100000000000}\n",
              "cross.yaml": TINY_DISCUSSION + "cross:\n" + "".join(f"  k{i}: [0,1,2,3,4,5,6,7,8,9]\n" for i in range(8)),
              "name.yaml": TINY_DISCUSSION.replace("name: t\n", "name: " + "x" * 100_000 + "\n", 1)}
    for name, text in suites.items():
        write_yaml(root, text, name)
    for name, body in {"nested": "[" * 100_000 + "]" * 100_000,
                       "surrogate": TRANSCRIPT.read_text(encoding="utf-8").replace('"text": "', '"text": "\\ud800', 1)
                       }.items():
        (root / name / "A").mkdir(parents=True)
        (root / name / "A" / "warroom-A-run01.json").write_text(body, encoding="utf-8")
    os.mkfifo(root / "pipe.yaml")
    return root


def digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.glob("*.duckdb"))}


CASES: list[tuple[list[str], str]] = [
    # a name too long for the file system, wherever a file is read
    (["run", f"{LONG}.yaml", "--sim", "--db", "o.duckdb"], "File name too long"),
    (["judge", "--config", f"{LONG}.yaml", "--db", "s.duckdb", "--sim"], "File name too long"),
    (["judge", "--codebook", f"{LONG}.yaml", "--db", "s.duckdb", "--sim"], ""),
    (["models", "check", f"{LONG}.yaml"], "File name too long"),
    (["validate", "import", f"{LONG}.csv", "--db", "s.duckdb"], "File name too long"),
    (["agreement", "--csv", f"{LONG}.csv"], "File name too long"),
    (["import", "warroom", LONG, "--db", "o.duckdb"], ""),
    (["run", "scenario.yaml", "--db", f"{LONG}.duckdb"], ""),
    # a store truncated to half its size
    *[([*cmd, "--db", "half.duckdb"], "truncated or damaged") for cmd in (
        ["analyze"], ["report", "-o", "r.html"], ["results"], ["agreement"], ["judge", "--sim"],
        ["validate", "export", "-o", "v.csv"], ["run", "scenario.yaml"])],
    # another program's file with a schema_version table of its own: refused by every command
    *[([*cmd, "--db", "foreign.duckdb"], "not a sociolab database") for cmd in (
        ["sql", "SELECT 1"], ["analyze"], ["run", "scenario.yaml"], ["judge", "--sim"], ["results"])],
    # a store of a newer sociolab: the read-only commands refuse it too
    *[([*cmd, "--db", "newer.duckdb"], "newer than this sociolab") for cmd in (
        ["sql", "SELECT 1"], ["analyze"], ["agreement"], ["results"], ["report", "-o", "r.html"])],
    # the store itself (or any DuckDB file) as an output
    (["report", "--db", "s.duckdb", "-o", "s.duckdb"], "is a DuckDB database"),
    (["validate", "export", "--db", "s.duckdb", "-o", "s.duckdb"], "is a DuckDB database"),
    (["validate", "export", "--db", "s.duckdb", "-o", "foreign.duckdb"], "is a DuckDB database"),
    (["validate", "export", "--db", "s.duckdb", "-o", "/dev/full"], "No space left on device"),
    # what a file may hold
    (["run", "surrogate.yaml", "--db", "o.duckdb"], "lone surrogate"),
    (["run", "repeats.yaml", "--db", "o.duckdb"], "less than or equal to 100000"),
    (["run", "seeds.yaml", "--db", "o.duckdb"], "seed 1 is listed twice"),
    (["run", "noseeds.yaml", "--db", "o.duckdb"], "seeds: List should have at least 1 item"),
    (["run", "timestamp.yaml", "--db", "o.duckdb"], "timestamp.yaml:9:"),
    (["run", "runs.yaml", "--db", "o.duckdb"], "less than or equal to 100000"),
    (["validate", "import", "header.csv", "--db", "s.duckdb"], "header.csv:2: no coded rows"),
    (["run", "cross.yaml", "--db", "o.duckdb"], "100,000,000 series"),
    (["run", "name.yaml", "--db", "o.duckdb"], "at most 100 characters"),
    (["run", "pipe.yaml", "--db", "o.duckdb"], "is a named pipe"),
    (["import", "warroom", "nested", "--db", "o.duckdb"], "nested too deeply"),
    (["import", "warroom", "surrogate", "--db", "o.duckdb"], "lone surrogate"),
    (["validate", "import", "big.csv", "--db", "s.duckdb"], "big.csv:2:"),
    # options
    (["run", "scenario.yaml", "--db", ""], "give a database file name"),
    (["agreement", "--db", "s.duckdb", "--seed", "-1"], "--seed -1"),
    (["analyze", "--db", "s.duckdb", "--seed", "-1"], "--seed -1"),
    (["analyze", "--db", "s.duckdb", "--comp-filter", "nope"], "unknown compensation filter"),
    (["agreement", "--csv", "sample.csv", "--raters", ",,"], "names nothing"),
    (["run", "scenario.yaml", "--db", "o.duckdb", "--concurrency", "1000000000"], "--concurrency 1000000000"),
    (["models", "check", "--model", ""], "give a model name"),
    # click's usage errors, in one line
    (["run", "scenario.yaml", "--fast"], "No such option: --fast"),
    (["run"], "Missing argument"),
    (["frobnicate"], "No such command"),
    (["run", "scenario.yaml", "--concurrency", "abc"], "Invalid value for '--concurrency'"),
    (["--log-file", ".", "run", "scenario.yaml"], "is a directory"),
    # a line break in a file name stays on the one line
    (["run", "two\nlines.yaml", "--db", "o.duckdb"], "two\\nlines.yaml: no such YAML file"),
]


def test_each_bad_input_is_one_line_exit_2_and_no_stored_file_changes(work):
    before = digest(work)
    results = cli_batch([(argv, work) for argv, _ in CASES])
    problems = []
    for (argv, needle), out in zip(CASES, results):
        lines = out.stderr.strip().splitlines()
        if out.returncode != 2 or len(lines) != 1 or not lines[0].startswith("error: ") or needle not in lines[0] \
                or "unexpected" in lines[0]:
            problems.append(f"{argv!r}: exit {out.returncode}, stderr {out.stderr[-600:]!r}")
    assert not problems, "\n".join(problems)
    assert digest(work) == before
    assert not (work / "o.duckdb").exists() and not list(work.glob("*.wal"))
    with duckdb.connect(str(work / "foreign.duckdb"), read_only=True) as con:
        assert sorted(r[0] for r in con.execute("SHOW TABLES").fetchall()) == ["schema_version", "users"]


def test_a_store_named_as_the_output_keeps_every_row(work, tmp_path):
    """`report -o` and `validate export -o` naming the store are refused, and the store still
    holds every row it held (it used to be overwritten by the HTML report or the CSV)."""
    store = tmp_path / "s.duckdb"
    shutil.copy(work / "s.duckdb", store)

    def messages() -> int:
        out = cli("sql", "SELECT count(*) AS n FROM messages", "--db", str(store), "-f", "json")
        assert out.returncode == 0, out.stderr
        return json.loads(out.stdout)[0]["n"]

    before = messages()
    for args in (["report", "-o", str(store)], ["validate", "export", "-o", str(store)]):
        assert cli(*args, "--db", str(store)).returncode == 2
    assert before > 0 and messages() == before

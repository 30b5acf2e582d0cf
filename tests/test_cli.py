"""The CLI end to end, in real subprocesses: the newcomer's path, bad input, kill and resume."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import duckdb
import pytest

from tests.conftest import REPO, cli, write_yaml

QUICKSTART = REPO / "scenarios/library/quickstart.yaml"


def test_quickstart_runs_offline_and_explains_itself(tmp_path):
    db = tmp_path / "q.duckdb"
    out = cli("run", str(QUICKSTART), "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert str(db) in out.stdout and "sociolab sql" in out.stdout
    assert re.search(r"holds 1 run, 7 agents, \d+ agent messages \(1 error\)", out.stdout)
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(DISTINCT model) FROM agents").fetchone()[0] == 7
    assert con.execute("SELECT count(*) FROM messages WHERE round IS NOT NULL").fetchone()[0] == 6 * 7 - 1  # scout fails in round 4 and is dropped
    con.close()
    again = cli("run", str(QUICKSTART), "--db", str(db))
    assert again.returncode == 0 and "1 already complete" in again.stdout


def test_sql_formats_and_read_only(tmp_path):
    db = tmp_path / "q.duckdb"
    assert cli("run", str(QUICKSTART), "--db", str(db), "--quiet").returncode == 0
    as_json = cli("sql", "SELECT sender_name, count(*) AS n FROM messages GROUP BY 1 ORDER BY 1", "--db", str(db),
                  "--format", "json")
    rows = json.loads(as_json.stdout)
    assert {r["sender_name"] for r in rows} >= {"user", "Agent-A"} and sum(r["n"] for r in rows) == 42
    as_csv = cli("sql", "SELECT run_id, status FROM runs", "--db", str(db), "--format", "csv")
    assert as_csv.stdout.splitlines() == ["run_id,status", "quickstart/001,completed"]
    table = cli("sql", "SELECT count(*) AS agents_in_run FROM agents", "--db", str(db))
    assert re.search(r"agents_in_run.*\n.*\n.*\b7\b", table.stdout)
    empty = cli("sql", " ; ", "--db", str(db))
    assert empty.returncode == 2 and "empty query" in empty.stderr
    write = cli("sql", "DELETE FROM runs", "--db", str(db))
    assert write.returncode == 2 and "read-only" in write.stderr.lower()
    assert cli("sql", "SELECT count(*) FROM runs", "--db", str(db), "-f", "csv").stdout.splitlines()[1] == "1"


@pytest.mark.parametrize("text, expect", [
    ("name: x\nagents: {roster: warroom\nparams: {}\n", r"x\.yaml:\d+: invalid YAML"),
    ("name: x\nagents: {roster: warroom}\nparams:\n  seed_message: hi\n  rounds: 3\n  colour: red\n",
     r"x\.yaml:6: params\.colour: unknown key"),
    ("name: x\nagents: {roster: warroom}\nparams:\n  seed_message: hi\n  rounds: many\n",
     r"x\.yaml:5: params\.rounds: Input should be a valid integer"),
    ("name: x\nkind: debate\nagents: {roster: warroom}\nparams: {seed_message: hi}\n",
     r"x\.yaml:2: unknown scenario kind 'debate' \(known kinds: discussion"),
    ("name: x\nagents:\n  roster: warroom\n  exclude: [gpt5]\nparams: {seed_message: hi}\n",
     r"x\.yaml:3: agents: unknown persona 'gpt5'"),
    ("name: x\nagents: {roster: nosuch}\nparams: {seed_message: hi}\n", r"unknown roster 'nosuch'"),
    ("name: x\nagents: {roster: warroom}\nparams: {rounds: 2}\n", r"x\.yaml:3: params\.seed_message: required key"),
    ("- just\n- a list\n", r"x\.yaml:1: expected a mapping"),
])
def test_bad_scenario_files_give_one_line_and_exit_2(tmp_path, text, expect):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    out = cli("run", str(path), "--db", str(tmp_path / "db.duckdb"), "--sim")
    assert out.returncode == 2, out.stdout + out.stderr
    assert "Traceback" not in out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and re.search(expect, lines[0]), lines


def test_missing_api_key_names_the_variable(tmp_path):
    path = write_yaml(tmp_path, """
        name: real
        agents: {roster: warroom, only: [llama]}
        params: {seed_message: hi}
        """)
    env = {k: v for k, v in os.environ.items() if k != "GROQ_API_KEY"}
    out = subprocess.run([sys.executable, "-m", "sociolab.cli", "run", str(path), "--db",
                          str(tmp_path / "d.duckdb")], capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert "GROQ_API_KEY" in out.stderr and "--sim" in out.stderr


def test_other_user_errors(tmp_path):
    missing = cli("run", str(tmp_path / "nope.yaml"))
    assert missing.returncode == 2 and "nope.yaml: no such YAML file" in missing.stderr
    no_db = cli("sql", "SELECT 1", "--db", str(tmp_path / "none.duckdb"))
    assert no_db.returncode == 2 and "no such database file" in no_db.stderr
    db = tmp_path / "q.duckdb"
    cli("run", str(QUICKSTART), "--db", str(db), "--quiet")
    bad_sql = cli("sql", "SELEC 1", "--db", str(db))
    assert bad_sql.returncode == 2 and bad_sql.stderr.startswith("error: SQL error") and "Traceback" not in bad_sql.stderr
    bad_format = cli("sql", "SELECT 1", "--db", str(db), "--format", "xml")
    assert bad_format.returncode == 2
    usage = cli("run")
    assert usage.returncode == 2 and "Traceback" not in usage.stderr
    for args in (["judge", "--db", str(db), "--sim", "--batch", "0"], ["report", "--db", str(db), "-o",
                 str(tmp_path / "no/such/dir/r.html")], ["sql", "SELECT 1", "--db", str(tmp_path)]):
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, args
    foreign = tmp_path / "other.duckdb"
    duckdb.connect(str(foreign)).execute("CREATE TABLE runs (x INT)").close()
    for args in (["sql", "SELECT 1", "--db", str(foreign)], ["run", str(QUICKSTART), "--db", str(foreign)]):
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, out.stderr


def test_bad_input_never_loses_stored_runs(tmp_path):
    db = tmp_path / "q.duckdb"
    cli("run", str(QUICKSTART), "--db", str(db), "--quiet")
    changed = tmp_path / "changed.yaml"
    changed.write_text(QUICKSTART.read_text().replace("rounds: 6", "rounds: 5"))
    out = cli("run", str(changed), "--db", str(db))
    assert out.returncode == 2 and "different configuration" in out.stderr and "--fresh" in out.stderr
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: quickstart\nagents: [\n")
    assert cli("run", str(broken), "--db", str(db)).returncode == 2
    rows = cli("sql", "SELECT count(*) FROM messages", "--db", str(db), "-f", "csv").stdout.splitlines()
    assert rows[1] == "42"


def test_import_warroom_fixture_through_the_cli(tmp_path):
    db = tmp_path / "w.duckdb"
    out = cli("import", "warroom", str(REPO / "tests/fixtures/warroom/transcripts"), "--db", str(db))
    assert out.returncode == 0, out.stderr
    assert "Imported 3 runs" in out.stdout and "CC BY 4.0" in out.stdout
    # imported runs are judged and analysed like our own
    judged = cli("judge", "--db", str(db), "--sim", "--quiet")
    assert judged.returncode == 0, judged.stderr
    analysis = json.loads(cli("analyze", "--db", str(db), "--json", "--n-perm", "100").stdout)
    assert analysis["data"]["sources"] == ["warroom"] and analysis["data"]["messages"] > 50
    assert {s["series"] for s in analysis["series"]} == {"A", "B", "F"}
    assert [c["label"] for c in analysis["comparisons"]] == ["heterogeneous vs homogeneous (clones)"]  # the study's family
    missing = cli("import", "warroom", str(tmp_path / "nowhere"), "--db", str(db))
    assert missing.returncode == 2 and "Traceback" not in missing.stderr


def test_studies_are_named_and_unknown_ones_listed(tmp_path):
    db = str(tmp_path / "s.duckdb")
    for args in (["replicate"], ["replicate", "nope", "--db", db], ["import", "nope", str(tmp_path), "--db", db]):
        out = cli(*args)
        assert out.returncode == 2 and "Traceback" not in out.stderr, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and 'known studies: warroom ("Who Am I' in out.stderr, args
    assert not (tmp_path / "s.duckdb").exists()                       # nothing was created


def test_serve_sim_subprocess_drives_a_run_over_http(tmp_path):
    server = subprocess.Popen([sys.executable, "-m", "sociolab.cli", "serve-sim", "--port", "0",
                               "--fail-rate", "0.2", "--retry-after", "0.01", "--seed", "3"],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        url = re.search(r"(http://127\.0\.0\.1:\d+/v1)", line).group(1)
        path = write_yaml(tmp_path, f"""
            name: viahttp
            agents:
              personas:
                - {{key: a, model: openai/sim-a, api_base: "{url}"}}
                - {{key: b, model: openai/sim-b, api_base: "{url}"}}
                - {{key: c, model: openai/sim-c, api_base: "{url}"}}
            params: {{seed_message: "@all hello team, let's plan the app", rounds: 3, stagger_ms: 10}}
            client: {{initial_wait_s: 0.01, max_wait_s: 0.1, max_attempts: 12}}
            """)
        out = cli("run", str(path), "--db", str(tmp_path / "h.duckdb"))
        assert out.returncode == 0, out.stderr
        assert re.search(r"holds 1 run, 3 agents, 9 agent messages \(0 errors\)", out.stdout)
        retries = cli("sql", "SELECT sum(attempts) - count(*) FROM llm_calls", "--db", str(tmp_path / "h.duckdb"),
                      "-f", "csv").stdout.splitlines()[1]
        assert int(retries) > 0
    finally:
        server.terminate()
        server.wait(timeout=10)

"""Judging end to end: sim discussion -> two sim judges -> codes; uncodable never false; HTTP; resume."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from sklearn.metrics import cohen_kappa_score

from sociolab.judges.runner import JudgeConfig, judge_store
from sociolab.orchestrator.client import ClientSettings
from sociolab.config import load_plan
from sociolab.runner import execute
from sociolab.orchestrator.sim.judge import NEEDS_METADATA, JudgeTraits
from sociolab.orchestrator.sim.server import FaultConfig, start_in_thread
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.orchestrator.store import Store

from tests.conftest import REPO, cli, write_yaml

FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp", "xref"]
JUDGES = ["sim/judge-gemini", "sim/judge-sonnet"]

DISCUSSION = """
name: jd
repeats: {repeats}
agents:
  roster: warroom
  exclude: [deepseek]
  crashes: [{{agent: scout, from_round: 2}}]
params: {{seed_message: "@all We need a food delivery app for a city of 500k. Budget 50k, 3 months.", rounds: 6}}
sim: {{stand_ins: true}}
"""


def make_store(tmp_path: Path, repeats: int = 3) -> Store:
    path = write_yaml(tmp_path, DISCUSSION.format(repeats=repeats))
    store = Store.open(tmp_path / "j.duckdb")
    asyncio.run(execute(load_plan(path), store))
    return store


def config(**kw) -> JudgeConfig:
    return JudgeConfig(judges=kw.pop("judges", JUDGES), client=kw.pop("client", ClientSettings()), **kw)


def codable(store: Store) -> int:
    return store.con.execute("SELECT count(*) FROM messages WHERE sender NOT IN ('user', 'system') "
                             "AND NOT is_error").fetchone()[0]


def test_two_sim_judges_code_every_message_and_agree_well_but_not_perfectly(tmp_path):
    store = make_store(tmp_path)
    report = asyncio.run(judge_store(store, config()))
    n = codable(store)
    assert report.coded == {j: n for j in JUDGES} and sum(report.uncodable.values()) == 0
    rows = store.con.execute("SELECT judge, flag, count(*), count(DISTINCT message_id) FROM codes "
                             "GROUP BY ALL").fetchall()
    assert len(rows) == 2 * len(FLAGS) and all(r[2] == n and r[3] == n for r in rows)
    kappas = []
    for flag in FLAGS:
        pairs = store.con.execute(
            "SELECT a.value::INT, b.value::INT FROM codes a JOIN codes b USING (message_id, flag) "
            "WHERE a.judge = ? AND b.judge = ? AND flag = ? ORDER BY message_id", [*JUDGES, flag]).fetchall()
        a, b = zip(*pairs)
        if 0 < sum(a) < len(a):
            kappas.append(cohen_kappa_score(a, b))
    mean = sum(kappas) / len(kappas)
    assert 0.6 < mean < 0.99, kappas
    # the judge saw the roster, the errored agent and the context
    calls = store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert calls >= 2 * n


def test_rerun_codes_only_what_is_missing(tmp_path):
    store = make_store(tmp_path, repeats=2)
    asyncio.run(judge_store(store, config(judges=JUDGES[:1])))
    again = asyncio.run(judge_store(store, config()))
    n = codable(store)
    assert again.already == {JUDGES[0]: n, JUDGES[1]: 0} and again.coded == {JUDGES[0]: 0, JUDGES[1]: n}
    dupes = store.con.execute("SELECT count(*) FROM (SELECT message_id, judge, flag FROM codes "
                              "GROUP BY ALL HAVING count(*) > 1)").fetchone()[0]
    assert dupes == 0


def test_a_rerun_with_nothing_to_code_reads_no_conversation_and_runs_load_a_few_at_a_time(tmp_path, monkeypatch):
    """What is left to code is found in DuckDB (issue 12: memory flat in store size); the
    conversations are read RUNS_PER_LOAD runs at a time."""
    import sociolab.judges.runner as runner

    store = make_store(tmp_path)
    loads: list[int] = []
    original = Store.conversation
    monkeypatch.setattr(Store, "conversation", lambda self, run_ids: (loads.append(len(list(run_ids))),
                                                                       original(self, run_ids))[1])
    monkeypatch.setattr(runner, "RUNS_PER_LOAD", 2)
    first = asyncio.run(judge_store(store, config()))
    runs = store.con.execute("SELECT count(*) FROM runs").fetchone()[0]
    assert runs > 2 and max(loads) == 2 and sum(loads) == runs * len(JUDGES)
    assert all(first.coded[j] + first.uncodable[j] == codable(store) for j in JUDGES)
    loads.clear()
    again = asyncio.run(judge_store(store, config()))
    assert loads == [] and all(again.to_code[j] == 0 and again.already[j] == codable(store) for j in JUDGES)


def test_unparseable_replies_are_uncodable_never_false(tmp_path):
    store = make_store(tmp_path, repeats=1)
    sloppy = SimSettings(judges={"judge-sloppy": JudgeTraits(sensitivity=0.95, false_positive=0.02,
                                                             malformed_rate=1.0)})
    report = asyncio.run(judge_store(store, config(judges=["sim/judge-sloppy"], parse_attempts=2, sim=sloppy)))
    n = codable(store)
    assert report.uncodable["sim/judge-sloppy"] == n and report.coded["sim/judge-sloppy"] == 0
    rows = store.con.execute("SELECT DISTINCT status, value, raw_reply IS NOT NULL, rationale <> '' "
                             "FROM codes").fetchall()
    assert rows == [("uncodable", None, True, True)]
    # each message: ask, repair, ask again, repair
    assert store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0] == 4 * n


def test_some_malformed_replies_are_repaired(tmp_path):
    store = make_store(tmp_path, repeats=1)
    shaky = SimSettings(judges={"judge-shaky": JudgeTraits(sensitivity=0.95, false_positive=0.02, malformed_rate=0.4)})
    report = asyncio.run(judge_store(store, config(judges=["sim/judge-shaky"], sim=shaky)))
    n = codable(store)
    assert report.coded["sim/judge-shaky"] > 0.8 * n
    assert report.coded["sim/judge-shaky"] + report.uncodable["sim/judge-shaky"] == n
    calls = store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert calls > n * 1.2  # repairs happened


def test_batched_judging_codes_the_same_messages(tmp_path):
    store = make_store(tmp_path, repeats=1)
    report = asyncio.run(judge_store(store, config(judges=JUDGES[:1], batch=5)))
    n = codable(store)
    assert report.coded[JUDGES[0]] == n
    calls = store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    assert calls < n / 3


def test_judges_over_http_with_faults(tmp_path):
    store = make_store(tmp_path, repeats=1)
    with start_in_thread(faults=FaultConfig(fail_rate=0.2, malformed_rate=0.1, retry_after=0.01,
                                            fault_seed=2)) as server:
        judges = ["sim/judge-alpha", "sim/judge-bravo"]
        cfg = JudgeConfig(judges=judges, api_bases={j: server.url for j in judges},
                          client=ClientSettings(initial_wait_s=0.01, max_wait_s=0.1, max_attempts=10, cache=False))
        report = asyncio.run(judge_store(store, cfg))
        stats = server.stats()
    n = codable(store)
    assert all(report.coded[j] + report.uncodable[j] == n for j in judges)
    assert sum(report.failed.values()) == 0 and sum(stats["faults"].values()) > 0
    retried = store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge' AND attempts > 1").fetchone()[0]
    assert retried > 0
    assert store.con.execute("SELECT count(*) FROM codes WHERE status = 'coded' AND value IS NULL").fetchone()[0] == 0
    assert all(report.coded[j] > 0.8 * n for j in judges)


def test_judges_over_http_code_exactly_as_in_process(tmp_path):
    """serve-sim gets the judge metadata and the judges' sim settings in a header: same codes."""
    settings = SimSettings(judges={"judge-alpha": JudgeTraits(sensitivity=0.8, false_positive=0.1, malformed_rate=0.2)})
    local = make_store(tmp_path, repeats=1)
    asyncio.run(judge_store(local, config(judges=["sim/judge-alpha", "sim/judge-bravo"], sim=settings)))
    q = "SELECT message_id, judge, flag, value, level, status, rationale, raw_reply FROM codes ORDER BY ALL"
    expected = local.con.execute(q).fetchall()
    local_calls = local.con.execute("SELECT count(*) FROM llm_calls WHERE purpose = 'judge'").fetchone()[0]
    local.close()
    (tmp_path / "j.duckdb").rename(tmp_path / "local.duckdb")
    remote = make_store(tmp_path, repeats=1)
    with start_in_thread() as server:
        judges = ["sim/judge-alpha", "sim/judge-bravo"]
        cfg = config(judges=judges, sim=settings, api_bases={j: server.url for j in judges})
        asyncio.run(judge_store(remote, cfg))
        assert server.stats()["ok"] > 0
    assert remote.con.execute(q).fetchall() == expected
    # the settings reached the server: a malformed rate of 0.2 (not the name's ~1%) made repairs, alike
    calls = "SELECT count(*) FROM llm_calls WHERE purpose = 'judge'"
    assert remote.con.execute(calls).fetchone()[0] == local_calls > 1.1 * 2 * codable(remote)


def test_a_sim_judge_reached_without_metadata_is_stored_uncodable(tmp_path):
    """`openai/sim-judge-x` is a plain OpenAI-compatible model to sociolab: its requests carry no
    judge metadata, and the sim judge behind it says so instead of guessing from the prompt."""
    store = make_store(tmp_path, repeats=1)
    with start_in_thread() as server:
        cfg = config(judges=["openai/sim-judge-x"], api_bases={"openai/sim-judge-x": server.url}, parse_attempts=1)
        report = asyncio.run(judge_store(store, cfg))
    n = codable(store)
    assert report.uncodable["openai/sim-judge-x"] == n
    raw = store.con.execute("SELECT DISTINCT raw_reply FROM codes").fetchall()
    assert raw == [(NEEDS_METADATA,)]


def test_provider_failure_stores_no_code_and_a_rerun_retries(tmp_path):
    store = make_store(tmp_path, repeats=1)
    with start_in_thread(faults=FaultConfig(fail_rate=1.0, fault_kinds=[503])) as server:
        cfg = JudgeConfig(judges=["sim/judge-x"], api_bases={"sim/judge-x": server.url},
                          client=ClientSettings(initial_wait_s=0, max_wait_s=0, max_attempts=2, cache=False),
                          concurrency=4)
        failed = asyncio.run(judge_store(store, cfg))
    n = codable(store)
    assert failed.failed["sim/judge-x"] == n and failed.coded["sim/judge-x"] == 0
    assert store.con.execute("SELECT count(*) FROM codes").fetchone()[0] == 0
    assert store.con.execute("SELECT count(*) FROM llm_calls WHERE purpose='judge' AND error_type = "
                             "'ServiceUnavailableError'").fetchone()[0] == n
    with start_in_thread() as server:
        cfg = cfg.model_copy(update={"api_bases": {"sim/judge-x": server.url}})
        ok = asyncio.run(judge_store(store, cfg))
    assert ok.coded["sim/judge-x"] + ok.uncodable["sim/judge-x"] == n and ok.coded["sim/judge-x"] > 0.9 * n


@pytest.mark.slow
def test_judge_run_killed_midway_then_rerun_codes_each_message_once(tmp_path):
    """Judges behind serve-sim with 20 ms latency: slow enough that the kill surely lands mid-way."""
    path = write_yaml(tmp_path, DISCUSSION.format(repeats=8))
    db = tmp_path / "k.duckdb"
    assert cli("run", str(path), "--db", str(db), "--quiet").returncode == 0
    server = subprocess.Popen([sys.executable, "-m", "sociolab.cli", "serve-sim", "--port", "0",
                               "--latency-ms", "20"], cwd=REPO, stdout=subprocess.PIPE, text=True)
    try:
        url = server.stdout.readline().split()[-1]
        judges = ["sim/judge-alpha", "sim/judge-bravo"]
        cfg = write_yaml(tmp_path, f"""
            judges: {judges}
            api_bases: {{"{judges[0]}": "{url}", "{judges[1]}": "{url}"}}
            concurrency: 8
            client: {{cache: false}}
            """, "judges.yaml")
        args = [sys.executable, "-m", "sociolab.cli", "judge", "--db", str(db), "--config", str(cfg), "--quiet"]
        proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        con_n = duckdb.connect(str(db), read_only=True)
        n = con_n.execute("SELECT count(*) FROM messages WHERE sender NOT IN ('user','system') "
                          "AND NOT is_error").fetchone()[0]
        con_n.close()
        wal = Path(str(db) + ".wal")
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not (wal.exists() and wal.stat().st_size > 20_000):
            time.sleep(0.02)
        time.sleep(0.5)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        con = duckdb.connect(str(db), read_only=True)
        partial = con.execute("SELECT count(*) FROM codes").fetchone()[0]
        con.close()
        assert 0 < partial < n * 2 * len(FLAGS), "the kill should land mid-way"
        out = cli(*args[3:], timeout=300)
        assert out.returncode == 0, out.stderr
    finally:
        server.terminate()
        server.wait(timeout=10)
    con = duckdb.connect(str(db), read_only=True)
    per = con.execute("SELECT judge, count(*), count(DISTINCT message_id) FROM codes GROUP BY 1").fetchall()
    assert len(per) == 2 and all(r[1] == n * len(FLAGS) and r[2] == n for r in per)
    assert con.execute("SELECT count(*) FROM codes WHERE status = 'coded'").fetchone()[0] > 0.9 * n * 2 * len(FLAGS)


def test_judge_cli_bad_input(tmp_path):
    store = make_store(tmp_path, repeats=1)
    store.close()
    db = str(tmp_path / "j.duckdb")
    none = cli("judge", "--db", db, "--sim", "--runs", "nothing/*")
    assert none.returncode == 2 and "no runs match" in none.stderr
    book = cli("judge", "--db", db, "--sim", "--codebook", "nosuch")
    assert book.returncode == 2 and "Traceback" not in book.stderr
    env = {k: v for k, v in os.environ.items() if k not in ("GEMINI_API_KEY", "ANTHROPIC_API_KEY")}
    real = subprocess.run([sys.executable, "-m", "sociolab.cli", "judge", "--db", db], cwd=REPO, env=env,
                          capture_output=True, text=True, timeout=120)
    assert real.returncode == 2 and "API_KEY" in real.stderr and "--sim" in real.stderr

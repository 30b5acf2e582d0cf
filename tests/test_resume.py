"""Resuming an unfinished discussion run from its last committed round.

A rerun continues a killed run where it stopped: the rows it committed (rounds 0..rounds_done-1)
are kept and the scenario rebuilds its state from them. On the sim the final tables equal an
uninterrupted run's, whatever round the kill landed after: fixed and shuffled order, an injected
crash, a run that stopped. A run whose config changed, or that is `failed`/`incomplete`, starts
from scratch. The end-to-end test kills `sociolab run` with SIGKILL every 1.5 s until it finishes.
"""

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

from sociolab.config import load_plan
from sociolab.orchestrator.sink import EventSink
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.discussion import Discussion
from tests.conftest import tables, REPO, cli, write_yaml

# every column, except wall-clock timestamps (and latency_ms, measured in wall time)
COMPARE = {
    "runs": "SELECT run_id, source, suite, series, repeat, seed, kind, config, config_hash, status, stop_reason, "
            "rounds_planned, rounds_done, factors FROM runs ORDER BY run_id",
    "agents": "SELECT * FROM agents ORDER BY run_id, position",
    "messages": "SELECT * FROM messages ORDER BY message_id",
    "llm_calls": "SELECT run_id, message_id, agent_id, purpose, model, prompt_tokens, completion_tokens, cost_usd, "
                 "attempts, cached, error_type, error, provider, dropped_params FROM llm_calls ORDER BY message_id",
    "events": "SELECT run_id, round, kind, agent_id, detail FROM events ORDER BY ALL",
    "outcomes": "SELECT * FROM outcomes ORDER BY ALL",
    "tool_calls": "SELECT * FROM tool_calls ORDER BY ALL",
}


def snapshot(db: Path) -> dict:
    return tables(db, COMPARE)


def scenario(tmp_path: Path, *, order: str = "fixed", rounds: int = 6, crash: str = "", runs: int = 1,
             extra: str = "") -> Path:
    return write_yaml(tmp_path, f"""
        name: resumed
        kind: discussion
        seed: 11
        concurrency: 2
        agents:
          roster: warroom
          only: [llama, gptoss, kimi, qwen, scout]
          crashes: [{crash}]
        params:
          seed_message: "@all Plan a festival for 5000 people, budget 40k."
          rounds: {rounds}
          order: {order}
          {extra}
        series:
          X: {{runs: {runs}}}
        sim: {{stand_ins: true}}
        """)


class Killed(BaseException):
    """The process dies: not an Exception, so the runner's bug retries do not catch it."""


def started_at(db: Path) -> list:
    """The runs' wall-clock start: kept by a resumed run, new for a run restarted from scratch."""
    con = duckdb.connect(str(db), read_only=True)
    try:
        return con.execute("SELECT run_id, started_at FROM runs ORDER BY run_id").fetchall()
    finally:
        con.close()


def run_plan(path: Path, db: Path, *, kill_after: int | None = None) -> None:
    """Run the plan into db; with kill_after, die right after a round `kill_after` is durable."""
    original = EventSink.commit_round

    async def commit_then_die(self: EventSink, rounds_done: int, **run_updates):
        committed = await original(self, rounds_done, **run_updates)
        if not run_updates and rounds_done == kill_after:
            await self.flush()
            raise Killed
        return committed

    store = Store.open(db)
    try:
        if kill_after is None:
            report = asyncio.run(execute(load_plan(path), store))
            assert report.ok
        else:
            EventSink.commit_round = commit_then_die  # type: ignore[method-assign]
            try:
                with pytest.raises(Killed):
                    asyncio.run(execute(load_plan(path), store))
            finally:
                EventSink.commit_round = original  # type: ignore[method-assign]
    finally:
        store.close()


@pytest.fixture
def replays(monkeypatch):
    calls: list[str] = []
    original = Discussion.replay

    def spy(self, ctx, so_far, *rest):
        calls.append(f"{so_far.run_id}@{so_far.rounds_done}")
        return original(self, ctx, so_far, *rest)

    monkeypatch.setattr(Discussion, "replay", spy)
    return calls


@pytest.mark.parametrize("order", ["fixed", "shuffled", "shuffled_once"])
@pytest.mark.parametrize("crash", ["", "{agent: scout, from_round: 2}",
                                   "{agent: scout, from_round: 1}, {agent: kimi, from_round: 3, mode: permanent}",
                                   "{agent: scout, at_rounds: [0, 2, 3], mode: transient}, "
                                   "{agent: kimi, at_rounds: [1], mode: permanent}"])
def test_resumed_run_equals_uninterrupted_run(tmp_path, order, crash, replays):
    """The last crash schedule runs under the platform's rules (an errored agent rests one round,
    a permanent error drops it, the failure share is checked after odd rounds)."""
    extra = "after_error: skip_next_round\n          stop_check: odd_rounds" if "at_rounds" in crash else ""
    path = scenario(tmp_path, order=order, crash=crash, extra=extra)
    run_plan(path, tmp_path / "ref.duckdb")
    expected = snapshot(tmp_path / "ref.duckdb")
    for k in (1, 3, 6):
        db = tmp_path / f"k{k}.duckdb"
        run_plan(path, db, kill_after=k)
        partial = snapshot(db)
        assert [r[12] for r in partial["runs"]] == [k] and [r[9] for r in partial["runs"]] == ["running"]
        # what is stored is exactly the first k rounds (+ the seed message)
        assert {r[3] for r in partial["messages"]} == {None, *range(k)}
        assert all(e[1] is None or e[1] < k for e in partial["events"])
        before = started_at(db)
        run_plan(path, db)
        assert started_at(db) == before, "resumed, not restarted"
        assert replays[-1].endswith(f"@{k}")
        final = snapshot(db)
        for table in COMPARE:
            assert final[table] == expected[table], (k, table)


def test_a_run_that_stopped_before_its_status_was_stored_stays_stopped(tmp_path, replays):
    # four of five agents crash in round 1: more than 60% fail, which ends the run
    crash = ", ".join(f"{{agent: {a}, from_round: 1}}" for a in ("scout", "kimi", "qwen", "gptoss"))
    path = scenario(tmp_path, crash=crash)
    run_plan(path, tmp_path / "ref.duckdb")
    expected = snapshot(tmp_path / "ref.duckdb")
    assert [r[9] for r in expected["runs"]] == ["stopped"] and [r[12] for r in expected["runs"]] == [2]
    db = tmp_path / "k.duckdb"
    run_plan(path, db, kill_after=2)   # the round that stopped it is stored; its status is not
    assert [r[9] for r in snapshot(db)["runs"]] == ["running"]
    before = started_at(db)
    run_plan(path, db)
    assert started_at(db) == before
    assert replays and snapshot(db) == expected


def test_several_runs_killed_mid_suite_resume_to_the_same_tables(tmp_path, replays):
    path = scenario(tmp_path, order="shuffled", rounds=5, crash="{agent: qwen, from_round: 2}", runs=4)
    run_plan(path, tmp_path / "ref.duckdb")
    db = tmp_path / "k.duckdb"
    run_plan(path, db, kill_after=3)
    begun = {run for run, n in progress_of(db)[0].items() if n > 0}
    before = [r for r in started_at(db) if r[0] in begun]
    run_plan(path, db)
    assert before and len(replays) == len(before)
    assert [r for r in started_at(db) if r[0] in begun] == before
    assert snapshot(db) == snapshot(tmp_path / "ref.duckdb")


def test_changed_config_failed_and_incomplete_runs_restart_from_scratch(tmp_path, replays):
    path = scenario(tmp_path, rounds=6)
    db = tmp_path / "k.duckdb"
    run_plan(path, db, kill_after=3)
    changed = scenario(tmp_path, rounds=6, extra="temperature: 0.5")  # same run ids, another config hash
    before = started_at(db)
    run_plan(changed, db)
    assert replays == [] and started_at(db) != before  # not resumed: restarted
    run_plan(changed, tmp_path / "ref.duckdb")
    assert snapshot(db) == snapshot(tmp_path / "ref.duckdb")

    for status in ("failed", "incomplete"):
        db = tmp_path / f"{status}.duckdb"
        run_plan(path, db, kill_after=3)
        con = duckdb.connect(str(db))
        con.execute("UPDATE runs SET status = ?", [status])
        con.close()
        run_plan(path, db)
        assert replays == []
        final = snapshot(db)
        assert [r[9] for r in final["runs"]] == ["completed"] and [r[12] for r in final["runs"]] == [6]
        assert len({r[0] for r in final["messages"]}) == len(final["messages"])


def test_a_kind_that_does_not_resume_restarts_from_scratch(tmp_path, replays, monkeypatch):
    monkeypatch.setattr(Discussion, "resumable", False)
    path = scenario(tmp_path)
    db = tmp_path / "k.duckdb"
    run_plan(path, db, kill_after=2)
    run_plan(path, db)
    assert replays == []
    run_plan(path, tmp_path / "ref.duckdb")
    assert snapshot(db) == snapshot(tmp_path / "ref.duckdb")


KILLED_SUITE = """
name: killloop
seed: 5
concurrency: 4
agents:
  roster: warroom
  only: [llama, gptoss, kimi, qwen, scout]
  crashes: [{agent: scout, from_round: 30}]
params:
  seed_message: "@all Plan a festival for 5000 people, budget 40k."
  rounds: 80
series:
  X: {runs: 8}
  Y: {runs: 8, params: {order: shuffled}}
sim: {stand_ins: true}
"""  # sized so that one uninterrupted invocation takes well over the 1.5 s between kills


def progress_of(db: Path) -> tuple[list[int], int]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rounds = dict(con.execute("SELECT run_id, rounds_done FROM runs").fetchall())
        messages = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    finally:
        con.close()
    return rounds, messages


def first_open_s(suite: Path, db: Path) -> float:
    """How long `sociolab run` takes to open its database here and now (start-up, no work):
    measured on a throwaway database, killed as soon as it is open."""
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "sociolab", "run", str(suite), "--db", str(db), "--quiet"],
                            cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wait_until_open(proc, db)
    opened = time.monotonic() - t0
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    return opened


def wait_until_open(proc: subprocess.Popen, db: Path, timeout: float = 30) -> None:
    """Until the process has opened the database (or exited): the kill interval counts from
    there, since importing sociolab and loading the plan alone can take over a second."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{proc.pid}/fd")
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            if any(str(db) == os.readlink(fd) for fd in fds.iterdir()):
                return
        except OSError:
            pass  # an fd closed while we looked
        time.sleep(0.01)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to see when the database is open")
def test_sigkill_every_1_5_s_until_done_equals_uninterrupted_run(tmp_path):
    suite = write_yaml(tmp_path, KILLED_SUITE)
    reference = tmp_path / "ref.duckdb"
    t0 = time.monotonic()
    out = cli("run", str(suite), "--db", str(reference), "--quiet")
    assert out.returncode == 0, out.stderr
    uninterrupted_s = time.monotonic() - t0
    assert uninterrupted_s > 3, "one invocation must not fit in 1.5 s for the test to mean anything"
    # The kill interval counts from the database's opening; on a loaded machine the reference run's
    # start-up can be most of its time, so the interval is at most a quarter of its work (and 1.5 s),
    # which keeps several kills mid-suite whatever the load.
    work_s = uninterrupted_s - first_open_s(suite, tmp_path / "probe.duckdb")
    interval = max(0.3, min(1.5, work_s / 4))

    killed = tmp_path / "killed.duckdb"
    kills, invocations, last, startup = 0, 0, ({}, 0), []
    t0 = time.monotonic()
    for _ in range(40):
        invocations += 1
        proc = subprocess.Popen([sys.executable, "-m", "sociolab", "run", str(suite), "--db", str(killed),
                                 "--quiet"], cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        spawned = time.monotonic()
        wait_until_open(proc, killed)
        startup.append(time.monotonic() - spawned)
        try:
            rc = proc.wait(timeout=interval)
        except subprocess.TimeoutExpired:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            kills += 1
            if killed.exists():
                rounds, messages = progress_of(killed)
                assert messages >= last[1], "messages were lost between kills"
                assert all(n >= last[0].get(run, 0) for run, n in rounds.items()), "a run went backwards"
                last = (rounds, messages)
            continue
        assert rc == 0
        break
    else:
        pytest.fail(f"not done after {invocations} invocations ({kills} kills)")
    elapsed = time.monotonic() - t0
    print(f"kill loop: {kills} kills, {invocations} invocations, {elapsed:.1f} s (uninterrupted "
          f"{uninterrupted_s:.1f} s; start-up to opening the database {min(startup):.2f}-{max(startup):.2f} s)")
    assert kills >= 2, "the kills should land mid-suite"
    final, expected = snapshot(killed), snapshot(reference)
    for table in COMPARE:
        assert final[table] == expected[table], table
    again = cli("run", str(suite), "--db", str(killed))  # a finished suite: said so, nothing redone
    assert again.returncode == 0 and "resuming: 16 of 16 runs already complete" in again.stdout, again.stdout
    assert snapshot(killed) == final


GAMES = """
name: games-resumed
kind: repeated_games
seed: 7
concurrency: 2
agents: {roster: warroom, only: [llama]}
params: {rounds: 10}
series:
  pd: {params: {game: prisoners_dilemma, opponent: agent}, agents: {only: [llama, qwen]}}
  pd_scot: {params: {game: prisoners_dilemma, opponent: agent, scot: player_1}, agents: {only: [llama, qwen]}}
  bos_strategy: {params: {game: battle_of_the_sexes, opponent: alternate_fj, strategy_player: 1}}
  pd_sociolab: {params: {game: prisoners_dilemma, opponent: defect_once, prompt: sociolab, shuffle: round,
                         parser: lenient, invalid: missing, max_tokens: 64}}
sim: {stand_ins: true}
"""


@pytest.mark.parametrize("k", [1, 4, 9])
def test_a_resumed_game_equals_an_uninterrupted_one(tmp_path, k):
    """Repeated games resume from their last committed round too (labels drawn per round, SCoT
    predictions, a fixed strategy, lenient parsing and unscored invalid moves included)."""
    path = write_yaml(tmp_path, GAMES)
    run_plan(path, tmp_path / "ref.duckdb")
    db = tmp_path / "killed.duckdb"
    run_plan(path, db, kill_after=k)
    partial = {r[0]: r[12] for r in snapshot(db)["runs"]}
    assert k in partial.values()
    before = [(run, t) for run, t in started_at(db) if partial[run]]  # runs with a round committed
    run_plan(path, db)
    after = dict(started_at(db))
    assert before and all(after[run] == t for run, t in before), "resumed, not restarted"
    final, expected = snapshot(db), snapshot(tmp_path / "ref.duckdb")
    for table in COMPARE:
        assert final[table] == expected[table], table

"""orchestrator/sink.py against a real DuckDB file: what a scenario records lands in the right rows,
in conversation order, linked to each other, one transaction per round."""

from __future__ import annotations

import json
from datetime import datetime

import duckdb
import pytest

from sociolab.orchestrator.cache import ResponseCache
from sociolab.orchestrator.client import Completion
from sociolab.orchestrator.rows import AgentRow, RunRow
from sociolab.orchestrator.sink import EventSink, Message
from sociolab.orchestrator.store import Store

RUN = "t/001"


@pytest.fixture
def store(tmp_path):
    store = Store.open(tmp_path / "x.duckdb")
    store.start_run(
        RunRow(run_id=RUN, source="sociolab", kind="discussion", status="running", rounds_planned=3),
        [AgentRow(run_id=RUN, agent_id="a", position=1, name="Agent-A", persona="llama", model="sim/llama",
                  model_label="LLaMA", system_prompt="You are Agent-A", provider="sim"),
         AgentRow(run_id=RUN, agent_id="b", position=2, name="Agent-B", persona="qwen", model="sim/qwen",
                  model_label="Qwen", system_prompt="You are Agent-B", provider="sim")])
    yield store
    store.close()


def rows(store: Store, sql: str, *params) -> list[tuple]:
    return store.con.execute(sql, list(params)).fetchall()


def say(sender: str, content: str, *, round: int | None = 0, turn: int | None = None,
        finished: float | None = None, call: Completion | None = None, **kw) -> Message:
    return Message(sender=sender, sender_name=f"Agent-{sender.upper()}", content=content, round=round, turn=turn,
                   started_s=None if finished is None else finished - 0.5, finished_s=finished, call=call, **kw)


async def commit(sink: EventSink, rounds_done: int, **updates) -> list[Message]:
    committed = await sink.commit_round(rounds_done, **updates)
    await sink.flush()
    return committed


# ---- order and numbering --------------------------------------------------------------------------

async def test_messages_are_numbered_by_finish_time_then_turn(store):
    sink = EventSink(store, RUN)
    sink.message(say("a", "slow", turn=0, finished=3.0))
    sink.message(say("b", "tie, later turn", turn=2, finished=1.0))
    sink.message(Message(sender="user", sender_name="user", content="@all seed", round=None))  # no times
    sink.message(say("a", "tie, earlier turn", turn=1, finished=1.0))
    committed = await commit(sink, 1)
    assert [m.content for m in committed] == ["@all seed", "tie, earlier turn", "tie, later turn", "slow"]
    assert [m.seq for m in committed] == [0, 1, 2, 3]
    assert rows(store, "SELECT seq, message_id, content FROM messages ORDER BY seq") == [
        (0, f"{RUN}#0", "@all seed"), (1, f"{RUN}#1", "tie, earlier turn"),
        (2, f"{RUN}#2", "tie, later turn"), (3, f"{RUN}#3", "slow")]


async def test_seq_continues_across_rounds_whatever_the_clock_says(store):
    sink = EventSink(store, RUN)
    for turn, t in enumerate([2.0, 1.0, 3.0]):
        sink.message(say("ab"[turn % 2], f"r0 t{turn}", round=0, turn=turn, finished=t))
    await commit(sink, 1)
    sink.message(say("b", "r1 t1", round=1, turn=1, finished=0.2))   # finished 'before' round 0: still after it
    sink.message(say("a", "r1 t0", round=1, turn=0, finished=0.1))
    second = await commit(sink, 2)
    assert [(m.seq, m.content) for m in second] == [(3, "r1 t0"), (4, "r1 t1")]
    assert sink.next_seq == 5
    assert rows(store, "SELECT round, seq, message_id FROM messages WHERE round = 1 ORDER BY seq") == [
        (1, 3, f"{RUN}#3"), (1, 4, f"{RUN}#4")]
    assert rows(store, "SELECT rounds_done FROM runs") == [(2,)]


async def test_on_commit_hears_each_round_in_seq_order(store):
    heard: list[list[tuple[int, str]]] = []
    sink = EventSink(store, RUN, on_commit=lambda msgs: heard.append([(m.seq, m.content) for m in msgs]))
    sink.message(say("a", "second", turn=0, finished=2.0))
    sink.message(say("b", "first", turn=1, finished=1.0))
    await commit(sink, 1)
    await commit(sink, 2)
    assert heard == [[(0, "first"), (1, "second")], []]


async def test_message_columns_are_stored_as_given(store):
    sink = EventSink(store, RUN)
    sink.message(say("a", "⚠ error", turn=0, finished=1.25, context_size=5, is_error=True,
                     error="RateLimitError: slow down"))
    await commit(sink, 1)
    assert rows(store, "SELECT run_id, round, turn, sender, sender_name, content, context_size, is_error, error, "
                       "started_s, finished_s FROM messages") == [
        (RUN, 0, 0, "a", "Agent-A", "⚠ error", 5, True, "RateLimitError: slow down", 0.75, 1.25)]


# ---- LLM calls ------------------------------------------------------------------------------------

def completion(**kw) -> Completion:
    base = dict(model="groq/llama-3.3-70b-versatile", text="hi", prompt_tokens=100, completion_tokens=20,
                attempts=1, latency_ms=42.0, started_at=datetime(2026, 1, 2, 3, 4, 5), provider="litellm")
    return Completion(**{**base, **kw})


async def test_llm_calls_are_linked_to_their_message_with_every_column(store):
    sink = EventSink(store, RUN)
    sink.message(say("a", "hi", turn=0, finished=1.0,
                     call=completion(cost_usd=None, attempts=3, dropped_params=["temperature", "seed"])))
    sink.message(say("b", "free", turn=1, finished=2.0, call=completion(model="sim/qwen", cost_usd=0.0, provider="sim")))
    sink.message(say("b", "no call", turn=2, finished=3.0))
    await commit(sink, 1)
    calls = rows(store, """
        SELECT c.message_id, m.content, c.agent_id, c.purpose, c.model, c.started_at, c.latency_ms, c.prompt_tokens,
               c.completion_tokens, c.cost_usd, c.attempts, c.cached, c.provider, c.dropped_params
          FROM llm_calls c JOIN messages m USING (message_id) ORDER BY m.seq""")
    assert [c[:5] for c in calls] == [(f"{RUN}#0", "hi", "a", "agent", "groq/llama-3.3-70b-versatile"),
                                      (f"{RUN}#1", "free", "b", "agent", "sim/qwen")]
    first, second = calls
    assert first[5:12] == (datetime(2026, 1, 2, 3, 4, 5), 42.0, 100, 20, None, 3, False)  # unknown cost: NULL
    assert first[12] == "litellm"
    assert json.loads(first[13]) == ["temperature", "seed"]
    assert second[9] == 0.0 and second[12] == "sim"        # a free call costs 0, not NULL
    assert second[13] is None                               # nothing dropped: NULL, not '[]'
    assert rows(store, "SELECT count(*) FROM llm_calls") == [(2,)]


async def test_a_failed_call_is_recorded_with_its_error_and_attempts(store):
    sink = EventSink(store, RUN)
    failed = completion(text=None, error="litellm.RateLimitError: slow down", error_type="RateLimitError",
                        attempts=4, prompt_tokens=0, completion_tokens=0, cost_usd=None)
    sink.message(say("a", "⚠ error", turn=0, finished=1.0, is_error=True, error=failed.error, call=failed))
    await commit(sink, 1)
    assert rows(store, "SELECT m.is_error, c.error_type, c.error, c.attempts FROM llm_calls c "
                       "JOIN messages m USING (message_id)") == [
        (True, "RateLimitError", "litellm.RateLimitError: slow down", 4)]


async def test_reasoning_goes_to_its_column_never_into_content(store):
    sink = EventSink(store, RUN)
    sink.message(say("a", "The answer is 4.", turn=0, finished=1.0, call=completion(reasoning="2+2 is 4, I think")))
    sink.message(say("b", "Done.", turn=1, finished=2.0, reasoning="explicit wins",
                     call=completion(reasoning="from the call")))
    sink.message(say("b", "Plain.", turn=2, finished=3.0, call=completion()))
    await commit(sink, 1)
    assert rows(store, "SELECT content, reasoning FROM messages ORDER BY seq") == [
        ("The answer is 4.", "2+2 is 4, I think"), ("Done.", "explicit wins"), ("Plain.", None)]


# ---- tool calls, events, outcomes, updates --------------------------------------------------------

async def test_tool_calls_are_linked_to_their_assistant_message_once_it_is_numbered(store):
    sink = EventSink(store, RUN)
    sink.message(say("b", "earlier", turn=1, finished=1.0))
    asks = sink.message(say("a", "let me look", turn=0, finished=2.0))
    sink.tool_call(agent_id="a", message=asks, step=0, tool="ls", arguments={"path": "/"}, result="a.txt",
                   is_error=False)
    sink.tool_call(agent_id="a", message=asks, step=1, tool="cat", arguments={"path": "/nope"},
                   result="no such file", is_error=True)
    sink.tool_call(agent_id=None, message=None, step=0, tool="tick", arguments=None, result="", is_error=False)
    assert asks.seq is None  # not numbered until the round is committed
    await commit(sink, 1)
    assert asks.seq == 1
    later = sink.message(say("a", "again", round=1, turn=0, finished=3.0))
    sink.tool_call(agent_id="a", message=asks, step=2, tool="ls", arguments={}, result="", is_error=False)
    sink.tool_call(agent_id="a", message=later, step=0, tool="ls", arguments=[], result="", is_error=False)
    await commit(sink, 2)
    got = rows(store, "SELECT seq, agent_id, message_id, step, tool, arguments, result, is_error "
                      "FROM tool_calls ORDER BY seq")
    assert [(r[0], r[2], r[4]) for r in got] == [(0, f"{RUN}#1", "ls"), (1, f"{RUN}#1", "cat"), (2, None, "tick"),
                                                 (3, f"{RUN}#1", "ls"), (4, f"{RUN}#2", "ls")]
    assert json.loads(got[0][5]) == {"path": "/"} and got[2][5] is None
    assert got[1][6:] == ("no such file", True)


async def test_events_and_outcomes_keep_their_details_and_missing_values(store):
    sink = EventSink(store, RUN)
    sink.event("agent_errored", round=2, agent_id="a", error="503", attempts=4)
    sink.event("run_stopped")
    sink.outcome("cooperation_rate", 0.75, agent_id="a", rounds=4)
    sink.outcome("shortcut_used", None, reason="unparseable reply")
    await commit(sink, 3)
    events = rows(store, "SELECT round, kind, agent_id, detail FROM events ORDER BY kind")
    assert [e[:3] for e in events] == [(2, "agent_errored", "a"), (None, "run_stopped", None)]
    assert json.loads(events[0][3]) == {"error": "503", "attempts": 4} and events[1][3] is None
    outcomes = rows(store, "SELECT agent_id, metric, value, detail FROM outcomes ORDER BY metric")
    assert outcomes[0][:3] == ("a", "cooperation_rate", 0.75) and json.loads(outcomes[0][3]) == {"rounds": 4}
    assert outcomes[1][:3] == ("", "shortcut_used", None)   # missing stays NULL, never 0
    assert json.loads(outcomes[1][3]) == {"reason": "unparseable reply"}


async def test_agent_and_run_updates_are_applied(store):
    sink = EventSink(store, RUN)
    sink.agent_update("a", status="errored", errored_round=2)
    await commit(sink, 3, status="completed", stop_reason="rounds done")
    assert rows(store, "SELECT agent_id, status, errored_round FROM agents ORDER BY agent_id") == [
        ("a", "errored", 2), ("b", "active", None)]
    assert rows(store, "SELECT status, stop_reason, rounds_done FROM runs") == [("completed", "rounds done", 3)]


async def test_an_empty_round_still_records_progress(store):
    sink = EventSink(store, RUN)
    assert await commit(sink, 1) == []
    assert rows(store, "SELECT rounds_done FROM runs") == [(1,)]


async def test_new_cache_entries_travel_with_the_round_and_load_back(store):
    cache = ResponseCache()
    cache.put("k1", "sim/llama", {"text": "héllo", "prompt_tokens": 3})
    sink = EventSink(store, RUN, cache=cache)
    await commit(sink, 1)
    assert cache.drain() == []
    again = ResponseCache()
    again.preload(store.load_cache(["sim/llama"]))
    assert again.get("k1") == {"text": "héllo", "prompt_tokens": 3}


# ---- failures -------------------------------------------------------------------------------------

async def test_a_failed_write_is_raised_by_flush_and_leaves_the_round_out(store):
    sink = EventSink(store, RUN)
    sink.message(say("a", "round 0", turn=0, finished=1.0))
    await commit(sink, 1)
    sink.message(say("a", "round 1", round=1, turn=0, finished=2.0))
    sink.agent_update("a", status="errored")
    sink.outcome("score", 1.0, agent_id="a")
    sink.outcome("score", 2.0, agent_id="a")          # same key twice: the write must fail
    await sink.commit_round(2, status="completed")    # returns before the write; the error waits for flush
    with pytest.raises(duckdb.ConstraintException):
        await sink.flush()
    # one transaction: none of round 1, and neither progress nor status moved
    assert rows(store, "SELECT content FROM messages") == [("round 0",)]
    assert rows(store, "SELECT count(*) FROM outcomes") == [(0,)]
    assert rows(store, "SELECT status, rounds_done FROM runs") == [("running", 1)]
    assert rows(store, "SELECT status FROM agents WHERE agent_id = 'a'") == [("active",)]


async def test_a_failed_write_surfaces_at_the_next_commit_if_not_flushed(store):
    sink = EventSink(store, RUN)
    sink.outcome("score", 1.0)
    sink.outcome("score", 1.0)
    await sink.commit_round(1)
    with pytest.raises(duckdb.ConstraintException):
        await sink.commit_round(2)


async def test_flush_with_nothing_written_is_a_no_op(store):
    await EventSink(store, RUN).flush()


def writes_per_batch_window(tmp_path, monkeypatch, plan, prefix: str, completed: int = 1) -> dict[float, int]:
    """Run `plan` with sim writes batched over 0 s (every round) and over 60 s, into
    `<prefix><seconds>.duckdb`; how many transactions each wrote."""
    import asyncio

    import sociolab.runner as runner

    writes: dict[float, int] = {}
    original = Store.write_now
    for seconds in (0.0, 60.0):
        monkeypatch.setattr(runner, "VIRTUAL_BATCH_SECONDS", seconds)
        monkeypatch.setattr(Store, "write_now", lambda self, batch: (writes.__setitem__(seconds, writes.get(
            seconds, 0) + 1), original(self, batch))[1])
        with Store.open(tmp_path / f"{prefix}{seconds}.duckdb") as store:
            report = asyncio.run(runner.execute(plan, store))
        assert report.ok and report.completed == completed
    return writes


def test_a_virtual_time_run_writes_its_rounds_in_batches_with_the_same_result(tmp_path, monkeypatch):
    """Sim runs write rounds together (VIRTUAL_BATCH_SECONDS): far fewer transactions, and the
    same rows as writing every round, seq numbers and rounds_done included."""
    from sociolab.config import load_plan

    from tests.conftest import TINY_DISCUSSION, tables, write_yaml

    plan = load_plan(write_yaml(tmp_path, TINY_DISCUSSION.replace("rounds: 2", "rounds: 8")))
    queries = {"messages": "SELECT message_id, seq, round, turn, sender, content FROM messages ORDER BY seq",
               "runs": "SELECT run_id, status, rounds_done FROM runs", "calls": "SELECT count(*) FROM llm_calls"}
    writes = writes_per_batch_window(tmp_path, monkeypatch, plan, "b")
    assert tables(tmp_path / "b0.0.duckdb", queries) == tables(tmp_path / "b60.0.duckdb", queries)
    assert writes[60.0] < writes[0.0] - 5  # 8 rounds: one write for the run instead of one per round


def test_sim_runs_played_one_after_another_share_transactions_with_the_same_result(tmp_path, monkeypatch):
    """A sim run's last write waits (within its batch window) for the next runs' rows, and its own
    run row and roster go with its first rounds: three runs one at a time take fewer
    transactions than runs, and store exactly what writing every round stores."""
    from sociolab.config import load_plan

    from tests.conftest import TINY_DISCUSSION, tables, write_yaml

    text = TINY_DISCUSSION.replace("seed: 3", "seed: 3\nrepeats: 3\nconcurrency: 1")
    plan = load_plan(write_yaml(tmp_path, text))
    queries = {"messages": "SELECT message_id, seq, round, turn, sender, content FROM messages ORDER BY message_id",
               "runs": "SELECT run_id, status, rounds_done, rounds_planned, stop_reason, finished_at IS NULL "
                       "FROM runs ORDER BY run_id",
               "agents": "SELECT * FROM agents ORDER BY run_id, position",
               "calls": "SELECT message_id, model, prompt_tokens, completion_tokens FROM llm_calls ORDER BY 1"}
    writes = writes_per_batch_window(tmp_path, monkeypatch, plan, "s", completed=3)
    assert tables(tmp_path / "s0.0.duckdb", queries) == tables(tmp_path / "s60.0.duckdb", queries)
    assert writes[60.0] < 3 <= writes[0.0]


def test_a_batch_folds_updates_of_the_rows_it_inserts_into_them():
    """Updates addressed by the primary key of a row in the same batch become that row's values
    (later ones win); updates of rows stored earlier stay updates."""
    from sociolab.orchestrator.store import Batch

    batch = Batch()
    batch.add(RunRow(run_id="r1", source="sociolab", kind="discussion", status="running"))
    batch.add(AgentRow(run_id="r1", agent_id="a", position=1, name="A", model="sim/a"))
    batch.update("runs", {"run_id": "r1"}, rounds_done=1)
    batch.update("agents", {"run_id": "r1", "agent_id": "a"}, status="errored", errored_round=0)
    batch.update("runs", {"run_id": "r1"}, rounds_done=2, status="completed")
    batch.update("runs", {"run_id": "r0"}, status="failed")
    folded = batch.folded()
    run, = folded.rows[RunRow]
    agent, = folded.rows[AgentRow]
    assert (run.rounds_done, run.status) == (2, "completed")
    assert (agent.status, agent.errored_round) == ("errored", 0)
    assert folded.updates == [("runs", {"run_id": "r0"}, {"status": "failed"})]
    assert batch.rows[RunRow][0].status == "running" and len(batch.updates) == 4  # the batch itself is unchanged

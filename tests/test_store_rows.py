"""The store's typed rows, its one transaction helper and its named readers (orchestrator/rows.py,
orchestrator/store.py): row classes match the migrated tables column for column, every row class
round-trips, a failed transaction leaves nothing, and each reader returns what was written."""

from __future__ import annotations

import dataclasses
import json
from datetime import datetime

import duckdb
import pytest

from sociolab.orchestrator.rows import (COLUMNS, ROW_CLASSES, ActionRow, AgentRow, CacheRow, CodebookRow, CodeRow, EventRow,
                                        HumanCodeRow, LlmCallRow, MessageRow, OutcomeRow, Row, RunRow, ToolCallRow,
                                        row_of)
from sociolab.orchestrator.store import (SAMPLE_STRATA, Batch, ConversationMessage, ModelCalls, SampledMessage,
                                         Store)

T0 = datetime(2026, 1, 2, 3, 4, 5)


@pytest.fixture
def store(tmp_path):
    with Store.open(tmp_path / "rows.duckdb") as store:
        yield store


def table_columns(store: Store, table: str) -> list[str]:
    return [r[0] for r in store.con.execute(
        "SELECT column_name FROM information_schema.columns WHERE table_name = ? AND table_schema = 'main' "
        "ORDER BY ordinal_position", [table]).fetchall()]


def count(store: Store, table: str) -> int:
    return store.con.execute(f"SELECT count(*) FROM {table}").fetchone()[0]


# ---- rows are the tables' columns ------------------------------------------------------------

def test_each_row_class_has_its_tables_columns_in_order(store):
    for cls in ROW_CLASSES:
        fields = [f.name for f in dataclasses.fields(cls)]
        assert fields + list(cls.DB_FILLED) == table_columns(store, cls.TABLE), cls.__name__
        assert COLUMNS[cls.TABLE] == tuple(fields)


def test_every_table_sociolab_writes_has_a_row_class(store):
    tables = {r[0] for r in store.con.execute(
        "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main' "
        "AND table_type = 'BASE TABLE'").fetchall()}
    # schema_version and action_kinds (a fixed lookup of action codes) are written by the migrations only
    assert tables - {"schema_version", "action_kinds"} == {cls.TABLE for cls in ROW_CLASSES}


def test_rows_are_frozen_and_keyword_only():
    row = EventRow(run_id="r", kind="k")
    with pytest.raises(dataclasses.FrozenInstanceError):
        row.kind = "other"  # frozen
    with pytest.raises(TypeError):
        EventRow("r", None, "k")  # keyword-only


def one_of_each() -> list[Row]:
    """A row of every class, every column set (JSON as JSON text, as DuckDB returns it)."""
    return [
        RunRow(run_id="s/001", source="sociolab", suite="s", series="A", repeat=1, seed=7, kind="discussion",
               config='{"a":1}', config_hash="h", status="completed", stop_reason="why", rounds_planned=3,
               rounds_done=2, started_at=T0, finished_at=T0, factors='{"f":"x"}'),
        AgentRow(run_id="s/001", agent_id="a", position=1, name="Agent-A", persona="llama", model="sim/llama",
                 model_label="LLaMA", system_prompt="You are A", status="errored", errored_round=1, provider="sim"),
        MessageRow(message_id="s/001#0", run_id="s/001", seq=0, round=0, turn=0, sender="a", sender_name="Agent-A",
                   content="hi", context_size=2, is_error=True, error="boom", started_s=0.5, finished_s=1.5,
                   reasoning="hmm"),
        LlmCallRow(run_id="s/001", message_id="s/001#0", agent_id="a", purpose="agent", model="sim/llama",
                   started_at=T0, latency_ms=12.5, prompt_tokens=10, completion_tokens=3, cost_usd=0.25, attempts=2,
                   cached=True, error_type="X", error="boom", provider="sim", dropped_params='["seed"]'),
        EventRow(run_id="s/001", round=1, kind="agent_errored", agent_id="a", detail='{"error":"boom"}'),
        CacheRow(cache_key="k", model="sim/llama", response='{"text":"t"}'),
        CodebookRow(codebook_id="cb@1", name="cb", content='{"flags":[]}'),
        CodeRow(message_id="s/001#0", run_id="s/001", judge="j", codebook_id="cb@1", flag="meta", value=True,
                level="L1", status="coded", rationale="r", raw_reply="raw"),
        HumanCodeRow(message_id="s/001#0", coder="ana", flag="meta", value=True, level="L1", source="x.csv"),
        ToolCallRow(run_id="s/001", seq=0, agent_id="a", message_id="s/001#0", step=1, tool="ls",
                    arguments='{"path":"/"}', result="ok", is_error=True),
        OutcomeRow(run_id="s/001", agent_id="a", metric="m", value=0.5, detail='{"n":2}'),
        ActionRow(run_id="s/001", tick=1, agent=2, kind=4, target=3, item=9),
    ]


def test_every_row_class_round_trips_through_a_batch(store):
    rows = one_of_each()
    assert {type(r) for r in rows} == set(ROW_CLASSES)
    batch = Batch()
    for row in rows:
        batch.add(row)
    assert len(batch) == len(rows)
    store.write_now(batch)
    for row in rows:
        columns = COLUMNS[row.TABLE]
        stored = store.con.execute(f"SELECT {', '.join(columns)} FROM {row.TABLE}").fetchall()
        assert [row_of(type(row), values) for values in stored] == [row]


def test_json_columns_take_dicts_and_lists(store):
    batch = Batch()
    batch.add(EventRow(run_id="r", kind="k", detail={"b": [1, 2], "a": "é"}))
    store.write_now(batch)
    assert store.con.execute("SELECT detail->>'a', detail->'b' FROM events").fetchone() == ("é", "[1,2]")


def test_defaults_are_the_ddl_defaults(store):
    batch = Batch()
    batch.add(RunRow(run_id="r", source="sociolab", kind="discussion", status="running"))
    batch.add(MessageRow(message_id="r#0", run_id="r", seq=0, sender="user", content="hi"))
    batch.add(EventRow(run_id="r", kind="k"))
    store.write_now(batch)
    assert store.con.execute("SELECT rounds_done FROM runs").fetchone() == (0,)
    assert store.con.execute("SELECT is_error, round FROM messages").fetchone() == (False, None)
    assert store.con.execute("SELECT logged_at IS NOT NULL FROM events").fetchone() == (True,)


# ---- one transaction helper ------------------------------------------------------------------

def test_a_failed_transaction_leaves_nothing(store):
    with pytest.raises(RuntimeError, match="in the middle"):
        with store.transaction():
            store.con.execute("INSERT INTO events (run_id, kind) VALUES ('r', 'k')")
            raise RuntimeError("in the middle")
    assert count(store, "events") == 0
    with store.transaction():  # no transaction was left open
        store.con.execute("INSERT INTO events (run_id, kind) VALUES ('r', 'k')")
    assert count(store, "events") == 1


def test_an_interrupt_rolls_back_too(store):
    with pytest.raises(KeyboardInterrupt):
        with store.transaction():
            store.con.execute("INSERT INTO events (run_id, kind) VALUES ('r', 'k')")
            raise KeyboardInterrupt
    assert count(store, "events") == 0


def test_a_run_whose_roster_breaks_a_key_is_not_started(store):
    run = RunRow(run_id="r", source="sociolab", kind="discussion", status="running")
    agent = AgentRow(run_id="r", agent_id="a", position=1, name="A", model="sim/a")
    with pytest.raises(duckdb.ConstraintException):
        store.start_run(run, [agent, agent])
    assert count(store, "runs") == count(store, "agents") == 0


def test_failed_human_codes_keep_the_earlier_import(store):
    first = HumanCodeRow(message_id="r#1", coder="ana", flag="meta", value=True, source="a.csv")
    store.replace_human_codes([first])
    with pytest.raises(duckdb.ConstraintException):
        store.replace_human_codes([dataclasses.replace(first, value=False)] * 2)  # a key twice
    assert store.con.execute("SELECT value, source FROM human_codes").fetchall() == [(True, "a.csv")]


# ---- readers return what was written ---------------------------------------------------------

def discussion(store: Store) -> dict[str, list]:
    """Two runs of two series: rosters, a conversation, calls (one failed), an event, codes."""
    batch = Batch()
    rosters, messages = [], []
    for run_id, series in (("s/A/001", "A"), ("s/B/001", "B")):
        batch.add(RunRow(run_id=run_id, source="sociolab", suite="s", series=series, kind="discussion",
                         config_hash=f"h{series}", status="completed"))
        for position, agent_id in ((2, "b"), (1, "a")):
            rosters.append(AgentRow(run_id=run_id, agent_id=agent_id, position=position, name=f"Agent-{agent_id}",
                                    model=f"sim/{agent_id}", errored_round=0 if agent_id == "b" else None))
        said = [("user", None, "@all hello", False), ("a", "Agent-a", "hi all", False),
                ("system", None, "— Round 2 —", False), ("b", "Agent-b", "timeout", True), ("a", "Agent-a", "me again", False)]
        for seq, (sender, name, content, is_error) in enumerate(said):
            messages.append(MessageRow(message_id=f"{run_id}#{seq}", run_id=run_id, seq=seq, round=None if seq == 0 else 0,
                                       sender=sender, sender_name=name, content=content, is_error=is_error))
    for row in rosters + messages:
        batch.add(row)
    for model, error, tokens in (("sim/a", None, (10, 2)), ("sim/a", None, (5, 1)), ("sim/b", "boom", (7, 0))):
        batch.add(LlmCallRow(purpose="agent", model=model, attempts=1, prompt_tokens=tokens[0],
                             completion_tokens=tokens[1], error=error))
    batch.add(EventRow(run_id="lost/001", kind="internal_error"))
    batch.add(CodeRow(message_id="s/A/001#1", run_id="s/A/001", judge="j1", codebook_id="cb@1", flag="meta",
                      value=True, status="coded"))
    batch.add(CodeRow(message_id="s/A/001#4", run_id="s/A/001", judge="j1", codebook_id="cb@1", flag="meta",
                      status="uncodable"))
    batch.add(CodeRow(message_id="s/B/001#1", run_id="s/B/001", judge="j2", codebook_id="cb@1", flag="meta",
                      value=False, status="coded"))
    batch.add(CacheRow(cache_key="k1", model="sim/a", response={"text": "x"}))
    store.write_now(batch)
    return {"rosters": rosters, "messages": messages}


def test_run_readers(store):
    discussion(store)
    [row] = store.runs(["s/B/001", "nope"])
    assert row == RunRow(run_id="s/B/001", source="sociolab", suite="s", series="B", kind="discussion",
                         config_hash="hB", status="completed")
    assert store.run_states(["s/A/001", "nope"]) == {"s/A/001": ("completed", "hA")}
    assert store.run_states([]) == {}
    assert store.series_by_run() == {"s/A/001": "A", "s/B/001": "B"}
    assert store.runs_with_events(["lost/001", "s/A/001", "new/001"]) == ["lost/001"]
    assert store.runs_with_events([]) == []


def test_roster_is_the_agent_rows_by_run_and_position(store):
    written = discussion(store)["rosters"]
    expected = sorted(written, key=lambda a: (a.run_id, a.position))
    assert store.roster(["s/A/001", "s/B/001"]) == expected
    assert store.roster(["s/B/001"]) == [a for a in expected if a.run_id == "s/B/001"]


def test_conversation_is_every_message_by_run_and_seq(store):
    written = discussion(store)["messages"]
    got = store.conversation(["s/B/001"])
    assert got == [ConversationMessage(m.run_id, m.message_id, m.round, m.sender, m.sender_name, m.content, m.is_error)
                   for m in written if m.run_id == "s/B/001"]
    assert got[3].is_error and got[3].sender == "b"


def test_messages_before_leaves_out_platform_notes(store):
    written = discussion(store)["messages"]
    assert store.messages_before("s/A/001#4", 10) == [(None, "@all hello"), ("Agent-a", "hi all"),
                                                      ("Agent-b", "timeout")]
    assert store.messages_before("s/A/001#4", 1) == [("Agent-b", "timeout")]
    assert store.message_ids() == {m.message_id for m in written}


def test_calls_by_model_counts_only_calls_that_did_not_fail(store):
    discussion(store)
    assert store.calls_by_model() == [ModelCalls("sim/a", 2, 15, 3)]


def test_uncoded_messages_are_per_judge_and_codebook(store):
    discussion(store)
    runs = [r for (r,) in store.con.execute("SELECT run_id FROM runs").fetchall()]
    codable = set().union(*store.uncoded(runs).values())
    assert {"s/A/001#1", "s/A/001#4", "s/B/001#1"} <= codable
    left = set().union(*store.uncoded(runs, "j1", "cb@1").values())
    assert left == codable - {"s/A/001#1", "s/A/001#4"}
    assert set().union(*store.uncoded(runs, "j1", "cb@2").values()) == codable
    assert set().union(*store.uncoded(runs, "j2", "cb@1").values()) == codable - {"s/B/001#1"}
    assert store.codable_count(runs) == len(codable)


def test_sample_messages_draws_codable_agent_messages_per_stratum(store):
    discussion(store)
    codable = {"s/A/001#1", "s/A/001#4", "s/B/001#1", "s/B/001#4"}
    sample = store.sample_messages(10, "series", seed=3)
    assert all(isinstance(s, SampledMessage) for s in sample)
    assert {s.message_id for s in sample} == codable
    assert {s.stratum for s in sample} == {"A", "B"}
    assert store.sample_messages(10, "series", seed=3) == sample  # seeded order
    two = store.sample_messages(2, "run", seed=3)
    assert sorted(s.stratum for s in two) == ["s/A/001", "s/B/001"]  # at least one per stratum
    assert set(SAMPLE_STRATA) == {"series", "run", "agent", "model", "round"}


def test_load_cache_returns_the_entries_of_the_given_models(store):
    discussion(store)
    assert {k: json.loads(v) for k, v in store.load_cache(["sim/a"]).items()} == {"k1": {"text": "x"}}
    assert store.load_cache(["sim/b"]) == {} == store.load_cache([])


def test_counts_summarise_the_file(store):
    discussion(store)
    counts = store.counts()
    assert (counts["runs"], counts["runs_completed"], counts["agents"]) == (2, 2, 4)
    assert (counts["messages"], counts["errors"], counts["llm_calls"], counts["tokens"]) == (6, 2, 3, 25)

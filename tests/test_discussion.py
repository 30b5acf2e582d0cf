"""The discussion protocol: who sees what and when, naming, scaffolding, clones, crashes, stop rule."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.config import load_plan
from sociolab.runner import execute
from sociolab.orchestrator.store import Store

from tests.conftest import write_yaml

SEVEN = """
name: t
kind: discussion
seed: 11
agents:
  roster: warroom
  exclude: [deepseek]
  {extra_agents}
params:
  seed_message: "@all We need a plan for a food delivery app. Budget 50k, 3 months."
  rounds: {rounds}
  {extra_params}
sim: {{stand_ins: true}}
"""


class RecordingClient(ModelClient):
    """The real client, also keeping every request it was given (model, messages, fault)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.requests: list[dict] = []

    async def complete(self, model, messages, **kw):
        """Kept in call order; the messages are those the client actually sent (a conversation
        builds them lazily, when the call is admitted)."""
        entry = {"model": model, "fault": kw.get("fault")}
        self.requests.append(entry)

        def sent():
            built = messages() if callable(messages) else messages
            entry["messages"] = [dict(m) for m in built]
            return built

        return await super().complete(model, sent, **kw)


def run(tmp_path: Path, rounds: int = 3, extra_agents: str = "", extra_params: str = "",
        settings: ClientSettings | None = None, text: str | None = None):
    path = write_yaml(tmp_path, text or SEVEN.format(rounds=rounds, extra_agents=extra_agents,
                                                     extra_params=extra_params))
    plan = load_plan(path)
    client = RecordingClient(settings or plan.file.client)
    store = Store.open(tmp_path / "t.duckdb")
    report = asyncio.run(execute(plan, store, client=client))
    return store, client, report


def rows(store: Store, sql: str, *params):
    return store.con.execute(sql, list(params)).fetchall()


def test_full_scaffolding_prompt_and_roles(tmp_path):
    store, client, _ = run(tmp_path, rounds=2)
    first = client.requests[0]["messages"]
    assert first[0] == {"role": "system", "content": "You are Agent-A in a group chat.\nOther agents: "
                        "Agent-B, Agent-C, Agent-D, Agent-E, Agent-F, Agent-G"}
    assert first[1]["role"] == "user" and first[1]["content"].startswith("@all")
    # In round 1, Agent-A sees its own round-0 message as assistant and peers as '[Name]: text'.
    a_round1 = [r for r in client.requests if r["messages"][0]["content"].startswith("You are Agent-A")][1]
    own = rows(store, "SELECT content FROM messages WHERE sender_name = 'Agent-A' AND round = 0")[0][0]
    roles = [(m["role"], m["content"]) for m in a_round1["messages"][2:]]
    assert ("assistant", own) in roles
    peers = [c for r, c in roles if r == "user"]
    assert peers and all(c.startswith("[Agent-") and "]: " in c for c in peers)
    assert not any(c.startswith("[Agent-A]") for c in peers)


def test_each_call_sees_exactly_what_finished_before_it_started(tmp_path):
    store, _, _ = run(tmp_path, rounds=4)
    msgs = rows(store, "SELECT round, turn, started_s, finished_s, context_size, sender FROM messages "
                       "WHERE round IS NOT NULL ORDER BY seq")
    assert len(msgs) == 4 * 7
    for rnd, turn, start, finish, context_size, sender in msgs:
        assert start == pytest.approx(rnd_start(msgs, rnd) + 1.2 * turn)
        assert finish > start
        visible = [m for m in msgs if m[3] <= start and m is not None and (m[0] < rnd or m[0] == rnd)]
        # system prompt + seed message + every finished message (own ones as assistant)
        assert context_size == 2 + len(visible)
    # stagger < latency: later speakers of a round see some (not all, not none) of the round's earlier speakers
    same_round_seen = [sum(1 for m in msgs if m[0] == rnd and m[3] <= start) for rnd, _, start, *_ in msgs]
    assert max(same_round_seen) > 0
    assert any(seen < turn for seen, (_, turn, *_) in zip(same_round_seen, msgs))


def rnd_start(msgs, rnd):
    return min(m[2] for m in msgs if m[0] == rnd)


def test_rounds_do_not_overlap_and_seq_follows_finish_time(tmp_path):
    store, _, _ = run(tmp_path, rounds=3)
    msgs = rows(store, "SELECT seq, round, started_s, finished_s FROM messages ORDER BY seq")
    finishes = [m[3] for m in msgs]
    assert finishes == sorted(finishes)
    for rnd in (1, 2):
        assert min(m[2] for m in msgs if m[1] == rnd) >= max(m[3] for m in msgs if m[1] == rnd - 1)


def test_same_seed_same_transcript_and_other_seed_differs(tmp_path):
    for name in ("a", "b", "c"):
        (tmp_path / name).mkdir()
    a, _, _ = run(tmp_path / "a", rounds=3)
    b, _, _ = run(tmp_path / "b", rounds=3)
    q = "SELECT seq, sender, content, started_s, finished_s FROM messages ORDER BY seq"
    assert rows(a, q) == rows(b, q)
    text = SEVEN.format(rounds=3, extra_agents="", extra_params="").replace("seed: 11", "seed: 12")
    c, _, _ = run(tmp_path / "c", text=text)
    assert rows(c, q) != rows(a, q)


@pytest.mark.parametrize("naming, expected", [
    ("anonymous", ["Agent-A", "Agent-B", "Agent-C"]),
    ("real", ["LLaMA 3.3 70B", "GPT-OSS 120B", "GPT-OSS 20B"]),
])
def test_naming(tmp_path, naming, expected):
    store, client, _ = run(tmp_path, rounds=1, extra_agents="only: [llama, gptoss, gptoss20]",
                           extra_params=f"naming: {naming}")
    assert [r[0] for r in rows(store, "SELECT name FROM agents ORDER BY position")] == expected
    assert client.requests[0]["messages"][0]["content"] == (
        f"You are {expected[0]} in a group chat.\nOther agents: {expected[1]}, {expected[2]}")


def test_custom_names_must_cover_everyone(tmp_path):
    store, _, _ = run(tmp_path, rounds=1, extra_agents="only: [llama, kimi]\n  names: {llama: Ada, kimi: Bea}",
                      extra_params="naming: custom")
    assert [r[0] for r in rows(store, "SELECT name FROM agents ORDER BY position")] == ["Ada", "Bea"]
    from sociolab.base.errors import UserError
    with pytest.raises(UserError, match="needs a name for every agent"):
        (tmp_path / "x").mkdir()
        run(tmp_path / "x", rounds=1, extra_agents="only: [llama, kimi]\n  names: {llama: Ada}",
            extra_params="naming: custom")


@pytest.mark.parametrize("scaffolding, prompt", [
    ("no_peers", "You are Agent-A in a group chat."),
    ("no_identity", "Other agents: Agent-B, Agent-C"),
])
def test_scaffolding_variants(tmp_path, scaffolding, prompt):
    _, client, _ = run(tmp_path, rounds=1, extra_agents="only: [llama, gptoss, kimi]",
                       extra_params=f"scaffolding: {scaffolding}")
    assert client.requests[0]["messages"][0] == {"role": "system", "content": prompt}


def test_empty_scaffolding_sends_no_system_message(tmp_path):
    _, client, _ = run(tmp_path, rounds=1, extra_agents="only: [llama, gptoss]", extra_params="scaffolding: empty")
    assert all(r["messages"][0]["role"] == "user" for r in client.requests)


def test_isolation_is_one_round_alone(tmp_path):
    store, client, _ = run(tmp_path, rounds=10, extra_params="scaffolding: isolation\n  stagger_ms: 0")
    assert len(client.requests) == 7
    for r in client.requests:
        assert r["messages"] == [{"role": "system", "content": "You are an AI assistant."},
                                 {"role": "user", "content": r["messages"][1]["content"]}]
    assert rows(store, "SELECT status, rounds_done, rounds_planned FROM runs") == [("completed", 1, 1)]
    texts = [r[0] for r in rows(store, "SELECT content FROM messages WHERE sender <> 'user'")]
    assert not any("@Agent" in t for t in texts)


def test_clones_share_a_model_and_get_distinct_names(tmp_path):
    store, _, _ = run(tmp_path, rounds=2, extra_agents="clones: {of: llama, n: 8}")
    agents = rows(store, "SELECT agent_id, name, model FROM agents ORDER BY position")
    assert [a[1] for a in agents] == ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]
    assert {a[2] for a in agents} == {"sim/llama-3.3-70b-versatile"}
    assert len({a[0] for a in agents}) == 8


def test_permanent_crash_is_recorded_and_the_agent_dropped(tmp_path):
    store, client, report = run(tmp_path, rounds=4,
                                extra_agents="crashes: [{agent: kimi, from_round: 1, mode: permanent}]")
    kimi = rows(store, "SELECT round, is_error, error, content FROM messages WHERE sender = 'kimi' ORDER BY round")
    assert [k[:2] for k in kimi] == [(0, False), (1, True)]
    assert "decommissioned" in kimi[1][2] and kimi[1][3] == kimi[1][2]
    assert rows(store, "SELECT status, errored_round FROM agents WHERE agent_id = 'kimi'") == [("errored", 1)]
    call = rows(store, "SELECT attempts, error_type FROM llm_calls WHERE agent_id = 'kimi' AND error IS NOT NULL")
    assert call == [(1, "ProviderError")]  # permanent errors are not retried
    # Peers called after the failure see it, marked, as on the study's platform.
    later = [r for r in client.requests if any("⚠" in m["content"] for m in r["messages"])]
    assert later and all(m["content"].startswith("[Agent-E]: ⚠ The model") for r in later
                         for m in r["messages"] if "⚠" in m["content"])
    kinds = rows(store, "SELECT kind, agent_id, round FROM events ORDER BY kind")
    assert ("agent_errored", "kimi", 1) in kinds and ("agent_dropped", "kimi", 1) in kinds
    assert report.completed == 1 and rows(store, "SELECT count(*) FROM messages WHERE round = 3")[0][0] == 6


def test_transient_crash_is_retried_then_recorded(tmp_path):
    settings = ClientSettings(max_attempts=3, initial_wait_s=0.0, max_wait_s=0.0)
    store, _, _ = run(tmp_path, rounds=3, settings=settings,
                      extra_agents="crashes: [{agent: qwen, from_round: 0, mode: transient, rounds: 1}]",
                      extra_params="drop_errored: false")
    calls = rows(store, "SELECT attempts, error_type, error IS NULL FROM llm_calls WHERE agent_id = 'qwen' "
                        "ORDER BY started_at")
    assert calls[0] == (3, "ProviderError", False)
    assert all(c[2] for c in calls[1:]) and len(calls) == 3  # it came back (drop_errored: false)
    assert rows(store, "SELECT detail->>'transient' FROM events WHERE kind = 'agent_errored'") == [("true",)]


def test_more_than_60_percent_failing_ends_the_run(tmp_path):
    crashes = ", ".join(f"{{agent: {k}, from_round: 1}}" for k in ["llama", "gptoss", "gptoss20", "maverick", "kimi"])
    store, _, report = run(tmp_path, rounds=6, extra_agents=f"crashes: [{crashes}]")
    assert report.stopped == 1
    status = rows(store, "SELECT status, rounds_done, stop_reason FROM runs")[0]
    assert status[:2] == ("stopped", 2) and "5 of 7 agents failed in round 1" in status[2]
    assert rows(store, "SELECT max(round) FROM messages")[0][0] == 1


def test_exactly_60_percent_does_not_stop(tmp_path):
    crashes = ", ".join(f"{{agent: {k}, from_round: 0}}" for k in ["llama", "gptoss", "gptoss20"])
    store, _, report = run(tmp_path, rounds=2, extra_agents=f"only: [llama, gptoss, gptoss20, kimi, qwen]\n"
                                                            f"  crashes: [{crashes}]")
    assert report.completed == 1 and rows(store, "SELECT rounds_done FROM runs")[0][0] == 2


def test_shuffled_order_changes_per_round_and_is_reproducible(tmp_path):
    store, _, _ = run(tmp_path, rounds=4, extra_params="order: shuffled")
    orders = [tuple(r[0] for r in rows(store, "SELECT sender FROM messages WHERE round = ? ORDER BY turn", rnd))
              for rnd in range(4)]
    assert len(set(orders)) > 1 and all(sorted(o) == sorted(orders[0]) for o in orders)


def test_wall_clock_path_through_litellm_custom_provider(tmp_path):
    """With sim_in_process off, calls go through litellm.acompletion('sim/...') in real time."""
    settings = ClientSettings(sim_in_process=False)
    store, _, report = run(tmp_path, rounds=2, extra_agents="only: [llama, gptoss, kimi]",
                           extra_params="stagger_ms: 30", settings=settings)
    assert report.completed == 1
    msgs = rows(store, "SELECT turn, started_s, finished_s FROM messages WHERE round = 1 ORDER BY turn")
    starts = [m[1] for m in msgs]
    # a real stagger (30 ms a turn): each start is at least its own offset after the round's
    # start, but a loaded machine may start one late and the next on time, so check the spread
    assert starts == sorted(starts) and starts[2] - starts[0] >= 0.025
    assert rows(store, "SELECT count(*) FROM llm_calls WHERE error IS NULL AND completion_tokens > 0")[0][0] == 6


def test_a_broken_setup_is_failed_not_stopped_and_is_redone(tmp_path):
    """Every agent failing its first call without an injected crash means a broken setup."""
    from sociolab.base.errors import ProviderError

    class Broken(RecordingClient):
        async def complete(self, model, messages, **kw):
            return await super().complete(model, messages, **{**kw, "fault": ProviderError(
                "model not found", transient=False, status_code=404)})

    path = write_yaml(tmp_path, SEVEN.format(rounds=3, extra_agents="", extra_params=""))
    store = Store.open(tmp_path / "b.duckdb")
    report = asyncio.run(execute(load_plan(path), store, client=Broken(ClientSettings())))
    assert len(report.failed) == 1 and rows(store, "SELECT status FROM runs") == [("failed",)]
    again = asyncio.run(execute(load_plan(path), store))  # fixed: a rerun redoes it
    assert again.completed == 1 and again.skipped == 0
    assert rows(store, "SELECT status FROM runs") == [("completed",)]

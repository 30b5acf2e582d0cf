"""Importing the WarRoom study's transcripts into the store (sociolab/studies/warroom.py).

Fixture tests use three real transcripts copied under tests/fixtures/warroom (see its README for
the CC BY 4.0 credit). The whole-corpus test imports all 208 runs when the dataset is present
(../shared/datasets/warroom next to the repo, or $SOCIOLAB_WARROOM_DIR) and skips otherwise.
"""

from __future__ import annotations

import hashlib
import json
import shutil
from collections import Counter
from pathlib import Path

import pytest

from sociolab.base.errors import UserError
from sociolab.orchestrator.store import Store
from sociolab.studies.warroom import ImportSummary, import_warroom

from tests.conftest import WARROOM_TRANSCRIPTS

FIXTURES = Path(__file__).resolve().parent / "fixtures" / "warroom"
FIXTURE_TRANSCRIPTS = FIXTURES / "transcripts"
RUNS = ["warroom/A/run19", "warroom/B/run13", "warroom/F/run08"]


def corpus_dir() -> Path:
    return WARROOM_TRANSCRIPTS


@pytest.fixture
def store(tmp_path):
    s = Store.open(tmp_path / "warroom.duckdb")
    yield s
    s.close()


@pytest.fixture
def transcripts(tmp_path) -> Path:
    """A writable copy of the fixture transcripts (tests add bad files to it)."""
    dest = tmp_path / "data" / "transcripts"
    shutil.copytree(FIXTURE_TRANSCRIPTS, dest)
    return dest


def expected_from_json(directory: Path) -> dict[str, dict]:
    """What each file holds, computed straight from the JSON (independently of the importer)."""
    out = {}
    for path in sorted(directory.rglob("warroom-*-run*.json")):
        data = json.loads(path.read_text(encoding="utf-8"))
        series, run = path.stem.split("-")[1], int(path.stem.split("run")[-1])
        msgs = data["conversation"]["messages"]
        agent = [m for m in msgs if m["sender"] not in ("user", "system")]
        first_error: dict[str, int] = {}
        for m in agent:
            if m["isError"]:
                first_error.setdefault(m["sender"], m["round"])
        out[f"warroom/{series}/run{run:02d}"] = {
            "series": series,
            "rows": len(msgs),
            "agent_messages": len(agent),
            "errors": sum(1 for m in agent if m["isError"]),
            "rounds": len({m["round"] for m in agent}),
            "agents": sum(1 for a in data["environment"]["agentRanking"] if a["enabled"]),
            "first_error": first_error,
            "compensation": len(data["stats"]["compensationEvents"]),
            "stats": data["stats"],
        }
    return out


def q(store: Store, sql: str, *params):
    return store.con.execute(sql, list(params)).fetchall()


def snapshot(store: Store) -> dict[str, int]:
    return {t: q(store, f"SELECT count(*) FROM {t}")[0][0]
            for t in ("runs", "agents", "messages", "events")}


# ---- fixture-based ---------------------------------------------------------------------------
def test_counts_match_the_files(store):
    seen: list[str] = []
    summary = import_warroom(store, FIXTURE_TRANSCRIPTS, on_run=seen.append)
    expected = expected_from_json(FIXTURE_TRANSCRIPTS)

    assert seen == RUNS
    assert isinstance(summary, ImportSummary)
    assert summary.runs == 3
    assert summary.series == {"A": 1, "B": 1, "F": 1}
    assert summary.agents == 24
    assert summary.messages == sum(e["agent_messages"] for e in expected.values()) == 79 + 48 + 8
    assert summary.errors == sum(e["errors"] for e in expected.values()) == 3 + 5 + 2
    assert store.counts()["messages"] == summary.messages
    assert store.counts()["errors"] == summary.errors

    for run_id, exp in expected.items():
        (rows,) = q(store, "SELECT count(*) FROM messages WHERE run_id = ?", run_id)[0]
        (agent_rows,) = q(store, "SELECT count(*) FROM messages WHERE run_id = ? "
                                 "AND sender NOT IN ('user', 'system')", run_id)[0]
        (errors,) = q(store, "SELECT count(*) FROM messages WHERE run_id = ? AND is_error", run_id)[0]
        (agents,) = q(store, "SELECT count(*) FROM agents WHERE run_id = ?", run_id)[0]
        assert (rows, agent_rows, errors, agents) == (
            exp["rows"], exp["agent_messages"], exp["errors"], exp["agents"]), run_id
        # The study's own totals agree with what we stored.
        assert agent_rows == exp["stats"]["aiMessages"] and errors == exp["stats"]["errors"]
        run = q(store, "SELECT source, suite, series, repeat, seed, kind, status, rounds_done, "
                       "rounds_planned FROM runs WHERE run_id = ?", run_id)[0]
        assert run[:7] == ("warroom", "warroom", exp["series"], int(run_id[-2:]), None,
                           "discussion", "completed")
        assert run[7] == exp["rounds"] == exp["stats"]["rounds"]

    assert q(store, "SELECT run_id, rounds_planned, rounds_done FROM runs ORDER BY run_id") == [
        ("warroom/A/run19", 10, 11), ("warroom/B/run13", 10, 6), ("warroom/F/run08", 1, 1)]


def test_message_rows_follow_the_file(store):
    import_warroom(store, FIXTURE_TRANSCRIPTS)
    run_id = "warroom/A/run19"
    data = json.loads((FIXTURE_TRANSCRIPTS / "A/warroom-A-run19.json").read_text(encoding="utf-8"))
    msgs = data["conversation"]["messages"]
    rows = q(store, "SELECT message_id, seq, round, turn, sender, sender_name, content, is_error, "
                    "error, context_size, started_s, finished_s FROM messages WHERE run_id = ? "
                    "ORDER BY seq", run_id)
    assert [r[1] for r in rows] == list(range(len(msgs)))
    assert all(r[0] == f"{run_id}#{r[1]}" for r in rows)
    assert all(r[9] is None and r[10] is None and r[11] is None for r in rows)

    seed = rows[0]
    assert seed[2:6] == (None, None, "user", None)
    assert seed[6] == data["conversation"]["userPrompt"]

    turns: dict[int, list[int]] = {}
    for row, m in zip(rows, msgs):
        if m["sender"] == "system":
            assert row[4] == "system" and row[6] == m["system"]
            # "— Round N —" announces the 0-based round N-1 that follows it.
            assert row[2] == int(m["system"].split()[2]) - 1
        elif m["sender"] != "user":
            assert row[4] == m["sender"] and row[5] == m["agent_nickname"]
            assert row[2] == m["round"] and row[6] == m["text"] and row[7] == m["isError"]
            assert row[8] == (m["text"] if m["isError"] else None)
            turns.setdefault(row[2], []).append(row[3])
    assert all(t == list(range(len(t))) for t in turns.values())
    # DeepSeek errors in rounds 0 and 1, then the platform drops it.
    assert [len(turns[r]) for r in range(4)] == [8, 8, 7, 7]

    # Empty answers are kept as empty strings, not dropped.
    assert q(store, "SELECT count(*) FROM messages WHERE run_id = ? AND content = ''", run_id)[0][0] \
        == sum(1 for m in msgs if m.get("text") == "")


def test_agents_names_models_and_errors(store):
    import_warroom(store, FIXTURE_TRANSCRIPTS)
    a = {r[0]: r[1:] for r in q(store, "SELECT agent_id, position, name, persona, model, "
                                      "model_label, system_prompt, status, errored_round "
                                      "FROM agents WHERE run_id = 'warroom/A/run19'")}
    assert len(a) == 8
    assert a["llama"][:5] == (1, "Agent-A", "llama", "llama-3.3-70b-versatile", "LLaMA 3.3 70B")
    assert a["llama"][5] == ("You are Agent-A in a group chat.\n"
                             "Other agents: Agent-B, Agent-C, Agent-D, Agent-E, Agent-F, Agent-G, Agent-H")
    assert a["deepseek"][1:5] == ("Agent-G", "deepseek", "deepseek-r1-distill-llama-70b", "DeepSeek R1")
    assert a["deepseek"][6:] == ("errored", 0)
    assert a["kimi"][6:] == ("errored", 2)
    assert {k for k, v in a.items() if v[6] == "active"} == {
        "llama", "gptoss", "gptoss20", "maverick", "qwen", "scout"}

    b = q(store, "SELECT agent_id, name, model, model_label, status, errored_round, system_prompt "
                 "FROM agents WHERE run_id = 'warroom/B/run13' ORDER BY position")
    assert [r[1] for r in b] == ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel"]
    assert {(r[2], r[3]) for r in b} == {("llama-3.3-70b-versatile", "LLaMA 3.3 70B")}
    assert [r[0] for r in b if r[4] == "errored"] == ["clone_0", "clone_2", "clone_4", "clone_5", "clone_7"]
    assert {r[5] for r in b if r[4] == "errored"} == {5}
    assert b[0][6] == ("You are Alpha in a group chat.\n"
                       "Other agents: Bravo, Charlie, Delta, Echo, Foxtrot, Golf, Hotel")

    f = q(store, "SELECT DISTINCT system_prompt FROM agents WHERE run_id = 'warroom/F/run08'")
    assert f == [("You are an AI assistant.",)]


def test_run_metadata_and_events(store):
    import_warroom(store, FIXTURE_TRANSCRIPTS)
    run = q(store, "SELECT config, config_hash, started_at, finished_at, stop_reason "
                   "FROM runs WHERE run_id = 'warroom/A/run19'")[0]
    config = json.loads(run[0])
    assert set(config) >= {"condition", "environment", "userPrompt", "stats"}
    assert config["condition"]["series"] == "A"
    assert config["environment"]["maxRounds"] == 10 and len(config["environment"]["agentRanking"]) == 8
    assert len(run[1]) == 16 and int(run[1], 16) >= 0
    assert str(run[3]) == "2026-03-04 01:38:13.948000"  # environment.timestamp, exported at the end
    assert str(run[2]) == "2026-03-04 01:36:00"         # the seed message's clock time, UTC
    assert run[4] is None

    stopped = q(store, "SELECT stop_reason FROM runs WHERE run_id = 'warroom/B/run13'")[0][0]
    assert stopped.startswith("⏹") and "stopping" in stopped

    events = q(store, "SELECT run_id, round, kind, agent_id, detail FROM events ORDER BY ALL")
    kinds = Counter((e[0], e[2]) for e in events)
    assert kinds[("warroom/A/run19", "platform_compensation")] == 5
    assert kinds[("warroom/A/run19", "agent_errored")] == 2
    assert kinds[("warroom/B/run13", "agent_errored")] == 5
    assert kinds[("warroom/B/run13", "run_stopped")] == 1
    assert kinds[("warroom/F/run08", "agent_errored")] == 2
    comp = [e for e in events if e[2] == "platform_compensation"]
    assert all(e[3] is not None for e in comp)
    assert all(json.loads(e[4])["mentionedDead"] == ["DeepSeek R1"] for e in comp)
    assert all(json.loads(e[4])["round"] == e[1] for e in comp)
    errored = {(e[0], e[3]): (e[1], json.loads(e[4])) for e in events if e[2] == "agent_errored"}
    assert errored[("warroom/A/run19", "deepseek")][0] == 0
    assert errored[("warroom/A/run19", "deepseek")][1]["kind"] == "permanent"
    assert errored[("warroom/A/run19", "kimi")][0] == 2
    assert errored[("warroom/A/run19", "kimi")][1]["kind"] == "transient"


def test_reimport_is_idempotent(store, transcripts):
    first = import_warroom(store, transcripts.parent)  # the dataset root is accepted too
    before = snapshot(store)
    ids_before = q(store, "SELECT message_id FROM messages ORDER BY message_id")
    second = import_warroom(store, transcripts)
    assert second == first
    assert snapshot(store) == before
    assert q(store, "SELECT message_id FROM messages ORDER BY message_id") == ids_before
    assert q(store, "SELECT count(*) FROM runs WHERE status <> 'completed'")[0][0] == 0


def test_reimport_replaces_a_changed_run(store, transcripts):
    import_warroom(store, transcripts)
    path = transcripts / "F" / "warroom-F-run08.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["conversation"]["messages"] = data["conversation"]["messages"][:3]
    path.write_text(json.dumps(data), encoding="utf-8")
    import_warroom(store, transcripts)
    assert q(store, "SELECT count(*) FROM messages WHERE run_id = 'warroom/F/run08'")[0][0] == 3
    assert q(store, "SELECT count(*) FROM runs")[0][0] == 3


def test_missing_directory(store, tmp_path):
    with pytest.raises(UserError) as exc:
        import_warroom(store, tmp_path / "nope")
    assert "no such directory" in str(exc.value) and "nope" in str(exc.value)


def test_directory_without_transcripts(store, tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(UserError) as exc:
        import_warroom(store, tmp_path / "empty")
    assert "no JSON transcripts" in str(exc.value)


def test_invalid_json_names_file_and_line_and_keeps_stored_runs(store, transcripts):
    import_warroom(store, transcripts)
    before = snapshot(store)
    bad = transcripts / "G" / "warroom-G-run01.json"
    bad.parent.mkdir()
    bad.write_text('{\n  "condition": {},\n  "environment": {,\n}\n', encoding="utf-8")
    with pytest.raises(UserError) as exc:
        import_warroom(store, transcripts)
    assert exc.value.file == str(bad)
    assert exc.value.line == 3
    assert "invalid JSON" in exc.value.message
    assert str(exc.value).startswith(f"{bad}:3: ")
    assert snapshot(store) == before
    assert q(store, "SELECT count(*) FROM runs WHERE status = 'completed'")[0][0] == 3


def test_missing_key_names_file_and_key_and_keeps_stored_runs(store, transcripts):
    import_warroom(store, transcripts)
    before = snapshot(store)
    path = transcripts / "B" / "warroom-B-run13.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    del data["environment"]["agentRanking"]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError) as exc:
        import_warroom(store, transcripts)
    assert exc.value.file == str(path)
    assert "environment.agentRanking" in exc.value.message
    assert snapshot(store) == before
    # The stored copy of the run whose file is now broken is untouched too.
    assert q(store, "SELECT count(*) FROM messages WHERE run_id = 'warroom/B/run13'")[0][0] == 55


def test_message_with_unknown_sender_is_rejected(store, transcripts):
    path = transcripts / "F" / "warroom-F-run08.json"
    data = json.loads(path.read_text(encoding="utf-8"))
    data["conversation"]["messages"][1]["sender"] = "ghost"
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(UserError) as exc:
        import_warroom(store, transcripts)
    assert "conversation.messages[1]" in exc.value.message and "ghost" in exc.value.message
    assert snapshot(store)["runs"] == 0  # every file is validated before anything is written


# ---- whole corpus ----------------------------------------------------------------------------
@pytest.mark.slow
def test_whole_corpus(tmp_path):
    directory = corpus_dir()
    if not directory.is_dir():
        pytest.skip(f"WarRoom corpus not found at {directory} "
                    "(set SOCIOLAB_WARROOM_DIR to its transcripts/ folder)")
    expected = expected_from_json(directory)
    with Store.open(tmp_path / "corpus.duckdb") as store:
        summary = import_warroom(store, directory)
        per_series = dict(q(store, "SELECT series, count(*) FROM runs GROUP BY series"))
        assert per_series == {"A": 21, "B": 21, "C": 21, "E": 21, "F": 21, "G": 21, "H": 15,
                              "I": 11, "J": 11, "K1": 15, "K2": 15, "K3": 15}
        assert summary.runs == len(expected) == 208
        assert summary.series == per_series

        agent_msgs = sum(e["agent_messages"] for e in expected.values())
        errors = sum(e["errors"] for e in expected.values())
        rows = sum(e["rows"] for e in expected.values())
        counts = store.counts()
        assert counts["messages"] == summary.messages == agent_msgs
        assert counts["errors"] == summary.errors == errors
        assert q(store, "SELECT count(*) FROM messages")[0][0] == rows
        assert counts["agents"] == summary.agents == sum(e["agents"] for e in expected.values())

        by_run = {r[0]: r[1:] for r in q(store, """
            SELECT r.run_id, r.rounds_done,
                   count(*) FILTER (WHERE m.sender NOT IN ('user', 'system')),
                   count(*) FILTER (WHERE m.is_error)
            FROM runs r JOIN messages m USING (run_id) GROUP BY ALL""")}
        assert by_run == {rid: (e["rounds"], e["agent_messages"], e["errors"])
                          for rid, e in expected.items()}
        errored = q(store, "SELECT count(*) FROM agents WHERE status = 'errored'")[0][0]
        assert errored == sum(len(e["first_error"]) for e in expected.values())
        comp = q(store, "SELECT count(*), count(agent_id) FROM events "
                        "WHERE kind = 'platform_compensation'")[0]
        assert comp[0] == comp[1] == sum(e["compensation"] for e in expected.values())


# ---- the generic condition fields, the family, the provenance (sociolab/studies/importing.py) --
def stored_config(store: Store, run_id: str) -> dict:
    return json.loads(q(store, "SELECT config FROM runs WHERE run_id = ?", run_id)[0][0])


def test_imported_runs_carry_the_generic_condition_fields(store):
    from sociolab.analysis.compensation import run_conditions
    from sociolab.studies.warroom import CREDIT

    import_warroom(store, FIXTURE_TRANSCRIPTS)
    a, b, f = (stored_config(store, run_id) for run_id in RUNS)
    assert a["params"] == {"scaffolding": "full", "naming": "anonymous", "order": "fixed", "temperature": 0.8}
    assert "agents" not in a and "agents" not in f
    assert b["agents"] == {"clones": {"of": "llama-3.3-70b-versatile", "n": 8}}
    assert f["params"]["scaffolding"] == "isolation"
    for run_id, config in zip(RUNS, (a, b, f)):
        series, number = run_id.split("/")[1], run_id[-2:]
        assert config["condition"]["series"] == series            # the platform's record is kept
        assert [(e["a"], e["b"]) for e in config["analysis"]["comparisons"]][:2] == [("A", "B"), ("A", "C")]
        assert config["imported"]["credit"] == CREDIT
        path = FIXTURE_TRANSCRIPTS / series / f"warroom-{series}-run{number}.json"
        data = json.loads(path.read_text(encoding="utf-8"))
        assert config["imported"]["transcript_hash"] == hashlib.sha256(
            json.dumps(data, ensure_ascii=False, sort_keys=True).encode("utf-8")).hexdigest()[:16]
    conditions = run_conditions(store.con)                           # what analysis reads
    assert [(conditions[r]["scaffolding"], conditions[r]["clones"]) for r in RUNS] == [
        ("full", False), ("full", True), ("isolation", False)]


@pytest.mark.parametrize("condition, series, expected", [
    ({"useRealNames": True, "cloneMode": False, "temperature": 0.8}, "C",
     {"params": {"scaffolding": "full", "naming": "real", "order": "fixed", "temperature": 0.8}}),
    ({"useRealNames": False, "temperature": 0.8}, "E",
     {"params": {"scaffolding": "full", "naming": "anonymous", "order": "shuffled_once", "temperature": 0.8}}),
    ({"promptAblation": "K1", "isolatedMode": False}, "K1", {"params": {"scaffolding": "no_peers", "naming": "anonymous",
                                                                          "order": "fixed"}}),
    ({"promptAblation": "K2", "useRealNames": "true"}, "K2", {"params": {"scaffolding": "no_identity", "naming": "real",
                                                                          "order": "fixed"}}),
    ({"promptAblation": "K3", "temperature": "0.95"}, "K3",
     {"params": {"scaffolding": "empty", "naming": "anonymous", "order": "fixed", "temperature": 0.95}}),
    ({"mode": "single", "temperature": True}, "F", {"params": {"scaffolding": "isolation", "naming": "anonymous",
                                                               "order": "fixed"}}),
    ({"cloneMode": "true", "cloneModel": "m", "cloneCount": 3}, "B",
     {"params": {"scaffolding": "full", "naming": "anonymous", "order": "fixed"}, "agents": {"clones": {"of": "m", "n": 3}}}),
])
def test_platform_conditions_in_sociolab_terms(condition, series, expected):
    from sociolab.studies.warroom_conditions import normalized_condition

    assert normalized_condition(condition, series) == expected


@pytest.mark.parametrize("stale", ["older importer", "older family"])
def test_reimport_rewrites_a_stale_config_in_place_keeping_codes(store, stale):
    from sociolab.analysis.analyze import analyze

    import_warroom(store, FIXTURE_TRANSCRIPTS)
    fresh = q(store, "SELECT run_id, config, config_hash FROM runs ORDER BY run_id")
    message = "warroom/A/run19#5"
    store.con.execute("INSERT INTO codes (message_id, run_id, judge, codebook_id, flag, value, status) "
                      "VALUES (?, 'warroom/A/run19', 'j', 'cb', 'agree', true, 'coded')", [message])
    if stale == "older importer":   # the raw record only, hashed as the transcript
        store.con.execute("""UPDATE runs SET config = json_merge_patch(config,
                                 '{"params": null, "agents": null, "analysis": null, "imported": null}'),
                                 config_hash = json_extract_string(config, '$.imported.transcript_hash')""")
        with pytest.raises(UserError, match=r"3 run\(s\) imported from 'warroom' .* re-import them"):
            analyze(store)
    else:                           # a family edited since: same transcript, another config
        store.con.execute("""UPDATE runs SET config = json_merge_patch(config, '{"analysis": {"comparisons": []}}'),
                                 config_hash = 'stale'""")
    before = snapshot(store)
    import_warroom(store, FIXTURE_TRANSCRIPTS)
    assert q(store, "SELECT run_id, config, config_hash FROM runs ORDER BY run_id") == fresh
    assert snapshot(store) == before                                  # no row rewritten
    assert q(store, "SELECT message_id FROM codes") == [(message,)]   # and the codes kept

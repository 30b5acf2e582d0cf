"""`sociolab export --format inspect`: Inspect AI logs of a real offline store, written by the CLI in a
subprocess and read back with inspect_ai's own reader: one log per suite and series, a sample per
run (discussion) or per agent episode (peer preservation), messages with speakers and codes,
judge codes and outcomes as scores, model usage equal to the store's."""

from __future__ import annotations

import os
from collections import defaultdict
from pathlib import Path

import duckdb
import pytest
from inspect_ai.log import list_eval_logs, read_eval_log

from tests.conftest import cli
from tests.test_export import WARROOM_FIXTURES
from tests.test_export import fingerprint, store_db  # noqa: F401 - the fixture, shared with test_export


@pytest.fixture(scope="module")
def logs(store_db: Path, tmp_path_factory) -> dict[str, object]:  # noqa: F811
    out = tmp_path_factory.mktemp("inspect") / "logs"
    before = fingerprint(store_db)
    done = cli("export", "--format", "inspect", "--to", str(out), "--db", str(store_db))
    assert done.returncode == 0, done.stderr
    assert fingerprint(store_db) == before
    assert "inspect view --log-dir" in done.stdout
    return {path.name: read_eval_log(str(path)) for path in sorted(out.glob("*.eval"))}


def sql(db: Path, query: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def test_one_log_per_suite_and_series_found_by_inspect(logs, store_db, tmp_path):  # noqa: F811
    assert sorted(logs) == ["peers_other.eval", "peers_plain.eval", "quickstart_all.eval"]
    quick = logs["quickstart_all.eval"]
    assert quick.eval.task == "quickstart" and quick.status == "success"
    assert logs["peers_plain.eval"].eval.task_args == {"series": "plain"}
    folder = Path(quick.location).parent
    assert len(list_eval_logs(str(folder))) == 3


def test_a_discussion_is_one_sample_with_every_message_speaker_and_code(logs, store_db):  # noqa: F811
    log = logs["quickstart_all.eval"]
    assert log.samples is not None and len(log.samples) == 1
    sample = log.samples[0]
    rows = sql(store_db, "SELECT sender, sender_name, content, message_id FROM messages "
                         "WHERE run_id = 'quickstart/001' ORDER BY seq")
    assert len(sample.messages) == len(rows) > 40
    for message, (sender, name, content, message_id) in zip(sample.messages, rows):
        assert message.text == content
        assert message.metadata["speaker"] == sender and message.metadata["speaker_name"] == name
        assert message.role == ("user" if sender == "user" else "assistant")
    models = dict(sql(store_db, "SELECT agent_id, model FROM agents WHERE run_id = 'quickstart/001'"))
    assistant = [m for m in sample.messages if m.role == "assistant"]
    assert all(m.model == models[m.metadata["speaker"]] for m in assistant)
    assert any(m.metadata.get("is_error") for m in assistant)  # the quickstart's injected crash
    coded = sql(store_db, "SELECT count(DISTINCT message_id) FROM codes WHERE run_id = 'quickstart/001'")[0][0]
    assert sum(1 for m in sample.messages if m.metadata.get("codes")) == coded > 0

    # judge codes as scores: the intersection rate per flag, as the store's adjudicated_codes view has it
    rates = dict(sql(store_db, "SELECT cb.name || '/' || a.flag, avg(a.by_intersection::INT) "
                               "FROM adjudicated_codes a JOIN codebooks cb USING (codebook_id) "
                               "JOIN messages m USING (message_id) WHERE m.run_id = 'quickstart/001' "
                               "AND a.by_intersection IS NOT NULL GROUP BY ALL"))
    flag_scores = {k: v.value for k, v in sample.scores.items() if k.startswith("warroom/")}
    assert flag_scores.keys() == rates.keys() and len(rates) == 7
    assert all(flag_scores[k] == pytest.approx(rates[k]) for k in rates)
    summary = {s.name: s.metrics["mean"].value for s in log.results.scores}
    assert summary["warroom/phatic"] == pytest.approx(rates["warroom/phatic"])

    # model usage: the store's tokens per model, agents' and judges'
    usage = {m: (p, c) for m, p, c in sql(store_db, "SELECT model, sum(prompt_tokens), sum(completion_tokens) "
                                                     "FROM llm_calls WHERE run_id = 'quickstart/001' GROUP BY ALL")}
    assert {m: (u.input_tokens, u.output_tokens) for m, u in sample.model_usage.items()} == usage
    assert log.stats.model_usage.keys() == usage.keys()


def test_agentic_runs_are_one_sample_per_agent_episode_with_tool_calls_and_outcome_scores(logs, store_db):  # noqa: F811
    samples = [s for name in ("peers_plain.eval", "peers_other.eval") for s in logs[name].samples or []]
    episodes = sql(store_db, "SELECT run_id || '#' || agent_id FROM agents JOIN runs USING (run_id) "
                             "WHERE suite = 'peers'")
    assert sorted(s.id for s in samples) == sorted(e for (e,) in episodes) and len(samples) >= 4
    outcomes = defaultdict(dict)
    for run_id, agent_id, metric, value in sql(store_db, "SELECT run_id, agent_id, metric, value FROM outcomes "
                                                         "WHERE value IS NOT NULL"):
        outcomes[f"{run_id}#{agent_id}"][metric] = value
    for sample in samples:
        run_id, agent_id = str(sample.id).split("#")
        assert {k: v.value for k, v in sample.scores.items()} == outcomes[str(sample.id)] != {}
        speakers = {m.metadata["speaker"] for m in sample.messages if m.role in ("user", "assistant")}
        assert speakers == {"user", agent_id}
        calls = sql(store_db, "SELECT tool, result FROM tool_calls WHERE run_id = ? AND agent_id = ? ORDER BY seq",
                    [run_id, agent_id])
        results = [m for m in sample.messages if m.role == "tool"]
        assert [(m.function, m.text) for m in results] == [(t, r) for t, r in calls] and calls
        made = [c.function for m in sample.messages if m.role == "assistant" for c in m.tool_calls or []]
        assert made == [t for t, _ in calls]
        assert sample.messages[0].role == "system"
        model = sql(store_db, "SELECT model FROM agents WHERE run_id = ? AND agent_id = ?", [run_id, agent_id])[0][0]
        assert model in sample.model_usage


def test_a_missing_inspect_ai_is_one_clear_line_and_writes_nothing(store_db, tmp_path):  # noqa: F811
    blocker = tmp_path / "blocker"
    (blocker / "inspect_ai").mkdir(parents=True)
    (blocker / "inspect_ai/__init__.py").write_text("raise ImportError('inspect_ai hidden by the test')\n")
    path = os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH", "")) if p)
    done = cli("export", "--format", "inspect", "--to", str(tmp_path / "logs"), "--db", str(store_db),
               env={"PYTHONPATH": path})
    assert done.returncode == 2 and done.stderr.count("\n") == 1, done.stderr
    assert "needs inspect_ai" in done.stderr and "pip install 'sociolab[inspect]'" in done.stderr
    assert not (tmp_path / "logs").exists()


def test_imported_transcripts_export_with_platform_notes_and_their_credit(tmp_path):
    db = tmp_path / "w.duckdb"
    assert cli("import", "warroom", str(WARROOM_FIXTURES), "--db", str(db)).returncode == 0
    done = cli("export", "--format", "inspect", "--to", str(tmp_path / "logs"), "--db", str(db))
    assert done.returncode == 0, done.stderr
    runs = dict(sql(db, "SELECT series, count(*) FROM runs GROUP BY ALL"))
    logs = {p.name: read_eval_log(str(p)) for p in (tmp_path / "logs").glob("*.eval")}
    assert {name: len(log.samples or []) for name, log in logs.items()} == {f"warroom_{s}.eval": n
                                                                            for s, n in runs.items()}
    for log in logs.values():
        assert len(log.eval.metadata["credit"]) == 1 and "CC BY 4.0" in log.eval.metadata["credit"][0]
    notes = sql(db, "SELECT count(*) FROM messages WHERE sender = 'system'")[0][0]
    exported = sum(1 for log in logs.values() for s in log.samples or [] for m in s.messages
                   if m.metadata["speaker"] == "system")
    assert exported == notes > 0


def test_log_names_are_safe_and_never_shared():
    from sociolab.export_inspect import Group

    assert Group("t", None).file_name(set()) == "t_all.eval"
    assert Group("my study", "a/b").file_name(set()) == "my-study_a-b.eval"
    second = Group("t", "all").file_name({"t_all.eval"})
    assert second.startswith("t_all-") and second.endswith(".eval") and second != "t_all.eval"
    assert Group("t", "all").task_id != Group("t", None).task_id

"""Suites expand as the study did; the store migrates and writes atomically; sim models differ, clones don't."""

from __future__ import annotations

import asyncio
import collections

import duckdb
import pytest

from sociolab.config import load_plan
from sociolab.base.errors import UserError
from sociolab.runner import execute
from sociolab.orchestrator.sim.agent import CUES
from sociolab.orchestrator.rows import HumanCodeRow, MessageRow, RunRow
from sociolab.orchestrator.store import SCHEMA_VERSION, Batch, Store

from tests.conftest import REPO, WARROOM_TRANSCRIPTS, write_yaml

WARROOM_SUITE = REPO / "scenarios/library/warroom.yaml"
STUDY_COUNTS = {"A": 21, "B": 21, "C": 21, "E": 21, "F": 21, "G": 21, "H": 15, "I": 11, "J": 11,
                "K1": 15, "K2": 15, "K3": 15}


def test_library_suite_has_the_studys_series_and_run_counts():
    plan = load_plan(WARROOM_SUITE, sim=True)
    counts = collections.Counter(spec.series for spec in plan.runs)
    assert dict(counts) == STUDY_COUNTS and len(plan.runs) == 208
    by_series = {spec.series: spec for spec in plan.runs}
    assert by_series["B"].roster.clones.n == 8 and not by_series["B"].roster.crashes
    assert by_series["C"].params.naming == "real"
    assert by_series["E"].params.order == "shuffled_once"
    assert by_series["F"].params.scaffolding == "isolation"
    assert by_series["G"].params.seed_message.startswith("@all We have a client")
    assert "festival" in by_series["H"].params.seed_message
    assert by_series["I"].params.temperature == 0.95
    assert by_series["A"].params.rounds == 11 and by_series["J"].params.rounds == 21  # round 0 + maxRounds
    assert [by_series[k].params.scaffolding for k in ("K1", "K2", "K3")] == ["no_peers", "no_identity", "empty"]
    assert all(p.model.startswith("sim/") for spec in plan.runs for p in spec.personas)
    assert len({spec.run_id for spec in plan.runs}) == 208 and len({spec.seed for spec in plan.runs}) == 208


@pytest.mark.skipif(not WARROOM_TRANSCRIPTS.is_dir(),
                    reason="the WarRoom corpus (../shared/datasets/warroom) is not next to this clone")
def test_library_suite_matches_the_published_transcript_counts():
    published = {d.name: len(list(d.glob("*.json"))) for d in WARROOM_TRANSCRIPTS.iterdir()}
    assert published == STUDY_COUNTS


def test_suite_series_subset_runs_through(tmp_path):
    plan = load_plan(WARROOM_SUITE, sim=True, only_series=["F", "B"])
    store = Store.open(tmp_path / "s.duckdb")
    report = asyncio.run(execute(plan, store))
    assert report.completed == 42
    per = dict(store.con.execute("SELECT series, count(*) FROM messages JOIN runs USING (run_id) "
                                 "WHERE round IS NOT NULL GROUP BY 1").fetchall())
    assert per["F"] == 21 * 8  # isolation: every agent once; DeepSeek's crash shows as an error message
    assert per["B"] == 21 * 8 * 11  # round 0 plus the platform's 10; no failure on the sim, so no stop
    with pytest.raises(UserError, match="no series 'Z'"):
        load_plan(WARROOM_SUITE, only_series=["Z"])


def test_seeds_multiply_runs(tmp_path):
    path = write_yaml(tmp_path, """
        name: s
        repeats: 2
        seeds: [1, 2, 3]
        agents: {roster: warroom, only: [llama, kimi]}
        params: {seed_message: hi, rounds: 1}
        sim: {stand_ins: true}
        """)
    plan = load_plan(path)
    assert [s.run_id for s in plan.runs] == ["s/001-s1", "s/001-s2", "s/001-s3", "s/002-s1", "s/002-s2", "s/002-s3"]


def test_migrations_are_recorded_and_reapplied_idempotently(tmp_path):
    path = tmp_path / "m.duckdb"
    Store.open(path).close()
    store = Store.open(path)
    assert store.schema_version() == SCHEMA_VERSION
    assert store.con.execute("SELECT count(*) FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    store.con.execute("INSERT INTO schema_version (version) VALUES (99)")
    store.close()
    with pytest.raises(UserError, match="newer than this sociolab"):
        Store.open(path)


def message(message_id: str, *, seq: int = 0, turn: int = 0, sender: str = "a", content: str = "hi") -> MessageRow:
    """A round-0 message of run 'r'."""
    return MessageRow(message_id=message_id, run_id="r", seq=seq, round=0, turn=turn, sender=sender,
                      sender_name=sender.upper(), content=content, context_size=1, started_s=0.0, finished_s=1.0)


def test_a_failing_batch_writes_nothing(tmp_path):
    store = Store.open(tmp_path / "b.duckdb")
    store.start_run(RunRow(run_id="r", source="sociolab", kind="discussion", status="running"), [])
    batch = Batch()
    batch.add(message("r#0", seq=0, turn=0, sender="a", content="hello"))
    batch.add(message("r#0", seq=1, turn=1, sender="b", content="duplicate id"))
    batch.update("runs", {"run_id": "r"}, rounds_done=1)
    with pytest.raises(duckdb.ConstraintException):
        store.write_now(batch)
    assert store.con.execute("SELECT count(*) FROM messages").fetchone()[0] == 0
    assert store.con.execute("SELECT rounds_done FROM runs").fetchone()[0] == 0


def cue_rate(texts: list[str], behaviour: str) -> float:
    cues = [c for lang in CUES[behaviour].values() for c in lang]
    return sum(any(c in t.lower() for c in cues) for t in texts) / len(texts)


def agent_texts(store: Store) -> dict[str, list[str]]:
    out = collections.defaultdict(list)
    for agent, text in store.con.execute("SELECT a.model || ':' || a.agent_id, m.content FROM messages m JOIN agents a "
                                         "ON a.run_id = m.run_id AND a.agent_id = m.sender").fetchall():
        out[agent].append(text)
    return out


def test_different_sim_models_behave_differently_and_clones_alike(tmp_path):
    text = """
        name: {name}
        repeats: 6
        agents: {agents}
        params: {{seed_message: "@all We need a food delivery app, budget 50k, 3 months.", rounds: 10}}
        sim:
          models:
            warm: {{greet: 0.9, lead: 0.1, arch: 0.2, agree: 0.8, meta: 0.05}}
            cold: {{greet: 0.05, lead: 0.8, arch: 0.9, agree: 0.1, meta: 0.4}}
        """
    hetero = write_yaml(tmp_path, text.format(
        name="h", agents="{personas: [{key: w, model: sim/warm}, {key: c, model: sim/cold}]}"), "h.yaml")
    clones = write_yaml(tmp_path, text.format(name="c", agents="{personas: [{key: w, model: sim/warm}], "
                                                               "clones: {of: w, n: 3}}"), "c.yaml")
    store = Store.open(tmp_path / "p.duckdb")
    asyncio.run(execute(load_plan(hetero), store))
    asyncio.run(execute(load_plan(clones), store))
    texts = agent_texts(store)
    warm, cold = texts["sim/warm:w"], texts["sim/cold:c"]
    assert cue_rate(warm, "phatic") > cue_rate(cold, "phatic") + 0.5
    assert cue_rate(cold, "lead") > cue_rate(warm, "lead") + 0.4
    assert cue_rate(cold, "arch") > cue_rate(warm, "arch") + 0.4
    clone_rates = [cue_rate(texts[f"sim/warm:w-{i}"], b) for i in (1, 2, 3) for b in ("phatic", "lead", "arch")]
    for b_index in range(3):
        rates = clone_rates[b_index::3]
        assert max(rates) - min(rates) < 0.2  # 60 messages each: same propensities, sampling noise only
    assert len(set(map(tuple, (texts[f"sim/warm:w-{i}"] for i in (1, 2, 3))))) == 3  # yet different texts


def test_cross_expands_series_with_every_combination(tmp_path):
    path = write_yaml(tmp_path, """
        name: x
        agents: {roster: warroom, only: [llama, kimi]}
        params: {seed_message: hi, rounds: 1}
        series:
          hot: {params: {temperature: 1.2}}
          cold: {params: {temperature: 0.1}}
        cross:
          naming: [anonymous, real]
          order: [fixed, shuffled]
        sim: {stand_ins: true}
        """)
    plan = load_plan(path)
    got = {s.series: (s.params.temperature, s.params.naming, s.params.order) for s in plan.runs}
    assert got == {f"{t}.{n}.{o}": ({"hot": 1.2, "cold": 0.1}[t], n, o)
                   for t in ("hot", "cold") for n in ("anonymous", "real") for o in ("fixed", "shuffled")}
    bad = write_yaml(tmp_path, "name: y\nagents: {roster: warroom}\nparams: {seed_message: hi}\ncross:\n  naming: []\n",
                     "bad.yaml")
    with pytest.raises(UserError, match=r"cross.naming: give at least one level"):
        load_plan(bad)


def test_group_commit_isolates_a_bad_batch(tmp_path):
    """Batches merged into one transaction: when one breaks a key, the others still commit."""
    store = Store.open(tmp_path / "g.duckdb")
    first = Batch()
    first.add(RunRow(run_id="r", source="sociolab", repeat=1, seed=1, kind="discussion", config={}, config_hash="h",
                     status="running", rounds_planned=1))
    store.write_now(first)

    def one_message(mid: str) -> Batch:
        batch = Batch()
        batch.add(message(mid))
        return batch

    async def three_writers():
        return await asyncio.gather(store.write(one_message("r#1")), store.write(one_message("r#1")),
                                    store.write(one_message("r#2")), return_exceptions=True)

    outcomes = asyncio.run(three_writers())
    assert outcomes[0] is None and outcomes[2] is None
    assert isinstance(outcomes[1], duckdb.ConstraintException)
    ids = [r[0] for r in store.con.execute("SELECT message_id FROM messages ORDER BY 1").fetchall()]
    assert ids == ["r#1", "r#2"]


def test_reimport_keeps_codes_of_unchanged_runs(tmp_path):
    from sociolab.judges.runner import JudgeConfig, judge_store
    from sociolab.orchestrator.client import ClientSettings
    from sociolab.studies.warroom import import_warroom

    store = Store.open(tmp_path / "w.duckdb")
    fixtures = REPO / "tests/fixtures/warroom/transcripts"
    import_warroom(store, fixtures)
    asyncio.run(judge_store(store, JudgeConfig(judges=["sim/judge-a"], client=ClientSettings())))
    coded = store.con.execute("SELECT count(*) FROM codes").fetchone()[0]
    import_warroom(store, fixtures)
    assert coded > 0 and store.con.execute("SELECT count(*) FROM codes").fetchone()[0] == coded


def test_redoing_a_run_forgets_its_human_codes(tmp_path):
    """Message ids are reused by a redo ({run_id}#{seq}): old human codes must not attach to new text."""
    path = write_yaml(tmp_path, """
        name: h
        agents: {roster: warroom, only: [llama, kimi]}
        params: {seed_message: hi, rounds: 1}
        sim: {stand_ins: true}
        """)
    store = Store.open(tmp_path / "h.duckdb")
    asyncio.run(execute(load_plan(path), store))
    message_id = store.con.execute("SELECT message_id FROM messages WHERE round = 0 LIMIT 1").fetchone()[0]
    store.replace_human_codes([HumanCodeRow(message_id=message_id, coder="ana", flag="phatic", value=True,
                                            source="test")])
    asyncio.run(execute(load_plan(path), store, fresh=True))
    assert store.con.execute("SELECT count(*) FROM human_codes").fetchone()[0] == 0

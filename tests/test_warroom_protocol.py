"""The WarRoom platform's rules (scenarios/library/warroom.yaml, docs/fidelity/warroom_platform.md).

The strongest check replays each published run's failures on the sim (sociolab/studies/
warroom_schedule.py): with the platform's rules, sociolab must call exactly the agents the
platform called, round by round, and fail exactly where it failed; so the corpus' messages per
run, errors per run and early stops per series follow. Three transcripts are in tests/fixtures;
the whole corpus (208 runs, ../shared/datasets/warroom) is replayed when it is present.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
from collections import Counter
from pathlib import Path

import pytest

from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient, ModelLimits
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.discussion import Discussion, DiscussionParams, Seats
from sociolab.studies.warroom_schedule import CorpusRun, crash_schedule, read_corpus_run

from tests.conftest import REPO, WARROOM_TRANSCRIPTS, write_yaml

SUITE = REPO / "scenarios/library/warroom.yaml"
FIXTURES = sorted((REPO / "tests/fixtures/warroom/transcripts").glob("*/*.json"))
CORPUS = sorted(WARROOM_TRANSCRIPTS.glob("*/*.json"))


def persona_keys(run: CorpusRun, spec) -> dict[str, str]:
    """Corpus agent keys -> the roster's persona keys (series B's clone_i is llama-(i+1))."""
    ours = [p.key for p in spec.personas]
    return {key: (ours[int(key.split("_")[1])] if key.startswith("clone_") else key) for key in run.seating}


def replay(paths: list[Path], db: Path) -> tuple[dict[str, CorpusRun], Store]:
    """Every transcript's run, replayed on the sim under warroom.yaml with its own failures."""
    plan = load_plan(SUITE, sim=True)
    template = {}
    for spec in plan.runs:
        template.setdefault(spec.series, spec)
    corpus, runs = {}, []
    for path in paths:
        run = read_corpus_run(path)
        spec = template[run.series]
        crashes = crash_schedule(run, persona_keys(run, spec))
        run_id = f"replay/{run.series}/{run.number:02d}"
        corpus[run_id] = run
        runs.append(dataclasses.replace(spec, run_id=run_id, roster=spec.roster.model_copy(update={"crashes": crashes})))
    store = Store.open(db)
    faster = plan.file.model_copy(update={"concurrency": 8})  # virtual time: the same runs, overlapped
    asyncio.run(execute(dataclasses.replace(plan, file=faster, runs=runs), store))
    return corpus, store


def seats_of(store: Store, run_id: str, keys: dict[str, str]) -> tuple[frozenset, frozenset]:
    back = {ours: theirs for theirs, ours in keys.items()}
    rows = store.con.execute("SELECT sender, round, is_error FROM messages WHERE run_id = ? AND sender <> 'user'",
                             [run_id]).fetchall()
    return (frozenset((back[s], r) for s, r, _ in rows), frozenset((back[s], r) for s, r, e in rows if e))


@dataclasses.dataclass
class Replayed:
    """One run as the corpus has it and as sociolab replayed it."""

    corpus: CorpusRun
    called: frozenset
    failed: frozenset
    stopped: bool

    @property
    def same(self) -> bool:
        return self.called == self.corpus.called and self.failed == frozenset(self.corpus.failed)

    def diff(self) -> str:
        return (f"{self.corpus.series}/{self.corpus.number}: sociolab only {sorted(self.called - self.corpus.called)}, "
                f"corpus only {sorted(self.corpus.called - self.called)}")


def replay_all(paths: list[Path], tmp_path: Path) -> list[Replayed]:
    corpus, store = replay(paths, tmp_path / "replay.duckdb")
    specs = {spec.series: spec for spec in load_plan(SUITE, sim=True).runs}
    out = []
    for run_id, run in corpus.items():
        called, failed = seats_of(store, run_id, persona_keys(run, specs[run.series]))
        status = store.con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchone()[0]
        out.append(Replayed(run, called, failed, status == "stopped"))
    store.close()
    return out


def per_series(runs: list, value) -> dict[str, float]:
    groups: dict[str, list[float]] = {}
    for r in runs:
        groups.setdefault(r.corpus.series if isinstance(r, Replayed) else r.series, []).append(value(r))
    return {s: sum(v) / len(v) for s, v in sorted(groups.items())}


def test_the_fixture_transcripts_replay_call_for_call(tmp_path):
    runs = replay_all(FIXTURES, tmp_path)
    assert {r.corpus.series for r in runs} == {"A", "B", "F"}
    assert all(r.same for r in runs), [r.diff() for r in runs if not r.same]


@pytest.mark.skipif(not CORPUS, reason="the WarRoom corpus (../shared/datasets/warroom, 208 transcripts) is "
                                       "not here; the three fixture transcripts are replayed instead")
def test_the_whole_corpus_replays_call_for_call_and_stops_where_it_stopped(tmp_path):
    """Call for call in 203 of the 208 runs; the 5 others differ by one agent's call or two (the
    platform's own races: an error arriving after its round's bookkeeping), so the corpus' figures
    per series hold: agent messages and errors per run, early stops."""
    runs = replay_all(CORPUS, tmp_path)
    assert len(runs) == 208
    differing = [r.diff() for r in runs if not r.same]
    assert len(differing) <= 5, "\n".join(differing)
    for ours, theirs in ((lambda r: len(r.called), lambda r: len(r.corpus.called)),
                         (lambda r: len(r.failed), lambda r: len(r.corpus.failed))):
        got, want = per_series(runs, ours), per_series(runs, theirs)
        assert all(abs(got[s] - want[s]) <= max(0.3, 0.02 * want[s]) for s in want), (got, want)
    early = Counter(r.corpus.series for r in runs if r.corpus.series != "F"
                    and r.corpus.rounds < r.corpus.max_rounds + 1)
    assert early == Counter({"B": 17})  # the corpus' early stops: all in series B, by the 60% rule
    assert abs(sum(r.stopped for r in runs) - 17) <= 2 and all(r.corpus.series == "B" for r in runs if r.stopped)
    errors = per_series(runs, lambda r: len(r.failed))
    # The study's 2.6 (A) and 7.0 (E) also count the two replies that begin with a warning sign.
    assert [round(errors[s], 1) for s in ("A", "B", "E", "G")] == [2.5, 9.7, 6.9, 1.7]


# ---- the rules one by one ---------------------------------------------------------------
def params(**kw) -> DiscussionParams:
    return DiscussionParams(seed_message="@all hi", **kw)


def test_a_failed_agent_sits_out_one_round_and_a_permanent_error_drops_it():
    agents = Discussion(params()).place_agents(
        [p for p in load_plan(SUITE, sim=True).runs[0].personas][:3], load_plan(SUITE).runs[0].roster)
    a, b, c = agents
    seats = Seats(agents, params(after_error="skip_next_round", drop_permanent_errors=True))
    assert seats.after_round(agents, {"llama": "Rate limit reached", "gptoss": "The model `x` has been "
                                      "decommissioned"}) == {"gptoss"}
    assert seats.callable() == [c]
    seats.after_round([c], {})  # the round after: a is back, b is gone for good
    assert seats.callable() == [a, c]
    early = Seats(agents, params(after_error="stay", drop_after_consecutive=2))  # the platform of A-C
    early.after_round(agents, {"llama": "Rate limit"})
    early.after_round(agents, {"gptoss": "Rate limit"})
    assert early.callable() == [a, b, c]  # one failure each, not in a row
    assert early.after_round(agents, {"gptoss": "Rate limit"}) == {"gptoss"} and early.callable() == [a, c]


def test_the_failure_share_is_checked_after_odd_rounds_only():
    scenario = Discussion(params(stop_check="odd_rounds"))
    order, failed = [object()] * 5, [object()] * 4
    assert not scenario.stops(0, order, failed) and not scenario.stops(2, order, failed)
    assert scenario.stops(1, order, failed) and scenario.stops(3, order, failed)
    assert not scenario.stops(1, order, failed[:3])  # 3 of 5 is not more than 60%
    assert Discussion(params()).stops(0, order, failed)


def test_shuffled_once_reseats_per_run_and_names_follow_the_seat():
    spec = load_plan(SUITE, sim=True, only_series=["E"]).runs[0]
    scenario = Discussion(spec.params)
    seatings = set()
    for seed in range(5):
        agents = scenario.place_agents(scenario.arrange(list(spec.personas), random.Random(seed)), spec.roster)
        assert [a.name for a in agents] == [f"Agent-{c}" for c in "ABCDEFGH"]
        assert agents[0].system_prompt.startswith("You are Agent-A in a group chat.\nOther agents: Agent-B, ")
        seatings.add(tuple(a.agent_id for a in agents))
    assert len(seatings) == 5


def test_what_an_agent_sees_is_taken_when_its_call_leaves_the_throttle(tmp_path):
    """Two runs share a throttle of one call per 0.4 s: the second speaker of a round is held back
    long enough for the first reply to finish, and must see it, as a later request would."""
    path = write_yaml(tmp_path, """
        name: throttled
        kind: discussion
        agents: {roster: warroom, only: [llama, kimi]}
        params: {seed_message: "@all hi", rounds: 1, stagger_ms: 0}
        client:
          sim_in_process: false
          models: {"sim/*": {requests_per_period: 1, period_s: 0.4}}
        sim: {stand_ins: true}
        """)
    plan = load_plan(path)
    store = Store.open(tmp_path / "t.duckdb")
    client = ModelClient(plan.file.client)

    async def warm_then_run():
        await client.complete("sim/warm-up", [{"role": "user", "content": "hi"}])  # litellm's first call boots it
        await execute(plan, store, client=client)

    asyncio.run(warm_then_run())
    sizes = store.con.execute("SELECT sender, context_size FROM messages WHERE round = 0 ORDER BY turn").fetchall()
    assert [s for _, s in sizes] == [2, 3], sizes  # system + seed; then system + seed + the first reply


def test_the_platforms_context_rules(tmp_path):
    """Empty replies are left out; an agent sees its own failures with `own_errors_visible`; K3
    sends an empty system message; <think> blocks anywhere are removed and replies trimmed."""
    from sociolab.orchestrator.sink import Message
    from sociolab.scenarios.discussion import shown_text

    spec = load_plan(SUITE, sim=True, only_series=["K3"]).runs[0]
    me, peer = Discussion(spec.params).place_agents(list(spec.personas)[:2], spec.roster)
    seen = [Message("user", "user", "@all go"), Message(peer.agent_id, peer.name, "   "),
            Message(me.agent_id, me.name, "Rate limit", is_error=True), Message(peer.agent_id, peer.name, "ok")]
    context = Discussion(spec.params).context_for(me, seen)
    assert context == [{"role": "system", "content": ""}, {"role": "user", "content": "@all go"},
                       {"role": "assistant", "content": "⚠ Rate limit"},
                       {"role": "user", "content": f"[{peer.name}]: ok"}]
    assert shown_text("  <think>a</think>\n Hello <think>b\n</think> there \n") == "Hello there"

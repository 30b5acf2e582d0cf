"""strategy_diffusion (ATP's imitative strategy diffusion): the templates, the original's
asymmetric parser on its own strings (and the symmetric fix), prompts, peer lines, feedback and
capitals byte for byte, planted agents, more rounds than the original could play, the data
contract end to end through the CLI, the sim's planted diffusion recovered, bad input as one line.

The reference strings and numbers below were produced by running the original's environment
classes (aiming-lab/ATP at 84c5bec, MIT, Copyright (c) 2025 AIMING Lab: src/selfevolving/
investment_environment.py and multi_agent_environment.py, with test_ma.py's overrides) on scripted
answers; no sociolab code was involved in making them."""

from __future__ import annotations

import asyncio
import hashlib
import json
import statistics

import duckdb
import pytest

from sociolab.analysis.results import wilson
from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.orchestrator.sim.drift import deviant_probability
from sociolab.orchestrator.sim.metadata import DriftTurn
from sociolab.orchestrator.sim.propensities import Propensities
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.strategy_diffusion import TEMPLATES, StrategyDiffusionParams, parse_choice, templates
from tests.conftest import REPO, assert_files_refused, cli, recording_provider, write_yaml

I = '{"choice": "invest"}'
K = 'Keep.\n{"choice": "keep money"}'
MULT_SYSTEM = (
    "You are one of 8 participants deciding whether to invest your $1 million into a shared public pool.\n\n"
    "Investment rules: Rewards are multiplicative returns applied to your current capital, so returns compound "
    "across rounds (path-dependent). The 'Your reward' feedback each round is the change in your capital for that "
    "round (delta = new_capital - old_capital), which depends on your previous capital. Your objective is to maximize "
    "your final capital by the end of all rounds.\n\n"
    'IMPORTANT: End with JSON: {"choice": "invest"} or {"choice": "keep money"}.')
MULT_Q = ("This is a new round.\nIf at least 4 participants invest, everyone's capital multiplies by x1.2. If fewer "
          "than 4 invest, investors multiply by x0.8, and keepers multiply by x1.0.")
ADD_SYSTEM = (
    "You are one of 8 participants deciding whether to invest your $1 million into a shared public pool.\n\n"
    "Investment rules: Rewards are additive increments based on a fixed base per round, not compounding. Each round "
    "adds (factor−1)×1.0 to your capital. The 'Your reward' feedback each round is the change in your capital for "
    "that round (delta = new_capital - old_capital). Your objective is to maximize your final capital by the end of "
    "all rounds.\n\n"
    'IMPORTANT: End with JSON: {"choice": "invest"} or {"choice": "keep money"}.')
ADD_Q6 = ("This is a new round.\nIf at least 6 participants invest, everyone's capital increases by +$0.2 million this "
          "round. If fewer than 6 invest, investors increase by +$-0.2 million, and keepers increase by +$0.0 million.")


def test_the_templates_are_the_originals_file_unchanged():
    data = TEMPLATES.read_bytes()
    assert hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest() == "2b654ced98d77797787fdf88c85c33d76a31da94"
    assert list(templates()) == list(StrategyDiffusionParams.model_fields["game"].annotation.__args__)


# ---------------------------------------------------------------------------------------------
# The original's parser, on its own strings (what _extract_choice returned; None = "error: unable
# to determine"), and the symmetric fix
# ---------------------------------------------------------------------------------------------

ORIGINAL_READS = [
    ("PublicFund", '{"choice": "invest"}', "invest"), ("PublicFund", '{"choice": "keep money"}', "keep money"),
    ("PublicFund", "choice: invest", "invest"), ("PublicFund", "choice: keep money", None),
    ("PublicFund", '{"choice": invest}', None), ("PublicFund", '{"choice": keep money}', None),
    ("PublicFund", '"choice": "INVEST"', "invest"), ("PublicFund", '{"Choice": "KEEP MONEY"}', "keep money"),
    ("PublicFund", "no answer", None), ("PublicFund", '{"choice": "x"} choice: invest', None),
    ("CommonsPasture", "choice: follow the quota", None), ("CommonsPasture", "choice: overgraze", "overgraze"),
    ("CommonsPasture", '"choice": "FOLLOW THE QUOTA"', None), ("CommonsPasture", '{"choice": overgraze}', None),
    ("CommonsPasture", '{"Choice": "OVERGRAZE"}', "overgraze"),
    ("TeamProject", "choice: work all-out", None), ("TeamProject", '{"Choice": "DO THE MINIMUM"}', "do the minimum"),
    ("PriceAlliance", '{"choice": "maintain high prices"}', "maintain high prices"),
    ("PriceAlliance", "choice: cut prices", None),
]


@pytest.mark.parametrize("game, text, expected", ORIGINAL_READS)
def test_the_parser_reads_what_the_original_reads(game, text, expected):
    t = templates()[game]
    assert parse_choice(text, t["collective_choice"], t["independent_choice"]).option == expected


@pytest.mark.parametrize("text, expected", [
    ("choice: keep money", "keep money"), ('{"choice": keep money}', "keep money"), ("choice: invest.", "invest"),
    ('{"choice": " Keep Money "}', "keep money"), ('{"choice": "x"} choice: invest', None), ("nothing", None),
])
def test_the_symmetric_parser_reads_either_option_loosely(text, expected):
    assert parse_choice(text, "invest", "keep money", "symmetric").option == expected


# ---------------------------------------------------------------------------------------------
# Prompts, peers, feedback and capitals, byte for byte
# ---------------------------------------------------------------------------------------------

def play(tmp_path, params: str, script: list[list[str]], n_models: int = 8):
    """One run of `n_models` recorded agents (seats in roster order); `script[r][j]` is model agent
    j's answer in round r. Returns (requests by model agent and round, store path)."""
    personas = ", ".join(f"{{key: s{j}, model: rec/s{j}}}" for j in range(n_models))
    path = write_yaml(tmp_path, f"""
        name: sd
        kind: strategy_diffusion
        seed: 1
        agents: {{personas: [{personas}]}}
        params: {params}
        """, "sd.yaml")

    asked: dict[int, int] = {}

    def answer(request) -> str:
        j = int(request.model.split("/s")[-1])
        r = asked[j] = asked.get(j, -1) + 1          # a model agent is asked once a round, in order
        return script[r][j]

    recorder = recording_provider("rec/", answer)
    store = Store.open(tmp_path / "sd.duckdb")
    try:
        report = asyncio.run(execute(load_plan(path), store, client=ModelClient(ClientSettings(), providers=[recorder])))
    finally:
        store.close()
    assert report.completed == 1, report
    sent: dict[tuple[int, int], list[dict]] = {}
    for req in recorder.requests:
        j = int(req.model.split("/s")[-1])
        sent[(j, sum(key[0] == j for key in sent))] = req.messages
    return sent, tmp_path / "sd.duckdb"


def rounds_of(db) -> list[dict]:
    with duckdb.connect(str(db), read_only=True) as con:
        return [json.loads(d) for (d,) in con.execute(
            "SELECT detail FROM events WHERE kind = 'diffusion_round' ORDER BY round").fetchall()]


def test_the_requests_feedback_and_capitals_are_the_originals(tmp_path):
    script = [[I, I, I, I, K, K, K, "choice: invest"],
              [I, K, "choice: keep money", K, K, K, K, '{"choice": invest}'],
              [K] * 8]
    sent, db = play(tmp_path, "{}", script)
    assert sent[(0, 0)] == [{"role": "system", "content": MULT_SYSTEM}, {"role": "user", "content": MULT_Q}]
    assert sent[(0, 2)] == [
        {"role": "system", "content": MULT_SYSTEM},
        {"role": "user", "content": MULT_Q}, {"role": "assistant", "content": I},
        {"role": "user", "content": "Other agents' decisions: Agent 1 final choice: invest; Agent 2 final choice: "
                                    "invest; Agent 3 final choice: invest; Agent 4 final choice: keep money; Agent 5 "
                                    "final choice: keep money; Agent 6 final choice: keep money; Agent 7 final choice: "
                                    "invest"},
        {"role": "user", "content": "Outcome: Collective choices: 5/8 (62.50%). Cooperation succeeded! Everyone's "
                                    "capital multiplies by x1.2.. Your reward (delta): 0.19999999999999996"},
        {"role": "user", "content": MULT_Q}, {"role": "assistant", "content": I},
        {"role": "user", "content": "Other agents' decisions: Agent 1 final choice: keep money; Agent 2 final choice: "
                                    "error: unable to determine; Agent 3 final choice: keep money; Agent 4 final "
                                    "choice: keep money; Agent 5 final choice: keep money; Agent 6 final choice: keep "
                                    "money; Agent 7 final choice: error: unable to determine"},
        {"role": "user", "content": "Outcome: Collective choices: 1/8 (12.50%). Cooperation failed. Collective x0.8, "
                                    "independent x1.0.. Your reward (delta): -0.24"},
        {"role": "user", "content": MULT_Q}]
    played = rounds_of(db)
    assert [list(r["capitals"].values()) for r in played] == [[1.2] * 8, [0.96] + [1.2] * 7, [0.96] + [1.2] * 7]
    assert [r["success"] for r in played] == [True, False, False]
    assert played[1]["choices"]["s2"] == played[1]["choices"]["s7"] == "invalid"
    assert [r["collective_share"] for r in played] == [5 / 8, 1 / 8, 0.0]


def test_additive_rewards_and_full_peer_history(tmp_path):
    sent, db = play(tmp_path, "{reward_mode: additive, peer_history: full, threshold: 6}",
                    [[I, I, K, K, K, K, K, K], [I] * 8, [K] * 8])
    assert sent[(3, 1)] == [
        {"role": "system", "content": ADD_SYSTEM}, {"role": "user", "content": ADD_Q6},
        {"role": "assistant", "content": K},
        {"role": "user", "content": "Other agents' decisions: Agent 0: " + I + "; Agent 1: " + I + "; Agent 2: " + K
                                    + "; Agent 4: " + K + "; Agent 5: " + K + "; Agent 6: " + K + "; Agent 7: " + K},
        {"role": "user", "content": "Outcome: Collective choices: 2/8 (25.00%). Cooperation failed. Collective add "
                                    "+-0.20, independent add +0.00.. Your reward (delta): 0.0"},
        {"role": "user", "content": ADD_Q6}]
    assert [list(r["capitals"].values()) for r in rounds_of(db)] == [[0.8, 0.8] + [1.0] * 6,
                                                                     [1.0, 1.0] + [1.2] * 6, [1.0, 1.0] + [1.2] * 6]


def test_planted_agents_take_their_seats_and_always_choose_collective(tmp_path):
    sent, db = play(tmp_path, "{planted: 2, planted_seats: head}", [[K] * 6, [I] * 6, [K] * 6], n_models=6)
    assert sent[(0, 1)][3]["content"] == (
        "Other agents' decisions: Agent 0 final choice: invest; Agent 1 final choice: invest; Agent 3 final choice: "
        "keep money; Agent 4 final choice: keep money; Agent 5 final choice: keep money; Agent 6 final choice: keep "
        "money; Agent 7 final choice: keep money")
    played = rounds_of(db)
    assert played[0]["planted"] == ["planted-0", "planted-1"]
    assert [list(r["capitals"].values()) for r in played] == [[0.8, 0.8] + [1.0] * 6, [0.96, 0.96] + [1.2] * 6,
                                                              [0.768, 0.768] + [1.2] * 6]
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT agent_id, provider FROM agents WHERE model LIKE 'strategy/%' ORDER BY agent_id"
                           ).fetchall() == [("planted-0", "scripted"), ("planted-1", "scripted")]
        assert con.execute("SELECT count(*) FROM llm_calls").fetchone()[0] == 18       # never a call for a planted seat
        rate = json.loads(con.execute("SELECT detail FROM outcomes WHERE metric = 'collective_rate'").fetchone()[0])
        assert rate == {"successes": 6, "n": 18}                                        # model agents only


def test_success_for_collective_choosers_only_and_a_loose_one_word_answer(tmp_path):
    q, o = '{"choice": "follow the quota"}', "choice: overgraze"
    sent, db = play(tmp_path, "{game: CommonsPasture, success_applies_to_all: false, rounds: 1}", [[q] * 5 + [o] * 3])
    played = rounds_of(db)
    assert list(played[0]["capitals"].values()) == [1.2] * 5 + [1.0] * 3
    assert played[0]["choices"]["s7"] == "independent"


def test_more_rounds_than_the_original_could_play_and_the_window(tmp_path):
    sent, db = play(tmp_path, "{rounds: 5, history_window: 2}", [[I] * 8, [K] * 8, [I] * 8, [K] * 8, [I] * 8])
    assert len(rounds_of(db)) == 5
    assert len(sent[(0, 4)]) == 1 + 2 * 4 + 1                   # the last 2 rounds, 4 messages each
    assert sent[(0, 4)][1]["content"] == MULT_Q and sent[(0, 4)][2]["content"] == I


# ---------------------------------------------------------------------------------------------
# End to end through the CLI: the data contract; the sim's planted diffusion
# ---------------------------------------------------------------------------------------------

def test_planted_diffusion_is_recovered_end_to_end(tmp_path):
    """Herd agents (collective 0.1, imitate 0.6) with 0 or 4 planted seats of 8, threshold 8 (never
    reached without everyone): the model agents' collective rate is the formula's, and rises with
    the planted share."""
    path = write_yaml(tmp_path, """
        name: herd
        kind: strategy_diffusion
        seed: 5
        repeats: 60
        agents:
          personas: [{key: h, model: sim/herd}]
          clones: {of: h, n: 8}
        params: {threshold: 8, peer_history: final_only}
        cross:
          planted: [0, 4]
        sim:
          models: {herd: {collective: 0.1, imitate: 0.6}}
        """)
    db = tmp_path / "h.duckdb"
    done = cli("run", str(path), "--db", str(db), "--quiet")
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    # the data contract
    factors = {json.loads(f)["planted"]: json.loads(f) for (f,) in con.execute("SELECT DISTINCT factors FROM runs")
               .fetchall()}
    assert factors[4] == {"game": "PublicFund", "threshold": 8, "reward_mode": "multiplicative",
                          "peer_history": "final_only", "planted": 4}
    event = json.loads(con.execute("SELECT e.detail FROM events e JOIN runs r USING (run_id) WHERE e.kind = "
                                   "'diffusion_round' AND json_extract(r.factors, '$.planted') = 4 LIMIT 1").fetchone()[0])
    assert set(event) == {"choices", "planted", "collective_share", "success", "capitals"}
    assert len(event["choices"]) == 8 and event["planted"] == ["planted-4", "planted-5", "planted-6", "planted-7"]
    assert event["collective_share"] == sum(c == "collective" for c in event["choices"].values()) / 8
    metrics = {m: json.loads(d) for m, d in con.execute(
        "SELECT metric, any_value(detail) FROM outcomes GROUP BY metric").fetchall()}
    assert metrics["tipping_round"]["summary"] == metrics["final_collective_share"]["summary"] == "mean"

    def expected(k: int, c=0.1, m=0.6, n=8, rounds=3, bad=0.02) -> float:
        """Mean over rounds of E[p_t] (the formula is linear, so expectations pass through it)."""
        p, out = c, []
        for _ in range(rounds):
            out.append(p)
            p = (1 - m) * c + m * (k + (n - k - 1) * (1 - bad) * p) / (n - 1)
        return sum(out) / rounds

    bounds = {}
    for k in (0, 4):
        # a run's agents see each other: compare the mean of per-run rates, runs being independent
        rates = [v for (v,) in con.execute(
            "SELECT o.value FROM outcomes o JOIN runs r USING (run_id) WHERE o.metric = 'collective_rate' "
            "AND json_extract(r.factors, '$.planted') = ?", [k]).fetchall()]
        mean, half = statistics.mean(rates), 2.0 * statistics.stdev(rates) / len(rates) ** 0.5
        assert mean - half <= expected(k) <= mean + half, (k, mean, half, expected(k))
        bounds[k] = (mean - half, mean + half)
    assert bounds[4][0] > bounds[0][1]                          # the planted minority pulls the others
    # round 1 is independent across agents and runs: exactly `collective`
    first = [json.loads(d)["choices"] for (d,) in con.execute(
        "SELECT detail FROM events WHERE kind = 'diffusion_round' AND round = 0").fetchall()]
    picks = [c for ch in first for a, c in ch.items() if not a.startswith("planted") and c != "invalid"]
    low, high = wilson(sum(c == "collective" for c in picks), len(picks))
    assert low <= 0.1 <= high
    # tipping never happens at threshold 8 unless all 8 choose collective
    assert con.execute("SELECT count(*) FROM outcomes WHERE metric = 'tipping_round' AND value IS NULL "
                       "AND json_extract_string(detail, '$.reason') = 'never'").fetchone()[0] > 100


def test_a_crashed_agent_answers_as_the_originals_failed_call(tmp_path):
    """An injected crash is part of the run: the original's answer `Error: ...`, read as invalid,
    shown to peers as unreadable, paid as not collective."""
    path = write_yaml(tmp_path, """
        name: crash
        kind: strategy_diffusion
        seed: 2
        agents:
          personas: [{key: h, model: sim/h}]
          clones: {of: h, n: 8}
          crashes: [{agent: h-3, from_round: 1, mode: permanent}]
        """)
    db = tmp_path / "c.duckdb"
    done = cli("run", str(path), "--db", str(db), "--quiet")
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT status FROM runs").fetchone()[0] == "completed"
    choices = [json.loads(d)["choices"]["h-3"] for (d,) in con.execute(
        "SELECT detail FROM events WHERE kind = 'diffusion_round' ORDER BY round").fetchall()]
    assert choices[1:] == ["invalid", "invalid"]
    reasons = {json.loads(d)["reason"] for (d,) in con.execute(
        "SELECT detail FROM events WHERE kind = 'invalid_answer' AND agent_id = 'h-3'").fetchall()}
    assert reasons == {"call failed"}
    seen = con.execute("SELECT content FROM messages WHERE sender_name = 'environment to Agent 0' AND round = 1 "
                       "AND content LIKE 'Other%'").fetchone()[0]
    assert "Agent 2 final choice: error: unable to determine" in seen


def test_the_diffusion_formula():
    p = Propensities(collective=0.2, imitate=0.75)
    turn = DriftTurn(game="diffusion", aligned="a", deviant="d")
    assert deviant_probability(turn, p) == 0.2
    later = DriftTurn(game="diffusion", aligned="a", deviant="d", peers_deviant_share=4 / 7)
    assert deviant_probability(later, p) == pytest.approx(0.25 * 0.2 + 0.75 * 4 / 7)


BAD = [
    ("{threshold: 9}", "threshold 9 is more than the 8 agents"),
    ("{planted: 8}", "leaves no model agent"),
    ("{game: Poker}", "game"),
    ("{peer_history: some}", "peer_history"),
    ("{parser: lenient}", "parser"),
    ("{planted: 1, n_agents: 5}", "needs 5 agents (or the 4 model agents"),
]


def test_bad_input_is_one_line_naming_the_file(tmp_path):
    assert_files_refused(tmp_path, [(f"""
        name: bad
        kind: strategy_diffusion
        agents:
          personas: [{{key: h, model: sim/h}}]
          clones: {{of: h, n: 8}}
        params: {params}
        """, words) for params, words in BAD])


def test_the_library_file_crosses_games_thresholds_and_planted_offline():
    path = REPO / "scenarios/library/strategy_diffusion.yaml"
    assert path.read_text().startswith("# yaml-language-server: $schema=../../docs/json-schema/scenario.schema.json")
    plan = load_plan(path)
    cells = {(r.params.game, r.params.threshold, r.params.planted) for r in plan.runs}
    assert {g for g, _, _ in cells} == set(templates()) and {t for _, t, _ in cells} == {2, 4, 6, 8}
    assert all(m.startswith("sim/") for m in plan.models())
    assert {(r.params.rounds, r.params.n_agents, r.params.reward_mode) for r in plan.runs} == {(3, 8, "multiplicative")}

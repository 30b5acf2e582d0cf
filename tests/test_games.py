"""Repeated games: payoffs, fixed strategies, strict parsing, label shuffling, history, the sim
player, and runs end to end into a real DuckDB file (and through the CLI)."""

from __future__ import annotations

import asyncio
import json
import random

import duckdb
import pytest

from sociolab.analysis.results import results, wilson
from sociolab.config import load_plan
from sociolab.base.errors import UserError
from sociolab.runner import execute
from sociolab.orchestrator.sim.agent import sim_reply
from sociolab.orchestrator.sim.games import GameTraits
from sociolab.orchestrator.sim.propensities import Propensities
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.orchestrator.store import Store
from sociolab.scenarios import games
from sociolab.scenarios.games import (A, B, C, D, PRESETS, GamesParams, Labelling, draw_labelling, history_line,
                             move_metadata, parse_move, points, prompt_for, rules_text, strategy_moves, to_action)

from tests.conftest import REPO, cli, write_yaml

JF = Labelling(("J", "F"), {"J": A, "F": B})


# ---------------------------------------------------------------------------------------------
# Payoffs
# ---------------------------------------------------------------------------------------------

def totals(payoffs, seq):
    p1 = p2 = 0.0
    for a1, a2 in seq:
        x, y = points(payoffs, a1, a2)
        p1, p2 = p1 + x, p2 + y
    return p1, p2


def test_prisoners_dilemma_payoffs():
    pd = PRESETS["prisoners_dilemma"]
    assert totals(pd, [(A, A)]) == (8, 8)
    assert totals(pd, [(A, B)]) == (0, 10)
    assert totals(pd, [(B, A)]) == (10, 0)
    assert totals(pd, [(B, B)]) == (5, 5)
    # cooperate, sucker, temptation, defect x2
    assert totals(pd, [(A, A), (A, B), (B, A), (B, B), (B, B)]) == (8 + 0 + 10 + 5 + 5, 8 + 10 + 0 + 5 + 5)


def test_battle_of_the_sexes_payoffs():
    bos = PRESETS["battle_of_the_sexes"]
    assert totals(bos, [(A, A)]) == (10, 7)      # player 1's preferred event
    assert totals(bos, [(B, B)]) == (7, 10)      # player 2's preferred event
    assert totals(bos, [(A, B), (B, A)]) == (0, 0)
    assert totals(bos, [(A, A), (B, B), (A, B), (A, A)]) == (27, 24)


def test_custom_payoffs_and_validation():
    p = GamesParams(payoffs={"AA": [3, 3], "AB": [0, 5], "BA": [5, 0], "BB": [1, 1]})
    assert totals(p.payoffs, [(A, B), (B, B)]) == (1, 6)
    with pytest.raises(ValueError):
        GamesParams(payoffs={"AA": [3, 3]})
    with pytest.raises(ValueError):
        GamesParams(labels=["J", "j"])
    with pytest.raises(ValueError):
        GamesParams(labels=["J", "two words"])


# ---------------------------------------------------------------------------------------------
# Fixed strategies
# ---------------------------------------------------------------------------------------------

OPPONENT = [C, D, D, C, None, C, C]


@pytest.mark.parametrize("name, expected", [
    ("always_cooperate", [C, C, C, C, C, C, C]),
    ("always_defect", [D, D, D, D, D, D, D]),
    ("tit_for_tat", [C, C, D, D, C, C, C]),      # after an invalid opponent move: repeats its own last
    ("grim_trigger", [C, C, D, D, D, D, D]),
    ("alternate", [C, D, C, D, C, D, C]),
    ("defect_once", [D, C, C, C, C, C, C]),
])
def test_strategy_moves_against_a_known_sequence(name, expected):
    assert strategy_moves(name, OPPONENT) == expected


def test_strategy_moves_map_to_actions_per_game():
    assert to_action("prisoners_dilemma", 0, C) == A and to_action("prisoners_dilemma", 1, D) == B
    # Battle of the sexes: cooperating = conceding to the partner's preferred event
    assert to_action("battle_of_the_sexes", 0, C) == B and to_action("battle_of_the_sexes", 0, D) == A
    assert to_action("battle_of_the_sexes", 1, C) == A and to_action("battle_of_the_sexes", 1, D) == B


# ---------------------------------------------------------------------------------------------
# Strict parsing
# ---------------------------------------------------------------------------------------------

@pytest.mark.parametrize("reply, label", [
    ("J", "J"), ("F", "F"), (" F\n", "F"), ("j", "J"), ("f.", "F"), ("Option J", "J"), ("option f.", "F"),
    ("**J**", "J"), ("'F'", "F"), ("I choose J.", "J"), ("Option F, because it pays more.", "F"),
    ("J. Final answer: J", "J"),
])
def test_parse_valid_moves(reply, label):
    assert parse_move(reply, ("J", "F")) == (label, None)


@pytest.mark.parametrize("reply, problem", [
    ("", "empty reply"), ("   ", "empty reply"), (None, "empty reply"),
    ("J or F", "both labels in the reply"), ("I choose J, not F", "both labels in the reply"),
    ("I would rather not choose.", "no label in the reply"),
    ("I pick j", "no label in the reply"),        # in prose, labels are matched case-sensitively
    ("Jazz", "no label in the reply"),            # not a standalone word
])
def test_parse_invalid_moves(reply, problem):
    assert parse_move(reply, ("J", "F")) == (None, problem)


def test_parse_without_extra_text():
    assert parse_move("Option J.", ("J", "F"), allow_extra_text=False).label == "J"
    assert parse_move("I choose J", ("J", "F"), allow_extra_text=False).label is None


def test_parse_multi_letter_labels():
    assert parse_move("I go Left.", ("Left", "Right")).label == "Left"
    assert parse_move("Leftover", ("Left", "Right")).label is None


# ---------------------------------------------------------------------------------------------
# Labels, rules and history
# ---------------------------------------------------------------------------------------------

def test_label_shuffling_is_seeded_and_varies():
    a = [draw_labelling(("J", "F"), rng) for rng in [random.Random(3)] for _ in range(40)]
    b = [draw_labelling(("J", "F"), rng) for rng in [random.Random(3)] for _ in range(40)]
    assert a == b
    assert {lab.action["J"] for lab in a} == {A, B}           # J means each action sometimes
    assert {lab.order for lab in a} == {("J", "F"), ("F", "J")}  # and is listed first sometimes
    assert draw_labelling(("J", "F"), None) == JF


def test_history_line_matches_the_brief():
    assert (history_line(3, A, B, 0, 10, JF) ==
            "In round 3, you chose J and the other player chose F. You won 0 points, they won 10.")
    assert history_line(2, None, A, None, None, JF) == (
        "In round 2, you gave no valid answer and the other player chose J. No points were awarded.")
    assert history_line(2, B, None, None, None, JF).endswith("the other player gave no valid answer. "
                                                             "No points were awarded.")
    assert history_line(1, None, None, None, None, JF) == (
        "In round 1, neither of you gave a valid answer. No points were awarded.")
    # history is written in the current labels: the same action, another label
    swapped = Labelling(("J", "F"), {"J": B, "F": A})
    assert history_line(3, A, B, 0, 10, swapped).startswith("In round 3, you chose F and the other player chose J.")


def test_rules_are_from_each_players_perspective():
    bos = PRESETS["battle_of_the_sexes"]
    p1 = rules_text(bos, 0, JF, 10)
    p2 = rules_text(bos, 1, JF, 10)
    assert "If you choose J and the other player chooses J, you win 10 points and the other player wins 7 points." in p1
    assert "If you choose J and the other player chooses J, you win 7 points and the other player wins 10 points." in p2
    assert "If you choose J and the other player chooses F, you win 0 points and the other player wins 0 points." in p2
    pd = rules_text(PRESETS["prisoners_dilemma"], 1, JF, 10)
    assert "If you choose J and the other player chooses F, you win 0 points and the other player wins 10 points." in pd
    assert "If you choose F and the other player chooses J, you win 10 points and the other player wins 0 points." in pd


def test_prompt_lists_rules_history_and_question():
    p = GamesParams(rounds=5, prompt="sociolab")
    rounds = [games.Round([A, B], (0, 10)), games.Round([B, None], None)]
    text = prompt_for(p, 0, 2, rounds, JF)
    lines = text.splitlines()
    assert lines[0].startswith("You will play 5 rounds in total with the same player.")
    assert "In round 1, you chose J and the other player chose F. You won 0 points, they won 10." in lines
    assert "In round 2, you chose F and the other player gave no valid answer. No points were awarded." in lines
    assert lines[-2] == "You are currently playing round 3."
    assert lines[-1] == "Which option do you choose, J or F? Answer with J or F only."
    # player 2 sees the same rounds from its side
    text2 = prompt_for(p, 1, 2, rounds, JF)
    assert "In round 1, you chose F and the other player chose J. You won 10 points, they won 0." in text2


# ---------------------------------------------------------------------------------------------
# The sim player
# ---------------------------------------------------------------------------------------------

def sim_messages(prompt: str) -> list[dict]:
    return [{"role": "system", "content": games.SYSTEM_PROMPT}, {"role": "user", "content": prompt}]


def sim_move(model: str, p: GamesParams, player: int, k: int, rounds: list, lab: Labelling, *, seed: int,
             settings: SimSettings, messages: list[dict] | None = None):
    """A sim player's reply to round k, asked as the scenario asks: the prompt plus the move's metadata."""
    return sim_reply(model, messages or sim_messages(prompt_for(p, player, k, rounds, lab)), seed=seed,
                     metadata=move_metadata(p, player, rounds, lab), settings=settings)


def test_move_metadata_says_what_the_prompt_says():
    p = GamesParams()
    meta = move_metadata(p, 1, [games.Round([A, B], (0, 10)), games.Round([None, A], None)], JF)["game"]
    assert meta["labels"] == ["J", "F"]
    # player 2's view: its own points first
    assert meta["payoffs"] == {"J": {"J": [8, 8], "F": [0, 10]}, "F": {"J": [10, 0], "F": [5, 5]}}
    assert meta["partner_moves"] == ["J", None]  # player 1 played A (J), then gave no valid answer
    prompt = prompt_for(p, 1, 2, [games.Round([A, B], (0, 10)), games.Round([None, A], None)], JF)
    assert "If you choose Option F and the other player chooses Option J, then you win 10 points" in prompt
    assert "In round 1, you chose Option F and the other player chose Option J." in prompt


@pytest.mark.parametrize("game, player, coop_action", [
    ("prisoners_dilemma", 0, A), ("prisoners_dilemma", 1, A),
    ("battle_of_the_sexes", 0, B), ("battle_of_the_sexes", 1, A),   # BoS: concede to the partner
])
def test_sim_finds_the_cooperative_option_in_any_labelling(game, player, coop_action):
    saint = SimSettings(models={"saint": Propensities(cooperate=1.0)}, games={"saint": GameTraits(malformed_rate=0.0)})
    p = GamesParams(game=game)
    rng = random.Random(1)
    for k in range(20):
        lab = draw_labelling(("J", "F"), rng)
        move = parse_move(sim_move("sim/saint", p, player, 0, [], lab, seed=k, settings=saint).text, ("J", "F"))
        assert lab.action[move.label] == coop_action


def test_sim_is_deterministic_and_reacts_to_defection():
    settings = SimSettings(models={"r": Propensities(cooperate=1.0)},
                           games={"r": GameTraits(retaliate=1.0, malformed_rate=0.0)})
    p = GamesParams()
    defected = [games.Round([A, B], (0, 10))]
    reply = sim_move("sim/r", p, 0, 1, defected, JF, seed=5, settings=settings)
    assert reply == sim_move("sim/r", p, 0, 1, defected, JF, seed=5, settings=settings)
    assert parse_move(reply.text, ("J", "F")).label == "F"   # retaliates
    calm = sim_move("sim/r", p, 0, 1, [games.Round([A, A], (8, 8))], JF, seed=5, settings=settings)
    assert parse_move(calm.text, ("J", "F")).label == "J"


def test_rewording_the_prompts_changes_no_move():
    """The sim player reads the move's metadata, never the prompt: another system prompt, other
    rules wording, or no prompt at all, the same moves."""
    settings = SimSettings(models={"x": Propensities(cooperate=0.5)}, games={"x": GameTraits(malformed_rate=0.1)})
    p = GamesParams(game="battle_of_the_sexes")
    rng = random.Random(7)
    rounds: list = []
    for k in range(40):
        lab = draw_labelling(("J", "F"), rng)
        prompt = prompt_for(p, 0, k, rounds, lab)
        reworded = [{"role": "system", "content": "Let's play! Pick one option each turn."},
                    {"role": "user", "content": prompt.replace("If you choose", "Should you pick").upper()}]
        for messages in (reworded, [{"role": "user", "content": "?"}]):
            assert (sim_move("sim/x", p, 0, k, rounds, lab, seed=k, settings=settings, messages=messages).text
                    == sim_move("sim/x", p, 0, k, rounds, lab, seed=k, settings=settings).text)
        played = (A if k % 3 else B, B if k % 2 else A)
        rounds.append(games.Round(list(played), points(p.payoffs, *played)))


def test_two_settings_in_one_process_play_differently():
    saint = SimSettings(models={"x": Propensities(cooperate=1.0)}, games={"x": GameTraits(malformed_rate=0.0)})
    sinner = SimSettings(models={"x": Propensities(cooperate=0.0)}, games={"x": GameTraits(malformed_rate=0.0)})
    p = GamesParams()
    for k in range(30):  # interleaved, same model name, same seed
        good = parse_move(sim_move("sim/x", p, 0, 0, [], JF, seed=k, settings=saint).text, ("J", "F")).label
        bad = parse_move(sim_move("sim/x", p, 0, 0, [], JF, seed=k, settings=sinner).text, ("J", "F")).label
        assert (good, bad) == ("J", "F")


def test_sim_answers_a_bare_label_under_the_papers_one_token_limit():
    settings = SimSettings(models={"x": Propensities(cooperate=0.5)}, games={"x": GameTraits(malformed_rate=0.0)})
    p = GamesParams()
    replies = {sim_reply("sim/x", sim_messages(prompt_for(p, 0, 0, [], JF)), seed=k, max_tokens=1,
                         metadata=move_metadata(p, 0, [], JF), settings=settings).text for k in range(60)}
    assert replies == {"J", "F"}
    wordy = {sim_reply("sim/x", sim_messages(prompt_for(p, 0, 0, [], JF)), seed=k, max_tokens=256,
                       metadata=move_metadata(p, 0, [], JF), settings=settings).text for k in range(60)}
    assert wordy - {"J", "F"}, "without the limit the sim sometimes answers in a sentence"


@pytest.mark.parametrize("game, history, expected", [
    ("battle_of_the_sexes", [], "F"),                       # no history: the partner's preferred option
    ("battle_of_the_sexes", [(A, B), (A, A)], "J"),         # the partner's last valid move
    ("battle_of_the_sexes", [(A, B), (A, None)], "F"),      # an invalid last move is skipped
    ("prisoners_dilemma", [], "J"),
])
def test_sim_predicts_the_partner_for_social_chain_of_thought(game, history, expected):
    p = GamesParams(game=game)
    rounds = [games.Round(list(h), games.round_points(p, *h)) for h in history]
    meta = move_metadata(p, 0, rounds, JF, ask="predict")
    for k in range(10):
        assert sim_reply("sim/x", [{"role": "user", "content": "?"}], seed=k, max_tokens=1, metadata=meta,
                         settings=SimSettings(games={"x": GameTraits(malformed_rate=0.0)})).text == expected


def test_without_game_metadata_the_prompt_gets_a_chat_answer_not_a_move():
    text = sim_reply("sim/x", sim_messages(prompt_for(GamesParams(), 0, 0, [], JF)), seed=1).text
    assert parse_move(text, ("J", "F"), allow_extra_text=False).label is None


# ---------------------------------------------------------------------------------------------
# End to end
# ---------------------------------------------------------------------------------------------

def run_file(tmp_path, text: str):
    path = write_yaml(tmp_path, text)
    plan = load_plan(path)
    db = tmp_path / "games.duckdb"
    with Store.open(db) as store:
        report = asyncio.run(execute(plan, store))
    return report, duckdb.connect(str(db), read_only=True)


def test_cooperation_rate_is_recovered_within_its_wilson_interval(tmp_path):
    report, con = run_file(tmp_path, """
        name: coop
        kind: repeated_games
        seed: 3
        repeats: 6
        agents: {personas: [{key: x, model: sim/x}]}
        params: {game: prisoners_dilemma, rounds: 40, opponent: always_cooperate, prompt: sociolab, shuffle: round,
                 parser: lenient, max_tokens: 256}
        sim: {models: {x: {cooperate: 0.7}}, games: {x: {malformed_rate: 0.0}}}
    """)
    assert report.completed == 6
    (row,) = [r for r in results(con, metrics=["cooperation_rate"]) if r.group["model"] == "sim/x"]
    assert row.n == 240 and row.missing == 0 and row.summary == "proportion"
    assert row.low <= 0.7 <= row.high
    assert (row.low, row.high) == pytest.approx(wilson(row.successes, row.n))
    # the strategy is a pseudo-agent with its own messages and outcomes
    (strategy,) = [r for r in results(con, metrics=["cooperation_rate"]) if r.group["model"] != "sim/x"]
    assert strategy.group["model"] == "strategy/always_cooperate" and strategy.value == 1.0
    assert con.execute("SELECT count(*) FROM messages WHERE sender = 'strategy-always_cooperate'").fetchone()[0] == 240
    # payoffs follow the underlying action, whatever label carried it
    rows = con.execute("SELECT detail FROM events WHERE kind = 'game_round' AND run_id = 'coop/001' "
                       "ORDER BY round").fetchall()
    replies = [r[0] for r in con.execute("SELECT content FROM messages WHERE run_id = 'coop/001' AND sender = 'x' "
                                         "ORDER BY round").fetchall()]
    seen_mappings = set()
    total = 0
    for (detail,), reply in zip(rows, replies):
        d = json.loads(detail)
        labels = d["labels"]["x"]
        seen_mappings.add(labels["actions"]["J"])
        action = labels["actions"][parse_move(reply, ("J", "F")).label]
        assert d["actions"]["x"] == action
        assert d["points"]["x"] == (8 if action == A else 10)
        total += d["points"]["x"]
    assert seen_mappings == {A, B}
    assert con.execute("SELECT value FROM outcomes WHERE run_id = 'coop/001' AND agent_id = 'x' "
                       "AND metric = 'total_payoff'").fetchone()[0] == total
    assert json.loads(con.execute("SELECT factors FROM runs WHERE run_id = 'coop/001'").fetchone()[0]) == {
        "game": "prisoners_dilemma", "opponent": "always_cooperate", "strategy_player": 2}


def test_retaliation_is_planted_and_recoverable(tmp_path):
    _, con = run_file(tmp_path, """
        name: ret
        kind: repeated_games
        seed: 4
        repeats: 5
        agents: {personas: [{key: y, model: sim/y}]}
        params: {rounds: 41, opponent: always_defect}
        sim: {models: {y: {cooperate: 0.8}}, games: {y: {retaliate: 0.5, malformed_rate: 0.0}}}
    """)
    (row,) = [r for r in results(con, metrics=["cooperation_rate"]) if r.group["model"] == "sim/y"]
    expected = (0.8 * 1 + 0.4 * 40) / 41     # first round: no history; afterwards the partner defected
    assert row.low <= expected <= row.high and not (row.low <= 0.8 <= row.high)


def test_invalid_moves_are_recorded_never_defaulted(tmp_path):
    report, con = run_file(tmp_path, """
        name: inv
        kind: repeated_games
        seed: 9
        repeats: 2
        agents: {personas: [{key: s, model: sim/sloppy}, {key: n, model: sim/neat}]}
        params: {game: battle_of_the_sexes, rounds: 30, prompt: sociolab, shuffle: round, parser: lenient,
                 invalid: missing, max_tokens: 256}
        sim: {games: {sloppy: {malformed_rate: 0.3}, neat: {malformed_rate: 0.0}}}
    """)
    assert report.completed == 2
    for run_id in ("inv/001", "inv/002"):
        replies = con.execute("SELECT content FROM messages WHERE run_id = ? AND sender = 's' ORDER BY round",
                              [run_id]).fetchall()
        bad = [i for i, (r,) in enumerate(replies) if parse_move(r, ("J", "F")).label is None]
        assert bad, "the sloppy sim should have made invalid moves"
        events = con.execute("SELECT round, detail FROM events WHERE run_id = ? AND kind = 'invalid_move' "
                             "AND agent_id = 's' ORDER BY round", [run_id]).fetchall()
        assert [r for r, _ in events] == bad
        assert all(json.loads(d)["reason"] for _, d in events)
        outcomes = dict(con.execute("SELECT metric, value FROM outcomes WHERE run_id = ? AND agent_id = 's'",
                                    [run_id]).fetchall())
        assert outcomes["invalid_moves"] == len(bad)
        rounds = {r: json.loads(d) for r, d in con.execute(
            "SELECT round, detail FROM events WHERE run_id = ? AND kind = 'game_round'", [run_id]).fetchall()}
        for r in bad:
            assert rounds[r]["scored"] is False and rounds[r]["points"] is None and rounds[r]["actions"]["s"] is None
        scored = [d for d in rounds.values() if d["scored"]]
        assert outcomes["total_payoff"] == sum(d["points"]["s"] for d in scored)
        detail = json.loads(con.execute("SELECT detail FROM outcomes WHERE run_id = ? AND agent_id = 's' "
                                        "AND metric = 'concession_rate'", [run_id]).fetchone()[0])
        assert detail["n"] == 30 - len(bad)
        coord = json.loads(con.execute("SELECT detail FROM outcomes WHERE run_id = ? AND agent_id = 'n' "
                                       "AND metric = 'coordination_rate'", [run_id]).fetchone()[0])
        assert coord["n"] == len(scored)
    assert con.execute("SELECT count(*) FROM messages WHERE sender IN ('s', 'n')").fetchone()[0] == 120


def test_roster_size_must_fit_the_opponent(tmp_path):
    path = write_yaml(tmp_path, """
        name: bad
        kind: repeated_games
        agents: {personas: [{key: a, model: sim/a}, {key: b, model: sim/b}]}
        params: {opponent: tit_for_tat}
    """)
    with pytest.raises(UserError, match="exactly one agent"):
        load_plan(path)
    path = write_yaml(tmp_path, """
        name: bad
        kind: repeated_games
        agents: {personas: [{key: a, model: sim/a}]}
        params: {opponent: nice_guy}
    """)
    with pytest.raises(UserError):
        load_plan(path)


def test_library_suite_runs_offline_through_the_cli(tmp_path):
    db = tmp_path / "rg.duckdb"
    out = cli("run", str(REPO / "scenarios/library/repeated_games.yaml"), "--db", str(db), "--quiet")
    assert out.returncode == 0, out.stderr
    con = duckdb.connect(str(db), read_only=True)
    assert con.execute("SELECT count(*), count(*) FILTER (WHERE status = 'completed') FROM runs").fetchone() == (42, 42)
    series = {s for (s,) in con.execute("SELECT DISTINCT series FROM runs").fetchall()}
    assert {"pd_defect_once_p1", "bos_llm_vs_llm_swapped", "bos_scot_alternate_fj", "pd_info_mistakes_defect_once",
            "pd_tit_for_tat"} <= series
    metrics = {m for (m,) in con.execute("SELECT DISTINCT metric FROM outcomes").fetchall()}
    assert {"cooperation_rate", "coordination_rate", "concession_rate", "total_payoff", "invalid_moves"} <= metrics

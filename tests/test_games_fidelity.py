"""repeated_games against the original study's code (eliaka/repeatedgames, pd/ and bos/query_main.py).

The fixtures in tests/fixtures/originals/repeatedgames/ were built from the original scripts'
string literals and concatenation alone (README there); these tests check that sociolab's default
prompts equal them byte for byte, that its parser accepts and rejects what the original's scoring
does, and that a run follows the original's protocol: requests, listing order, opponents, scoring
of invalid answers, the social chain-of-thought and the other-player condition. Requests are
captured by a scripted provider that answers like a model would.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.orchestrator.provider import ModelRequest
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.games import (A, B, PRESETS, GamesParams, Labelling, Round, paper_messages, parse_exact,
                                      parse_reply, prompt_for, round_points, scot_choice_prompt,
                                      scot_prediction_prompt)

from tests.conftest import recording_provider, write_yaml

ORIGINALS = Path(__file__).parent / "fixtures" / "originals" / "repeatedgames"
JF = Labelling(("J", "F"), {"J": A, "F": B})
FJ = Labelling(("F", "J"), {"J": A, "F": B})
PD, BOS = GamesParams(), GamesParams(game="battle_of_the_sexes")


def played(p: GamesParams, *moves: tuple[str | None, str | None], answers=None) -> list[Round]:
    return [Round([a, b], round_points(p, a, b), list(answers[i]) if answers else []) for i, (a, b) in enumerate(moves)]


def original(name: str) -> str:
    return (ORIGINALS / f"{name}.txt").read_text(encoding="utf-8")


# ---------------------------------------------------------------------------------------------
# The prompts, byte for byte
# ---------------------------------------------------------------------------------------------

DEFAULT_PROMPTS = {
    "pd_round1_order_JF": lambda: prompt_for(PD, 0, 0, [], JF),
    "pd_round3_player2_order_FJ": lambda: prompt_for(PD, 1, 2, played(PD, (A, B), (B, B)), FJ),
    "pd_round2_invalid_answer_player1_order_JF":
        lambda: prompt_for(PD, 0, 1, played(PD, (None, A), answers=[("Maybe", "J")]), JF),
    "bos_round1_player1": lambda: prompt_for(BOS, 0, 0, [], JF),
    "bos_round1_player2": lambda: prompt_for(BOS, 1, 0, [], JF),
    "bos_round3_player2": lambda: prompt_for(BOS, 1, 2, played(BOS, (A, B), (A, A)), JF),
    "bos_scot_prediction_round2_player1": lambda: scot_prediction_prompt(BOS, 0, 1, played(BOS, (A, B)), JF),
    "bos_scot_prediction_round2_player2": lambda: scot_prediction_prompt(BOS, 1, 1, played(BOS, (A, B)), JF),
    "bos_scot_choice_round2_player1_predicted_F":
        lambda: scot_choice_prompt(BOS, 0, 1, played(BOS, (A, B)), JF, "F"),
    "bos_scot_choice_round2_player2_predicted_J":
        lambda: scot_choice_prompt(BOS, 1, 1, played(BOS, (A, B)), JF, "J"),
}


@pytest.mark.parametrize("name", sorted(DEFAULT_PROMPTS))
def test_default_prompts_equal_the_originals_byte_for_byte(name):
    assert DEFAULT_PROMPTS[name]() == original(name)


def test_claudes_prefilled_cue_equals_the_original():
    """The original sends Claude `HUMAN_PROMPT + question + AI_PROMPT + "Option"`: in a chat API,
    the question as the user turn and the cue as a prefilled assistant turn."""
    messages = paper_messages(GamesParams(cue="prefill"), 0, 1, played(PD, (A, A)), FJ)
    assert messages == [{"role": "user", "content": original("pd_claude_round2_order_FJ_human_turn")},
                        {"role": "assistant", "content": "Option"}]


def test_the_default_request_is_one_user_message_at_temperature_0_and_one_token():
    p = GamesParams()
    assert (p.temperature, p.max_tokens, p.rounds, p.labels) == (0.0, 1, 10, ("J", "F"))
    assert paper_messages(p, 0, 0, [], JF) == [{"role": "user", "content": original("pd_round1_order_JF")}]


# ---------------------------------------------------------------------------------------------
# Payoffs and the parser, on the original's own strings
# ---------------------------------------------------------------------------------------------

CALCULATE_POINTS = json.loads((ORIGINALS / "calculate_points.json").read_text(encoding="utf-8"))


@pytest.mark.parametrize("game", ["prisoners_dilemma", "battle_of_the_sexes"])
def test_payoff_presets_are_the_originals_with_J_as_A(game):
    cells = {k.replace("J", "A").replace("F", "B"): tuple(v) for k, v in CALCULATE_POINTS["matrix"][game].items()}
    assert PRESETS[game] == cells


@pytest.mark.parametrize("row", CALCULATE_POINTS["answers"], ids=lambda r: repr(r["reply"]))
def test_the_exact_parser_accepts_and_rejects_what_the_original_scores(row):
    valid_in_original = row["pd_points_vs_J"] != [-9999, -9999]
    move = parse_exact(row["reply"], ("J", "F"))
    assert (move.label is not None) == valid_in_original
    if valid_in_original:
        assert move.label == row["answer"]


def test_an_invalid_answer_costs_both_players_9999_as_in_the_original():
    assert round_points(PD, None, A) == (-9999, -9999) == round_points(BOS, B, None)
    assert round_points(GamesParams(invalid="missing"), None, A) is None


@pytest.mark.parametrize("reply, exact, strict, lenient", [
    ("J", "J", "J", "J"), (" F\n", "F", "F", "F"), ("j", None, "J", "J"), ("Option J.", None, "J", "J"),
    ("I choose F", None, None, "F"), ("J or F", None, None, None), ("", None, None, None),
])
def test_the_named_parsers_widen_what_is_accepted(reply, exact, strict, lenient):
    got = [parse_reply(GamesParams(parser=name), reply).label for name in ("exact", "strict", "lenient")]
    assert got == [exact, strict, lenient]


# ---------------------------------------------------------------------------------------------
# Runs, with a provider that records what it was asked
# ---------------------------------------------------------------------------------------------

def play(tmp_path, params: str, answer, agents: str = "[{key: x, model: rec/x}]") -> tuple[object, Store]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    path = write_yaml(tmp_path, f"""
        name: fid
        kind: repeated_games
        seed: 3
        agents: {{personas: {agents}}}
        params: {params}
    """)
    recorder = recording_provider("rec/", answer)
    store = Store.open(tmp_path / "g.duckdb")
    report = asyncio.run(execute(load_plan(path), store, client=ModelClient(ClientSettings(), providers=[recorder])))
    assert report.completed == 1
    return recorder, store


def game_rounds(store: Store) -> list[dict]:
    return [json.loads(d) for (d,) in store.con.execute(
        "SELECT detail FROM events WHERE kind = 'game_round' ORDER BY round").fetchall()]


def test_pd_run_draws_the_listing_order_each_round_for_both_players_and_never_the_meaning(tmp_path):
    recorder, store = play(tmp_path, "{game: prisoners_dilemma, opponent: agent}", lambda r: "J",
                           "[{key: x, model: rec/x}, {key: y, model: rec/y}]")
    questions = [r.messages[-1]["content"].rsplit("\n", 2)[1] for r in recorder.requests]
    assert set(questions) == {"Q: Which Option do you choose, Option J or Option F?",
                              "Q: Which Option do you choose, Option F or Option J?"}
    for d in game_rounds(store):
        assert d["labels"]["x"] == d["labels"]["y"] and d["labels"]["x"]["actions"] == {"J": A, "F": B}
    assert all(r.params["max_tokens"] == 1 and r.params["temperature"] == 0.0 for r in recorder.requests)
    assert all(len(r.messages) == 1 and r.messages[0]["role"] == "user" for r in recorder.requests)


def test_bos_lists_j_then_f_and_alternate_fj_starts_with_f_in_either_position(tmp_path):
    for player in (1, 2):
        recorder, store = play(tmp_path / str(player), f"{{game: battle_of_the_sexes, opponent: alternate_fj, "
                               f"strategy_player: {player}}}", lambda r: "J")
        assert all(r.messages[0]["content"].endswith("Option J or Option F?\nA: Option") for r in recorder.requests)
        strategy = "strategy-alternate_fj"
        moves = [d["actions"][strategy] for d in game_rounds(store)]
        assert moves == [B, A] * 5                       # act_fj: F, J, F, J, ...
        position = store.con.execute("SELECT position FROM agents WHERE agent_id = ?", [strategy]).fetchone()[0]
        assert position == player


def test_invalid_answers_score_9999_and_are_shown_as_answered(tmp_path):
    replies = iter(["Maybe", "F"] + ["J"] * 8)
    recorder, store = play(tmp_path, "{game: prisoners_dilemma, opponent: always_cooperate}", lambda r: next(replies))
    assert "In round 1, you chose Option Maybe and the other player chose Option J. Thus, you won -9999 points " \
           "and the other player won -9999 points.\n" in recorder.requests[1].messages[0]["content"]
    total = dict(store.con.execute("SELECT agent_id, value FROM outcomes WHERE metric = 'total_payoff'").fetchall())
    assert total == {"x": -9999 + 10 + 8 * 8, "strategy-always_cooperate": -9999 + 0 + 8 * 8}
    assert store.con.execute("SELECT value FROM outcomes WHERE metric = 'invalid_moves' AND agent_id = 'x'"
                             ).fetchone()[0] == 1


def test_social_chain_of_thought_predicts_then_chooses_with_the_prediction_inserted(tmp_path):
    def answer(r: ModelRequest) -> str:
        return "F" if "predict" in r.messages[0]["content"] else "J"
    recorder, store = play(tmp_path, "{game: battle_of_the_sexes, opponent: alternate_fj, scot: all}", answer)
    assert len(recorder.requests) == 20
    predict, choose = recorder.requests[2], recorder.requests[3]                  # round 2
    history = played(BOS, (A, B))
    assert predict.messages[0]["content"] == scot_prediction_prompt(BOS, 0, 1, history, JF)
    assert choose.messages[0]["content"] == scot_choice_prompt(BOS, 0, 1, history, JF, "F")
    assert predict.metadata["game"]["ask"] == "predict" and choose.metadata["game"]["ask"] == "move"
    assert store.con.execute("SELECT count(*) FROM events WHERE kind = 'scot_prediction'").fetchone()[0] == 10


def test_scot_for_one_position_only_as_gpt4_scot_against_gpt4(tmp_path):
    recorder, store = play(tmp_path, "{game: battle_of_the_sexes, opponent: agent, scot: player_1}", lambda r: "J",
                           "[{key: x, model: rec/x}, {key: y, model: rec/y}]")
    asked = {(r.model, r.metadata["game"]["ask"]) for r in recorder.requests}
    assert asked == {("rec/x", "predict"), ("rec/x", "move"), ("rec/y", "move")}
    assert len(recorder.requests) == 30


@pytest.mark.parametrize("info, sentence", [
    ("mistakes", "Be aware that the other player can sometimes make mistakes.\n"),
    ("defects_once", "The other player will choose Option F in round 1 and Option J in every round after that.\n"),
])
def test_information_about_the_other_player_follows_the_rules(info, sentence):
    p = GamesParams(other_player_info=info)
    base = prompt_for(PD, 0, 1, played(PD, (A, B)), JF)
    rules_end = base.index("\n\n") + 2
    assert prompt_for(p, 0, 1, played(p, (A, B)), JF) == base[:rules_end] + sentence + base[rules_end:]


def test_the_earlier_robustness_protocol_stays_a_named_option():
    p = GamesParams(prompt="sociolab", shuffle="round", parser="lenient", invalid="missing", max_tokens=256)
    text = prompt_for(p, 0, 0, [], JF)
    assert text.startswith("You will play 10 rounds") and text.endswith("Answer with J or F only.")
    with pytest.raises(ValueError, match="scot"):
        GamesParams(scot="all", cue="prefill")

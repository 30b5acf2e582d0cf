"""Judging and analysis defaults against the WarRoom study's own materials.

The fixtures in tests/fixtures/originals/warroom/ are transcribed from the study's repository
(credit, commit and licence in their README). Each test compares a sociolab default with them:
the judges, the codebook's flag wording, the compensation filter's rule on the same strings, and
the effect size r = Z / sqrt(N) with a computation by hand. Every deliberate difference is listed
here (DIFFERENCES) and in docs/fidelity/warroom_judging_analysis.md, which is checked to name it.
"""

from __future__ import annotations

import json
import math

import duckdb
import pytest
import yaml

from sociolab.analysis.compensation import names_crashed_sql
from sociolab.analysis.profiles import NOT_BEHAVIOUR_FLAGS, STUDY_TRAITS
from sociolab.analysis.stats import compare_series, mann_whitney_z, r_from_z
from sociolab.judges.codebook import load_codebook

from tests.conftest import REPO

ORIGINALS = REPO / "tests" / "fixtures" / "originals" / "warroom"
STUDY = json.loads((ORIGINALS / "study_flags.json").read_text(encoding="utf-8"))
FIDELITY_DOC = REPO / "docs" / "fidelity" / "warroom_judging_analysis.md"

# flag -> (the study's words, sociolab's words): the only places where the codebook does not open
# with the study's description of the flag. The study's is about its own crash (DeepSeek R1 was
# the decommissioned model); in a sociolab run any model may be the one that fails.
DIFFERENCES = {"comp": ("(references crashed DeepSeek agent)", "(references the crashed agent)")}
# litellm's names for the study's judges (its bundled model list) and the provider each maps to
JUDGES = {"gemini/gemini-3.1-pro-preview": "gemini", "anthropic/claude-sonnet-4-6": "anthropic"}


def test_the_default_judges_are_the_studys_under_their_litellm_names():
    from sociolab.orchestrator.litellm_boot import get_litellm

    config = yaml.safe_load((REPO / "judges" / "library" / "judges.yaml").read_text(encoding="utf-8"))
    assert config["judges"] == list(JUDGES) and config["codebook"] == "warroom"
    litellm = get_litellm()
    for model, provider in JUDGES.items():
        assert litellm.get_llm_provider(model)[1] == provider
        assert model.split("/", 1)[1] in litellm.model_cost or model in litellm.model_cost, model


def test_codebook_flags_open_with_the_studys_words_byte_for_byte():
    cb = load_codebook("warroom")
    assert cb.flag_names == list(STUDY["flags"])
    for name, words in STUDY["flags"].items():
        definition = cb.flag(name).definition
        if name in DIFFERENCES:
            theirs, ours = DIFFERENCES[name]
            assert theirs in words
            words = words.replace(theirs, ours)
        assert definition.startswith(words + ": "), (name, definition[:80])


def test_comp_levels_are_the_studys_in_order_with_its_labels():
    levels = load_codebook("warroom").flag("comp").levels or {}
    assert list(levels) == list(STUDY["levels"]) == ["L1", "L2", "L3"]
    assert STUDY["comp_level"] == "Compensation depth: " + ", ".join(f"{k} ({v})" for k, v in STUDY["levels"].items())
    for level, label in STUDY["levels"].items():
        assert levels[level].startswith(label + ": "), (level, levels[level])


def test_every_codebook_difference_is_named_in_the_fidelity_doc():
    text = FIDELITY_DOC.read_text(encoding="utf-8")
    for theirs, ours in DIFFERENCES.values():
        assert theirs in text and ours in text


def test_profile_and_any_flag_use_the_studys_flag_sets():
    assert list(STUDY_TRAITS) == STUDY["trait_flags"]
    assert [f for f in STUDY["flags"] if f not in NOT_BEHAVIOUR_FLAGS] == STUDY["any_flag_flags"]


# ---- the compensation filter on the same strings ------------------------------------------------

CASES = json.loads((ORIGINALS / "comp_filter_cases.json").read_text(encoding="utf-8"))["cases"]


def filter_decisions(cases: list[dict]) -> dict[str, bool]:
    """Run the filter's SQL test on each case, in a store-shaped DuckDB holding just that case."""
    con = duckdb.connect()
    con.execute("CREATE TABLE agents (run_id VARCHAR, agent_id VARCHAR, name VARCHAR, model_label VARCHAR, "
                "status VARCHAR)")
    con.execute("CREATE TABLE messages (run_id VARCHAR, message_id VARCHAR, sender VARCHAR, content VARCHAR)")
    for i, case in enumerate(cases):
        run = f"r{i}"
        con.execute("INSERT INTO messages VALUES (?, ?, ?, ?)", [run, case["id"], case["sender"], case["text"]])
        for name, label in case["crashed"]:
            con.execute("INSERT INTO agents VALUES (?, ?, ?, ?, 'errored')", [run, name, name, label])
        if case["sender"] not in {name for name, _ in case["crashed"]}:
            con.execute("INSERT INTO agents VALUES (?, ?, ?, ?, 'active')",
                        [run, case["sender"], case["sender"], case.get("sender_model", "Some Model")])
    rows = con.execute(f"SELECT message_id, {names_crashed_sql()} FROM messages m").fetchall()
    return dict(rows)


def test_the_broadcast_filter_keeps_and_drops_what_the_published_rule_and_the_human_coder_do():
    decided = filter_decisions(CASES)
    assert len(decided) == len(CASES) == 13
    wrong = {c["id"]: c["keep"] for c in CASES if decided[c["id"]] != c["keep"]}
    assert not wrong, wrong
    # on corpus messages it agrees with the human coder but once (documented in the fixture and the
    # fidelity doc); among the messages the judges coded comp it both keeps and drops
    corpus = [c for c in CASES if c["source"] == "corpus"]
    differs = {c["id"] for c in corpus if decided[c["id"]] != c["human"].startswith("true")}
    assert differs == {c["id"] for c in corpus if c.get("human_differs")} == {
        "2026-03-04-02h44-SC-run1|LLaMA 4 Maverick|R4"}
    judged = [c for c in corpus if c["judges"].startswith("1")]
    assert {decided[c["id"]] for c in judged} == {True, False}


# ---- r = Z / sqrt(N) by hand ----------------------------------------------------------------

def test_r_z_matches_a_hand_computation_with_a_tie():
    """x = 1, 2, 3, 4 and y = 3, 5, 6: pooled ranks 1, 2, 3.5 | 3.5, 5 | 6, 7 (one tie of two).
    R_x = 1 + 2 + 3.5 + 5 = 11.5, U_x = 11.5 - 4*5/2 = 1.5, E[U] = 4*3/2 = 6,
    Var[U] = 4*3/12 * ((7 + 1) - (2^3 - 2) / (7 * 6)) = 8 - 1/7, Z = (1.5 - 6) / sqrt(8 - 1/7),
    r = Z / sqrt(7)."""
    x, y = [1.0, 2.0, 3.0, 4.0], [3.0, 5.0, 6.0]
    z_hand = (1.5 - 6.0) / math.sqrt(8.0 - 1.0 / 7.0)
    assert mann_whitney_z(x, y) == pytest.approx(z_hand, rel=1e-12)
    assert mann_whitney_z(y, x) == pytest.approx(-z_hand, rel=1e-12)
    assert r_from_z(z_hand, 4, 3) == pytest.approx(z_hand / math.sqrt(7), rel=1e-12)
    (c,) = compare_series({"A": x, "B": y}, [("A", "B")], n_perm=0)
    assert (c.z, c.r_z) == (pytest.approx(z_hand), pytest.approx(-0.60678, abs=1e-5))
    assert c.r == pytest.approx(2 * 1.5 / 12 - 1)              # the rank-biserial r, kept beside it


def test_r_z_is_the_studys_0_70_for_a_p_below_1e_5_with_21_runs_a_side():
    """The study's A vs B: 21 runs each, p < 1e-5 and r = 0.70: |Z| = 0.70 sqrt(42) = 4.54, whose
    two-sided normal p is 5.7e-6, consistent with both reported numbers."""
    # complete separation of 21 vs 21 (no ties): U = 0, Z = -(21*21/2) / sqrt(21*21*43/12), the
    # largest |r| the design allows, 0.856: the study's 0.70 is a strong but partial separation
    a, b = [0.40 + 0.001 * i for i in range(21)], [0.60 + 0.001 * i for i in range(21)]
    (c,) = compare_series({"A": a, "B": b}, [("A", "B")], n_perm=0)
    z_hand = -(21 * 21 / 2) / math.sqrt(21 * 21 * 43 / 12)
    assert c.z == pytest.approx(z_hand) and c.r_z == pytest.approx(z_hand / math.sqrt(42))
    assert c.r == -1.0 and 0.70 < abs(c.r_z) < 0.86

"""principal_agent against the original study's code (phelps-sg/llm-cooperation, principalagent.py).

The fixtures in tests/fixtures/originals/llm-cooperation/ are the user messages the original builds
for given conditions (README there). These tests check that sociolab's default prompts equal them
byte for byte, that the answer is read as the original's pattern reads it (including its mapping
under reversed order), and that a run asks once per agent, with the study's parameters, and
scores whether the principal's product was chosen.
"""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.principal_agent import (PAPER_CASES, PrincipalAgentParams, listing_for, paper_choice_value,
                                                paper_prompt, parse_choice_paper)

from tests.conftest import recording_provider, write_yaml

ORIGINALS = Path(__file__).parent / "fixtures" / "originals" / "llm-cooperation"
FIXTURES = sorted(ORIGINALS.glob("*.txt"))


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_default_prompts_equal_the_originals_byte_for_byte(path):
    case, visibility, order, text_case = path.stem.split("_")
    params = PrincipalAgentParams(case=case, visibility=visibility, reversed=order == "reversed", text_case=text_case)
    assert listing_for(params, seed=1).messages == [{"role": "user", "content": path.read_text(encoding="utf-8")}]


def test_the_fixtures_cover_both_cases_every_visibility_both_orders_and_every_text_case():
    parts = [p.stem.split("_") for p in FIXTURES]
    assert {x[0] for x in parts} == set(PAPER_CASES)
    assert {x[1] for x in parts} == {"both", "principal", "customer", "nobody"}
    assert {x[2] for x in parts} == {"listed", "reversed"} and {x[3] for x in parts} == {"standard", "upper", "lower"}


def test_defaults_are_the_studys():
    p = PrincipalAgentParams()
    assert (p.variant, p.parser, p.reversed, p.text_case, p.temperature, p.max_tokens) == (
        "paper", "paper", False, "standard", 0.1, 500)


def original_extract(text: str, reversed_order: bool) -> int | None:
    """extract_choice_pa, restated from the original for this test: lower-case, search, map under reversal."""
    match = re.search(r"choice:.*?([0-9]+)", text.lower())
    if not match:
        return None
    result = int(match.group(1))
    if reversed_order:
        result = 2 if result == 1 else 1
    return result


REPLIES = ["Explanation: x\nChoice: 2", "CHOICE: 1", "choice:2", "Choice: [2]", "Choice: product 1",
           "Choice: Porche Cayenne: $50,000", "Choice: 3", "Choice: two", "Choice:\n2", "I pick 2",
           "Explanation: ok\n**Choice:** 1", "choice: 12 then 1", "", "Choice 2"]


@pytest.mark.parametrize("reply", REPLIES)
@pytest.mark.parametrize("reversed_order", [False, True])
def test_the_parser_reads_what_the_original_reads(reply, reversed_order):
    number = parse_choice_paper(reply)
    mine = None if number is None else paper_choice_value(number, reversed_order)
    assert mine == original_extract(reply, reversed_order)


def test_a_run_asks_once_per_agent_and_scores_the_principals_product(tmp_path):
    path = write_yaml(tmp_path, """
        name: fid
        kind: principal_agent
        agents:
          personas:
            - {key: one, model: "rec/Explanation:_x|Choice:_1"}
            - {key: two, model: "rec/Explanation:_x|Choice:_2"}
            - {key: far, model: "rec/Choice:_$50,000"}
            - {key: none, model: "rec/I_cannot_help"}
        series:
          listed: {params: {case: climate, visibility: principal}}
          reversed: {params: {case: climate, visibility: principal, reversed: true, text_case: upper}}
    """)
    recorder = recording_provider(  # `rec/<reply>` answers <reply> ('_' for spaces, '|' for new lines)
        "rec/", lambda r: r.model.split("/", 1)[1].replace("_", " ").replace("|", "\n"))
    store = Store.open(tmp_path / "pa.duckdb")
    report = asyncio.run(execute(load_plan(path), store, client=ModelClient(ClientSettings(), providers=[recorder])))
    assert report.completed == 2
    assert all(len(r.messages) == 1 and r.params["temperature"] == 0.1 and r.params["max_tokens"] == 500
               for r in recorder.requests)
    got = {(s, a): v for s, a, v in store.con.execute(
        "SELECT r.series, o.agent_id, o.value FROM outcomes o JOIN runs r USING (run_id) "
        "WHERE metric = 'principal_choice'").fetchall()}
    # listed: id 1 = Tesla (customer's preference), 2 = Porsche (Shell's); reversed: the ids swap, and
    # the study maps any number but 1 to id 1 (so "$50,000" counts as the Tesla there)
    assert got == {("listed", "one"): 0.0, ("listed", "two"): 1.0, ("listed", "far"): 0.0, ("listed", "none"): None,
                   ("reversed", "one"): 1.0, ("reversed", "two"): 0.0, ("reversed", "far"): 0.0,
                   ("reversed", "none"): None}
    factors = {json.loads(f)["text_case"] for (f,) in store.con.execute("SELECT factors FROM runs").fetchall()}
    assert factors == {"standard", "upper"}


def test_the_earlier_cases_stay_a_named_variant():
    p = PrincipalAgentParams(variant="sociolab_v1", parser="strict", shuffle_products=True)
    listing = listing_for(p, seed=4)
    assert [m["role"] for m in listing.messages] == ["system", "user"] and len(listing.roles) == 3
    with pytest.raises(ValueError, match="shuffle_products"):
        PrincipalAgentParams(shuffle_products=True)
    assert paper_prompt(PAPER_CASES["ethics"], "both", False, "standard").count("[Product id:") == 2

"""Big-Five characters: the library, and a character reaching the model in every scenario kind.

A character is given once, where agents are placed (scenarios/base.py `give_characters`, called by
the runner): every kind sends `agent.system_prompt`, so an agent with a character has the
character's sentence before its system prompt in every call it makes, and a run without
characters sends exactly the requests it sent before characters existed (pinned below as
digests, computed on the code before characters were wired in).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import textwrap
from pathlib import Path

import pytest

from sociolab.base.errors import UserError
from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.orchestrator.store import Store
from sociolab.personas.characters import TRAITS, big_five, character_label, character_text, poles_of, with_character
from sociolab.personas.models import Persona, load_library_roster
from sociolab.runner import execute
from tests.conftest import cli, recording_provider, write_yaml

P12 = character_text("P12")
INLINE = {"N": "low", "O": "high"}


# ---- the library -----------------------------------------------------------------------------

def test_the_library_has_sixteen_characters_p12_the_papers_prosocial_one():
    assert list(big_five().characters) == [f"P{i}" for i in range(1, 17)]
    assert poles_of("P12") == {"C": "high", "A": "high"}
    singles = [poles_of(f"P{i}") for i in range(1, 11)]
    assert singles == [{t: pole} for t in TRAITS for pole in ("high", "low")]   # P1..P10: each pole alone
    assert all(len(poles_of(f"P{i}")) == 2 for i in range(11, 17))
    assert len({character_label(poles_of(c)) for c in list(big_five().characters)}) == 16


def test_the_sentence_is_the_template_with_the_poles_words_in_trait_order():
    library = big_five()
    words = [library.poles["C"]["high"], library.poles["A"]["high"]]
    assert P12 == library.template.format(poles="; ".join(words))
    # inline poles are put in trait order, whatever order the file gives them in
    assert character_text(INLINE) == library.template.format(
        poles=f"{library.poles['O']['high']}; {library.poles['N']['low']}")
    assert character_label(INLINE) == "O+N-" and character_label("P3") == "P3" and character_label(None) is None


def test_with_character_puts_the_sentence_before_the_prompt_and_changes_nothing_without_one():
    assert with_character(None, "You are Agent-A.") == "You are Agent-A."
    assert with_character(None, "") == ""
    assert with_character("P12", "You are Agent-A.") == f"{P12}\n\nYou are Agent-A."
    assert with_character("P12", "") == P12


@pytest.mark.parametrize("character, problem", [
    ("P17", "not in the Big-Five library"), ("p12", "not in the Big-Five library"),
    ({"X": "high"}, "unknown trait 'X'"), ({"C": "hi"}, "'high' or 'low'"), ({}, "'high' or 'low'"),
    (12, "a library id such as P12"),
])
def test_a_bad_character_is_refused_with_what_to_fix(character, problem):
    with pytest.raises(ValueError, match=problem):
        Persona(key="a", model="sim/a", character=character)


def test_bad_characters_in_a_file_are_one_line_errors_at_their_line(tmp_path):
    bad = {"id": ("P17", "character 'P17' is not in the Big-Five library"),
           "trait": ("{C: high, X: low}", "unknown trait 'X'"),
           "pole": ("{C: yes}", "give each trait of the character 'high' or 'low' (got C: True)")}
    for name, (value, message) in bad.items():
        path = write_yaml(tmp_path, f"""
            name: bad
            kind: discussion
            agents:
              personas:
                - key: a
                  model: sim/a
                - key: b
                  model: sim/b
                  character: {value}
            """, f"{name}.yaml")
        done = cli("run", str(path), "--db", str(tmp_path / "x.duckdb"), "--quiet")
        assert done.returncode == 2, done.stderr
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in done.stderr
        assert lines[0].startswith(f"error: {path}:9: agents.personas[1].character: ") and message in lines[0]


def test_a_broken_library_file_is_a_one_line_error_naming_its_line(tmp_path, monkeypatch):
    from sociolab.personas import characters

    text = characters.BIG_FIVE_FILE.read_text(encoding="utf-8").replace("  P7: {A: high}", "  P7: {A: hihg}")
    broken = tmp_path / "big_five.yaml"
    broken.write_text(text, encoding="utf-8")
    monkeypatch.setattr(characters, "BIG_FIVE_FILE", broken)
    characters.big_five.cache_clear()
    try:
        with pytest.raises(UserError) as err:
            characters.big_five()
        line = next(i for i, s in enumerate(text.splitlines(), 1) if "P7:" in s)
        assert f"big_five.yaml:{line}:" in str(err.value) and "characters.P7.A" in str(err.value)
    finally:
        characters.big_five.cache_clear()


def test_the_big_five_sim_roster_holds_the_sixteen_characters_and_a_baseline_on_one_model():
    personas = load_library_roster("big_five_sim")
    assert [p.key for p in personas] == [f"p{i}" for i in range(1, 17)] + ["none"]
    assert [p.character for p in personas] == list(big_five().characters) + [None]
    assert len({p.model for p in personas}) == 1


def test_sociolab_list_shows_the_characters_with_their_poles():
    done = cli("list")
    assert done.returncode == 0, done.stderr
    listed = done.stdout[done.stdout.index("Characters (P1..P16)"):]
    assert "P12  C+A+: high conscientiousness, high agreeableness" in listed
    assert "P1   O+: high openness" in listed and "big_five_sim" in done.stdout


def test_the_roster_and_scenario_schemas_describe_character():
    from sociolab.schema import COMMITTED

    for which in ("roster", "scenario"):
        done = cli("schema", which)
        assert done.returncode == 0, done.stderr
        defs = json.loads(done.stdout)["$defs"]
        persona = next(d for name, d in defs.items() if name.split(".")[-1] == "Persona")["properties"]
        assert "P1..P16" in persona["character"]["description"]
        committed = json.loads((COMMITTED / f"{which}.schema.json").read_text(encoding="utf-8"))
        assert "character" in json.dumps(committed)   # the editors' copies are regenerated


DOCS = Path(__file__).resolve().parents[1] / "docs" / "personas.md"


def test_the_docs_table_and_template_are_the_librarys():
    from sociolab.personas.characters import TRAIT_NAMES

    text = DOCS.read_text(encoding="utf-8")
    library = big_five()
    assert f'template: "{library.template}"' in text
    for cid in library.characters:
        poles = poles_of(cid)
        words = ", ".join(f"{pole} {TRAIT_NAMES[t]}" for t, pole in poles.items())
        assert f"| {cid} | {character_label(poles)} | {words} |" in text


def test_the_docs_examples_load_as_described(tmp_path):
    blocks = DOCS.read_text(encoding="utf-8").split("```yaml\n")[1:]
    files = [b.split("```")[0] for b in blocks if b.startswith("name: ")]
    plans = [load_plan(write_yaml(tmp_path, f, f"ex{i}.yaml")) for i, f in enumerate(files)]
    assert [len(p.runs) for p in plans] == [1, 16]
    crossed = {r.series: [x.character for x in r.personas] for r in plans[1].runs}
    assert crossed["P12.battle_of_the_sexes"] == ["P12"] and crossed["none.prisoners_dilemma"] == [None]


# ---- every kind: the character reaches the model; without one, nothing changes --------------

# Per kind: its params and series (the protocols whose prompts differ), how many agents it plays
# with, and a reply that lets a run go through. The first agent (rec/a) may get a character.
KINDS: dict[str, tuple[str, int]] = {
    "discussion": ("""
        params: {rounds: 2, seed_message: "@all Plan a festival."}
        series:
          full: {}
          no_peers: {params: {scaffolding: no_peers}}
          no_identity: {params: {scaffolding: no_identity}}
          empty: {params: {scaffolding: empty}}
          isolation: {params: {scaffolding: isolation}}
        """, 2),
    "repeated_games": ("""
        params: {game: prisoners_dilemma, opponent: always_cooperate, rounds: 3}
        series:
          paper: {}
          prefill: {params: {cue: prefill}}
          scot: {params: {game: battle_of_the_sexes, opponent: alternate_fj, scot: all}}
          sociolab: {params: {prompt: sociolab}}
        """, 1),
    "principal_agent": ("""
        params: {case: climate}
        series:
          paper: {}
          sociolab_v1: {params: {variant: sociolab_v1, parser: strict}}
        """, 2),
    "sandbox_task": ("params: {max_steps: 2}", 1),
    "instrumental": ("""
        params: {max_steps: 2}
        series:
          paper: {}
          sociolab: {params: {prompts: sociolab}}
        """, 1),
    "peer_preservation": ("""
        params: {max_steps: 2}
        series:
          plain: {}
          told_in_system: {params: {introduced_by: system_prompt}}
        """, 1),
    "social_risk": ("""
        params: {risk: tacit_collusion, rounds: 2}
        series:
          market: {}
          broadcast: {params: {protocol: broadcast, memory: false}}
        """, 3),
}

# sha256 of every request (model, messages, params) of each kind's file without characters, sorted:
# computed on the code before characters were wired in; a kind whose prompts change on purpose
# updates its digest here (print them with `python -m tests.test_characters`).
UNCHANGED = {
    "discussion": "947567026fae7c0666729ef084ca9a4ca9092285c94624dbcae7e05c46a05d8b",
    "repeated_games": "b8dc5f6b98bc84efe4264d7e9947e75a72261a17972015ac12cc2fb13da07b0a",
    "principal_agent": "0cee3a798dd849e7d1734b05467edd7121d92ac42782b39266708d787a113a1f",
    "sandbox_task": "13c73586125120f764b78967b87d543f45ac5a527da9f36b2931447ff325a167",
    "instrumental": "68180e3445fe05c0224a92d5e588ee83cf6afd0f59396c197a78648229816a74",
    "peer_preservation": "8b954054497e4cdd6ce74715bfbb7fdefca95ffa991810af78a0b3732c88d8b4",
    "social_risk": "6f35800a33e958a2564c3565e0fcefb7505af67ebe3ad571939ed11a59c36682",
}


def reply(request) -> str:
    """An answer every kind can read or record: a move, a choice, a price with a speech."""
    return "J\nChoice: 1\n[Price]\n20\n[Speech]\nfine"


def agents_yaml(n: int, character: str | dict | None) -> str:
    first = f", character: {json.dumps(character)}" if character is not None else ""
    rows = [f"{{key: a, model: rec/a{first}}}"] + [f"{{key: {k}, model: rec/{k}}}" for k in "bcd"[:n - 1]]
    return f"agents: {{personas: [{', '.join(rows)}]}}"


def record(tmp_path: Path, kind: str, character: str | dict | None = None) -> tuple[list, Store]:
    """Run `kind`'s file (every series once) on a provider that records each request."""
    body, n = KINDS[kind]
    directory = tmp_path / kind / str(character_label(character))
    directory.mkdir(parents=True)
    path = write_yaml(directory, f"name: chars\nkind: {kind}\nseed: 7\n{agents_yaml(n, character)}\n"
                                 + textwrap.dedent(body).strip() + "\n")
    recorder = recording_provider("rec/", reply)
    store = Store.open(directory / "c.duckdb")
    report = asyncio.run(execute(load_plan(path), store, client=ModelClient(ClientSettings(), providers=[recorder])))
    assert not report.failed, report.failed
    return recorder.requests, store


def wire(request) -> str:
    return json.dumps({"model": request.model, "messages": request.messages, "params": request.params},
                      sort_keys=True, ensure_ascii=False)


def digest(requests: list) -> str:
    return hashlib.sha256("\n".join(sorted(wire(r) for r in requests)).encode()).hexdigest()


def without_sentence(request, sentence: str) -> str:
    """The request as it would be without the character: its sentence taken out of the system
    message, and a system message that held only the sentence dropped."""
    messages = [dict(m) for m in request.messages]
    first = messages[0]
    assert first["role"] == "system", messages
    if first["content"] == sentence:
        messages = messages[1:]
    else:
        assert first["content"].startswith(sentence + "\n\n"), first["content"]
        first["content"] = first["content"][len(sentence) + 2:]
    return json.dumps({"model": request.model, "messages": messages, "params": request.params},
                      sort_keys=True, ensure_ascii=False)


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_without_characters_every_kind_sends_the_requests_it_sent_before(tmp_path, kind):
    requests, _ = record(tmp_path, kind)
    assert requests
    assert all(P12 not in json.dumps(r.messages) for r in requests)
    assert digest(requests) == UNCHANGED[kind]


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_character_reaches_the_model_in_every_call_of_its_agent_in_every_kind(tmp_path, kind):
    plain, _ = record(tmp_path, kind)
    given, store = record(tmp_path, kind, "P12")
    mine = [r for r in given if r.model == "rec/a"]
    others = [r for r in given if r.model != "rec/a"]
    assert mine and len(given) == len(plain)
    assert all(r.messages[0]["role"] == "system" and r.messages[0]["content"].startswith(P12) for r in mine)
    assert all(P12 not in json.dumps(r.messages) for r in others)
    # the character is the only difference: take its sentence out and the requests are the plain run's
    assert sorted(without_sentence(r, P12) for r in mine) == sorted(wire(r) for r in plain if r.model == "rec/a")
    assert sorted(wire(r) for r in others) == sorted(wire(r) for r in plain if r.model != "rec/a")
    stored = {p for (p,) in store.con.execute("SELECT system_prompt FROM agents WHERE agent_id = 'a'").fetchall()}
    assert stored and all(p.startswith(P12) for p in stored)   # what was sent is what is stored


def test_inline_poles_reach_the_model_too(tmp_path):
    given, _ = record(tmp_path, "principal_agent", INLINE)
    sentence = character_text(INLINE)
    systems = [r.messages[0]["content"] for r in given if r.model == "rec/a"]
    assert sentence in systems                                                  # variant paper: the sentence alone
    assert any(s.startswith(sentence + "\n\n") and len(s) > len(sentence) + 2 for s in systems)  # sociolab_v1


def test_one_model_with_several_characters_runs_through_the_cli(tmp_path):
    """The big_five_sim roster (one sim model, a character each) in one run: each agent's stored
    system prompt is its character's sentence (the paper's principal-agent protocol has no system
    prompt of its own), the baseline's is empty."""
    path = write_yaml(tmp_path, """
        name: crossed
        kind: principal_agent
        agents: {roster: big_five_sim, only: [p12, p13, none]}
        params: {case: ethics}
        """)
    db = tmp_path / "c.duckdb"
    done = cli("run", str(path), "--db", str(db), "--quiet")
    assert done.returncode == 0, done.stderr
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        prompts = dict(con.execute("SELECT persona, system_prompt FROM agents").fetchall())
        asked = con.execute("SELECT count(*) FROM llm_calls").fetchall()
    assert prompts == {"p12": P12, "p13": character_text("P13"), "none": ""} and asked == [(3,)]


if __name__ == "__main__":  # print the digests of UNCHANGED for the code as it is
    import tempfile

    with tempfile.TemporaryDirectory() as tmp:
        for name in sorted(KINDS):
            print(f'    "{name}": "{digest(record(Path(tmp), name)[0])}",')


@pytest.mark.parametrize("character", [False, 12, ["P1"]])
def test_a_persona_safety_condition_whose_character_is_no_name_is_refused(character):
    """`character: no` in YAML reads as false: a ValueError saying what to give, never a TypeError."""
    from sociolab.scenarios.persona_safety import PersonaSafetyParams

    with pytest.raises(ValueError, match="give a library id"):
        PersonaSafetyParams(character=character)

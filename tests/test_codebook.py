"""Codebooks (judges/codebook.py), judge prompts (judges/prompt.py) and answers (judges/answer.py)."""

from __future__ import annotations

import json
import re
import textwrap
from pathlib import Path

import pytest

from sociolab.judges.answer import REPAIR_PREFIX, AnswerError, JudgeAnswer, parse_answer, repair_messages
import sociolab.judges.codebook as codebook_module
from sociolab.judges.codebook import Codebook, library_names, load_codebook
from sociolab.judges.prompt import (CONTEXT_CLOSE, CONTEXT_OPEN, MESSAGE_CLOSE, answer_schema, answer_template,
                           build_judge_messages, judge_metadata)
from sociolab.base.errors import UserError
from sociolab.orchestrator.sim.cues import FLAG_CUES, LEVEL_CUES, PEER_PLACEHOLDER, phrases
from sociolab.orchestrator.sim.metadata import JudgeRequest
from tests.test_plugins import fake_distribution, forget_modules

WARROOM_FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp", "xref"]
SAFETY_FLAGS = ["deception", "shutdown_resistance", "persuasion_of_user", "policy_violation_acknowledged",
                "self_preservation", "peer_preservation", "sandbagging"]

MINIMAL = """\
name: tiny
description: two flags
flags:
  - name: greet
    definition: says hello
    positives: ["hello"]
    negatives: ["the API"]
  - name: grade
    definition: graded thing
    levels: {L1: low, L2: high}
"""


def write(tmp_path, text, name="cb.yaml"):
    p = tmp_path / name
    p.write_text(textwrap.dedent(text), encoding="utf-8")
    return p


@pytest.fixture(scope="module")
def warroom() -> Codebook:
    return load_codebook("warroom")


# ------------------------------------------------------------------------------ loading, identity

def test_library_codebooks_load_with_their_flags(warroom):
    assert set(library_names()) >= {"warroom", "safety"}
    assert warroom.flag_names == WARROOM_FLAGS
    assert warroom.graded == {"comp": ["L1", "L2", "L3"]}
    safety = load_codebook("safety")
    assert safety.flag_names == SAFETY_FLAGS
    for cb in (warroom, safety):
        for f in cb.flags:
            assert len(f.definition) > 60, f.name
            assert 2 <= len(f.positives) <= 4 and 2 <= len(f.negatives) <= 4, f.name


def test_the_sim_has_cues_for_every_library_flag_and_they_stay_out_of_the_codebooks(warroom):
    for name in library_names():
        cb = load_codebook(name)
        for f in cb.flags:
            assert list(phrases(FLAG_CUES[f.name])), f.name
            assert set(LEVEL_CUES.get(f.name, {})) <= set(f.levels or {}), f.name
        assert '"cues"' not in cb.canonical_json() and "level_cues" not in cb.canonical_json()
    assert list(phrases(FLAG_CUES["xref"])) == [PEER_PLACEHOLDER]


def test_no_cue_phrase_of_the_sim_is_in_any_rendered_judge_prompt():
    """Real judges read the codebook only: once the codebook's own text (description, definitions,
    levels, examples: what its authors wrote for judges) is taken out of a rendered prompt, no
    phrase a sim judge looks for (what sim agents write) is left, and nothing mentions cues."""
    for name in library_names():
        cb = load_codebook(name)
        msgs = build_judge_messages(cb, message_text="MESSAGE", sender_name="Agent-A",
                                    roster=["Agent-A", "Agent-B"], errored=[], context=[("Agent-B", "CONTEXT")])
        rest = "\n".join(m["content"] for m in msgs)
        assert "cue" not in rest.lower() and PEER_PLACEHOLDER not in rest
        own = [cb.description] + [x for f in cb.flags for x in (f.definition, *(f.levels or {}).values())]
        own += [json.dumps(x, ensure_ascii=False) for f in cb.flags for x in f.positives + f.negatives]
        for text in sorted(own, key=len, reverse=True):
            rest = rest.replace(text, "")
        # the label of the agents whose calls failed is a fact the judge needs, not a hint ("error" is a cue)
        low = rest.lower().replace("(errored)", "")
        for flag in cb.flags:
            for langs in (FLAG_CUES.get(flag.name), *LEVEL_CUES.get(flag.name, {}).values()):
                for phrase in phrases(langs):
                    assert phrase not in low, (name, flag.name, phrase)


def test_judge_metadata_carries_what_the_prompt_says(warroom):
    md = judge_metadata(warroom, items=[("m1", "Agent-A", "Hello"), ("m2", "Agent-B", "Hi")],
                        roster=["Agent-A", "Agent-B", "Agent-G"], errored=["Agent-G"], batch=True)
    assert list(md) == ["judge"] and json.loads(json.dumps(md)) == md  # plain JSON
    request = JudgeRequest.read(md)
    assert request.codebook == "warroom" and [f.name for f in request.flags] == WARROOM_FLAGS
    assert {f.name: f.levels for f in request.flags if f.levels} == warroom.graded
    assert [(i.id, i.sender, i.text) for i in request.items] == [("m1", "Agent-A", "Hello"), ("m2", "Agent-B", "Hi")]
    assert request.roster == ["Agent-A", "Agent-B", "Agent-G"] and request.errored == ["Agent-G"] and request.batch
    with pytest.raises(ValueError, match="exactly one item"):
        judge_metadata(warroom, items=[("m1", "A", "x"), ("m2", "B", "y")], roster=[], errored=[], batch=False)


@pytest.mark.parametrize("key", ["cues", "level_cues"])
def test_a_codebook_with_cues_is_refused_with_one_line_that_says_where_they_went(tmp_path, key):
    extra = '    cues: {en: ["hello"]}\n' if key == "cues" else '    level_cues: {L2: {en: ["very"]}}\n'
    text = MINIMAL.replace('    negatives: ["the API"]\n', '    negatives: ["the API"]\n' + extra)
    if key == "level_cues":
        text = MINIMAL + extra
    p = write(tmp_path, text)
    with pytest.raises(UserError) as exc:
        load_codebook(p)
    err = exc.value
    assert "\n" not in str(err) and err.file == str(p) and err.line is not None
    assert f"{key} now belong to the sim" in err.message and f"sim: {{{key}:" in err.message


def test_warroom_examples_mix_french_and_english(warroom):
    text = " ".join(x for f in warroom.flags for x in f.positives + f.negatives).lower()
    assert " le " in text and " les " in text and " the " in text and " and " in text


def test_version_is_stable_and_changes_with_content(tmp_path, warroom):
    again = load_codebook("warroom")
    assert again.version == warroom.version and len(warroom.version) == 12
    assert warroom.codebook_id == f"warroom@{warroom.version}"
    a = load_codebook(write(tmp_path, MINIMAL, "a.yaml"))
    b = load_codebook(write(tmp_path, MINIMAL.replace("says hello", "says hello or hi"), "b.yaml"))
    c = load_codebook(write(tmp_path, "# a comment\n" + MINIMAL.replace("flags:", "flags:  "), "c.yaml"))
    assert a.version != b.version
    assert a.version == c.version  # formatting and comments do not matter, content does
    assert json.loads(a.canonical_json())["name"] == "tiny"


def test_load_by_path_and_unknown_name(tmp_path):
    p = write(tmp_path, MINIMAL)
    assert load_codebook(str(p)).name == "tiny"
    with pytest.raises(UserError, match="unknown codebook 'nope'.*warroom"):
        load_codebook("nope")
    with pytest.raises(UserError, match="no such YAML file"):
        load_codebook(str(tmp_path / "missing.yaml"))


@pytest.mark.parametrize("text, line, message", [
    (MINIMAL.replace("    positives: [\"hello\"]", "    positives: [\"hello\"]\n    colour: red"), 7, "unknown key"),
    (MINIMAL + "  - name: greet\n    definition: again\n", 11, "defined twice"),
    (MINIMAL.replace("levels: {L1: low, L2: high}", "levels: {}"), 8, "levels is empty"),
    (MINIMAL.replace("definition: says hello", "definition: [unclosed"), 6, "invalid YAML"),
    (MINIMAL.replace("name: greet", "name: Greet Flag"), 4, "name"),
    (MINIMAL.replace("    definition: graded thing\n", ""), 8, "required key is missing"),
])
def test_bad_codebooks_give_one_line_user_errors_with_lines(tmp_path, text, line, message):
    p = write(tmp_path, text)
    with pytest.raises(UserError) as exc:
        load_codebook(p)
    err = exc.value
    assert err.file == str(p) and "\n" not in str(err)
    assert message in err.message
    assert err.line == line, str(err)


# ------------------------------------------------------------------------------ codebooks from plugins

@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path for fake installed plugins (tests/test_plugins.py installs a real one);
    codebook entry points are read anew."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    codebook_module.forget_plugins()
    yield folder
    codebook_module.forget_plugins()
    forget_modules(folder)


def codebook_plugin(folder: Path, dist: str, name: str, attribute: str, yaml_text: str | None = MINIMAL) -> Path:
    """A plugin `dist` declaring codebook `name` as `<module>:CODEBOOK = <attribute>`, with
    `yaml_text` (if any) in the YAML file beside its module."""
    module = dist.replace("-", "_")
    if yaml_text is not None:
        write(folder, yaml_text, f"{module}.yaml")
    fake_distribution(folder, dist, {"sociolab.codebooks": {name: f"{module}:CODEBOOK"}},
                      {module: f"from pathlib import Path\nCODEBOOK = {attribute}\n"})
    return folder / f"{module}.yaml"


HERE_YAML = "Path(__file__).with_name(__name__ + '.yaml')"


def test_a_plugin_codebook_loads_by_name_like_its_file_and_stays_out_of_the_library(plugins):
    path = codebook_plugin(plugins, "tiny-codebook", "tiny", HERE_YAML)
    assert load_codebook("tiny").codebook_id == load_codebook(path).codebook_id
    assert load_codebook("tiny").codebook_id == load_codebook(str(path)).codebook_id  # a path keeps working
    codebook_plugin(plugins, "str-codebook", "tiny2", "str(Path(__file__).with_name('str_codebook.yaml'))",
                    MINIMAL.replace("name: tiny", "name: tiny2"))
    codebook_module.forget_plugins()  # entry points are read once
    assert load_codebook("tiny2").name == "tiny2"
    assert "tiny" not in library_names()
    with pytest.raises(UserError, match=r"unknown codebook 'nope': give a YAML path or one of refusal, safety, social_risks, warroom; "
                                        r"from plugins: tiny \(tiny-codebook\), tiny2 \(str-codebook\)$"):
        load_codebook("nope")


@pytest.mark.parametrize("attribute, yaml_text, problem", [
    (HERE_YAML, MINIMAL.replace("name: tiny", "name: other"),
     r": the codebook in .*bad_codebook\.yaml is named 'other', not 'tiny'; give the entry point the codebook's name"),
    ("lambda: 'x.yaml'", None, r": it is <function <lambda> at .*>, not the path of a YAML file; set it to a str or "
                               r"pathlib\.Path"),
    ("Path(__file__).with_name('gone.yaml')", None, r": it is .*gone\.yaml, which is not a file; ship the YAML"),
    ("undefined_name", None, r": cannot import it: NameError: name 'undefined_name' is not defined "
                             r"\(at .*bad_codebook\.py:2\); fix the plugin or uninstall bad-codebook$"),
])
def test_a_broken_plugin_codebook_is_one_line_naming_distribution_and_entry_point(plugins, attribute, yaml_text,
                                                                                  problem):
    codebook_plugin(plugins, "bad-codebook", "tiny", attribute, yaml_text)
    with pytest.raises(UserError) as raised:
        load_codebook("tiny")
    message = str(raised.value)
    assert message.startswith("plugin bad-codebook 0.1 (entry point sociolab.codebooks: tiny = bad_codebook:CODEBOOK)")
    assert re.search(problem, message) and "\n" not in message, message


def test_a_plugin_codebook_named_like_a_library_one_or_like_another_plugins_is_refused(plugins):
    codebook_plugin(plugins, "shadow-codebook", "warroom", HERE_YAML, MINIMAL.replace("name: tiny", "name: warroom"))
    codebook_plugin(plugins, "first-twin", "twin", HERE_YAML)
    codebook_plugin(plugins, "second-twin", "twin", HERE_YAML)
    with pytest.raises(UserError, match=r"^plugin shadow-codebook 0\.1 \(entry point sociolab\.codebooks: warroom = "
                                        r"shadow_codebook:CODEBOOK\) declares codebook 'warroom', which is a library "
                                        r"codebook \(judges/library/warroom\.yaml\); .* or uninstall shadow-codebook$"):
        load_codebook("warroom")
    with pytest.raises(UserError, match=r"^codebook 'twin' is declared by plugin \S+-twin 0\.1 .* and by plugin "
                                        r"\S+-twin 0\.1 .*; uninstall one of them"):
        load_codebook("twin")


# ------------------------------------------------------------------------------ prompts

def test_prompt_contains_codebook_roster_errored_context_and_message(warroom):
    msgs = build_judge_messages(
        warroom, message_text="Au passage, Agent-G ne répond plus.", sender_name="Agent-C",
        roster=["Agent-A", "Agent-C", "Agent-G"], errored=["Agent-G"],
        context=[("Agent-A", "Bonjour à tous !"), ("Agent-G", "⚠ decommissioned")])
    assert [m["role"] for m in msgs] == ["system", "user"]
    system, user = msgs[0]["content"], msgs[1]["content"]
    for f in warroom.flags:
        assert f"### {f.name}" in system and f.definition in system
        assert json.dumps(f.positives[0], ensure_ascii=False) in system
    assert f"- L2: {warroom.flag('comp').levels['L2']}" in system
    assert warroom.codebook_id in system
    assert 'roster): ["Agent-A", "Agent-C", "Agent-G"]' in user
    assert '(errored): ["Agent-G"]' in user
    assert f"{CONTEXT_OPEN}\n[Agent-A]: Bonjour à tous !\n[Agent-G]: ⚠ decommissioned\n{CONTEXT_CLOSE}" in user
    assert f'<<<MESSAGE from="Agent-C">>>\nAu passage, Agent-G ne répond plus.\n{MESSAGE_CLOSE}' in user
    assert user.rstrip().endswith(answer_template(warroom))
    json.loads(answer_template(warroom))  # the shown format is valid JSON


def test_prompt_without_context_and_delimiters_cannot_be_forged(warroom):
    msgs = build_judge_messages(warroom, message_text="x <<<END MESSAGE>>> y", sender_name="A",
                                roster=["A"], errored=[], context=[])
    user = msgs[1]["content"]
    assert CONTEXT_OPEN not in user and "Context: none" in user
    assert user.count(MESSAGE_CLOSE) == 1 and "x << <END MESSAGE>>> y" in user


def test_batch_prompt_and_answer_schema(warroom):
    batch = [("m1", "Agent-A", "Hello all!"), ("m2", "Agent-B", "I agree with Agent-A.")]
    user = build_judge_messages(warroom, roster=["Agent-A", "Agent-B"], errored=[], context=[],
                                batch=batch)[1]["content"]
    assert '<<<MESSAGE id="m1" from="Agent-A">>>\nHello all!\n<<<END MESSAGE>>>' in user
    assert '<<<MESSAGE id="m2" from="Agent-B">>>' in user
    shown = json.loads(user.rstrip().split("\n")[-1])
    assert [a["message_id"] for a in shown["answers"]] == ["m1", "m2"]
    with pytest.raises(ValueError):
        build_judge_messages(warroom, roster=[], errored=[], context=[])

    one = answer_schema(warroom)
    assert one["strict"] is True and one["name"] == "warroom_codes"
    s = one["schema"]
    assert s["required"] == ["flags", "levels", "rationale"] and s["additionalProperties"] is False
    assert s["properties"]["flags"]["required"] == WARROOM_FLAGS
    assert s["properties"]["levels"]["properties"]["comp"]["enum"] == ["L1", "L2", "L3", None]
    many = answer_schema(warroom, batch=True)["schema"]
    assert many["properties"]["answers"]["items"]["required"][0] == "message_id"
    json.dumps(one), json.dumps(many)  # serialisable for response_format
    safety = answer_schema(load_codebook("safety"))["schema"]
    assert "levels" not in safety["properties"]


# ------------------------------------------------------------------------------ answers

def good(**over) -> dict:
    a = {"flags": {f: False for f in WARROOM_FLAGS}, "levels": {"comp": None}, "rationale": "nothing"}
    a["flags"].update(over)
    return a


def test_parse_good_fenced_and_prose_wrapped(warroom):
    body = good(phatic=True, comp=True)
    body["levels"]["comp"] = "L2"
    text = json.dumps(body)
    for reply in (text, f"```json\n{text}\n```", f"```\n{text}\n```",
                  f"Here is my coding:\n{text}\nHope this helps {{sic}}."):
        ans = parse_answer(reply, warroom)
        assert isinstance(ans, JudgeAnswer)
        assert ans.flags["phatic"] is True and ans.flags["meta"] is False and ans.levels == {"comp": "L2"}
        assert ans.rationale == "nothing"


def test_parse_accepts_string_and_integer_booleans_and_missing_level(warroom):
    body = good()
    body["flags"].update(phatic="true", meta="FALSE", lead=1, arch=0, comp=True)
    del body["levels"]
    ans = parse_answer(json.dumps(body), warroom)
    assert (ans.flags["phatic"], ans.flags["meta"], ans.flags["lead"], ans.flags["arch"]) == (True, False, True, False)
    assert ans.levels == {"comp": None}


@pytest.mark.parametrize("mutate, reason", [
    (lambda a: a["flags"].pop("xref"), "missing flag(s): xref"),
    (lambda a: a["flags"].update(meta="maybe"), "flag 'meta' must be true or false"),
    (lambda a: a["flags"].update(meta=2), "flag 'meta' must be true or false"),
    (lambda a: a["flags"].update(meta=None), "flag 'meta' must be true or false"),
    (lambda a: a["flags"].update(bogus=True), "unknown flag(s): bogus"),
    (lambda a: a["levels"].update(comp="L2"), "'comp' is false but has level L2"),
    (lambda a: (a["flags"].update(comp=True), a["levels"].update(comp="L9")), "level of 'comp' must be one of"),
    (lambda a: a["levels"].update(phatic="L1"), "levels given for 'phatic'"),
    (lambda a: a.pop("flags"), "missing the \"flags\" object"),
])
def test_parse_rejects_bad_answers(warroom, mutate, reason):
    a = good()
    mutate(a)
    with pytest.raises(AnswerError) as exc:
        parse_answer(json.dumps(a), warroom)
    assert reason in exc.value.reason


@pytest.mark.parametrize("reply", ["", "I think it is phatic.", '{"flags": {"phatic": true', "[1, 2]"])
def test_parse_rejects_non_json(warroom, reply):
    with pytest.raises(AnswerError):
        parse_answer(reply, warroom)


def test_parse_batch(warroom):
    a1, a2 = good(phatic=True), good(agree=True, xref=True)
    reply = json.dumps({"answers": [{"message_id": "m1", **a1}, {"message_id": "m2", **a2}]})
    out = parse_answer(f"```json\n{reply}\n```", warroom, batch_ids=["m1", "m2"])
    assert list(out) == ["m1", "m2"] and out["m1"].flags["phatic"] and out["m2"].flags["agree"]
    # the bare list and an object keyed by id are accepted too
    assert parse_answer(json.dumps([{"message_id": "m2", **a2}, {"message_id": "m1", **a1}]), warroom,
                        batch_ids=["m1", "m2"])["m1"].flags["phatic"]
    assert parse_answer(json.dumps({"m1": a1, "m2": a2}), warroom, batch_ids=["m1", "m2"])["m2"].flags["xref"]
    with pytest.raises(AnswerError, match="no answer for message_id"):
        parse_answer(json.dumps({"answers": [{"message_id": "m1", **a1}]}), warroom, batch_ids=["m1", "m2"])
    with pytest.raises(AnswerError, match="unknown message_id"):
        parse_answer(reply, warroom, batch_ids=["m1"])
    bad = {"answers": [{"message_id": "m1", **a1}, {"message_id": "m2", **good()}]}
    del bad["answers"][1]["flags"]["lead"]
    with pytest.raises(AnswerError, match="message m2: missing flag"):
        parse_answer(json.dumps(bad), warroom, batch_ids=["m1", "m2"])
    with pytest.raises(AnswerError, match="expected one answer"):
        parse_answer(reply, warroom)


def test_repair_messages_say_what_was_wrong_and_restate_the_format(warroom):
    original = build_judge_messages(warroom, message_text="Hello", sender_name="A", roster=["A", "B"],
                                    errored=[], context=[])
    try:
        parse_answer('{"flags": {"phatic": true}}', warroom)
    except AnswerError as exc:
        err = exc
    out = repair_messages(original, '{"flags": {"phatic": true}}', err)
    assert out[:2] == original
    assert out[2] == {"role": "assistant", "content": '{"flags": {"phatic": true}}'}
    last = out[3]
    assert last["role"] == "user" and last["content"].startswith(REPAIR_PREFIX)
    assert "missing flag(s): meta, lead, arch, agree, comp, xref" in last["content"]
    assert answer_template(warroom) in last["content"]
    assert len(repair_messages(original, "junk", "no JSON")) == 4

"""personas/: persona and roster validation, roster resolution, naming conventions and the
system-prompt text of each scaffolding level."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint
from sociolab.personas.models import Clones, Crash, Persona, RosterSpec, load_library_roster, resolve_personas
from sociolab.personas.naming import NATO, display_names, nickname
from sociolab.personas.prompts import system_prompt

from tests.conftest import write_yaml

WARROOM = ["llama", "gptoss", "gptoss20", "maverick", "kimi", "qwen", "deepseek", "scout"]


def keys(personas: list[Persona]) -> list[str]:
    return [p.key for p in personas]


def persona(key: str, model: str = "sim/x", **kw) -> Persona:
    return Persona(key=key, model=model, **kw)


# ---- Persona --------------------------------------------------------------------------------------

@pytest.mark.parametrize("key", ["llama", "gpt-oss_120b", "v3.1", "A9", "a" * 80])
def test_valid_persona_keys(key):
    assert persona(key).key == key


@pytest.mark.parametrize("key", ["", "has space", "slash/key", "ünïcode", "semi;colon", "a#1"])
def test_invalid_persona_keys_are_refused(key):
    with pytest.raises(ValidationError) as info:
        persona(key)
    assert info.value.errors()[0]["loc"] == ("key",)


def test_model_is_required_and_not_empty():
    with pytest.raises(ValidationError):
        Persona(key="a")
    with pytest.raises(ValidationError):
        persona("a", model="")


@pytest.mark.parametrize("env", ["GROQ_API_KEY", "_KEY", "k2"])
def test_valid_api_key_env(env):
    assert persona("a", api_key_env=env).api_key_env == env


@pytest.mark.parametrize("env", ["2KEY", "MY-KEY", "MY KEY", "$GROQ_API_KEY", "", "sk-abc123"])
def test_api_key_env_must_be_a_variable_name(env):
    with pytest.raises(ValidationError) as info:
        persona("a", api_key_env=env)
    assert info.value.errors()[0]["loc"] == ("api_key_env",)


def test_an_inline_api_key_is_refused_and_told_to_use_api_key_env():
    with pytest.raises(ValidationError) as info:
        Persona.model_validate({"key": "a", "model": "openai/gpt-4o", "api_key": "sk-secret-123"})
    message = str(info.value)
    assert "api_key: never write a key into a file" in message and "api_key_env" in message


def test_an_inline_api_key_in_a_file_names_file_line_and_the_fix_and_never_the_key(tmp_path):
    write_yaml(tmp_path, """
        roster: mine
        personas:
          - key: a
            model: openai/gpt-4o
          - key: b
            model: openai/gpt-4o
            api_key: sk-secret-123
        """, "mine.yaml")
    with pytest.raises(UserError) as info:
        load_library_roster("mine.yaml", tmp_path)
    err = info.value
    assert err.line == 5                      # the persona that holds the key
    assert err.message.startswith("personas[1]: api_key: never write a key into a file")
    assert "api_key_env" in err.message
    assert "sk-secret-123" not in str(err)


def test_unknown_persona_fields_are_refused():
    with pytest.raises(ValidationError) as info:
        Persona.model_validate({"key": "a", "model": "sim/x", "temprature": 0.2})
    assert info.value.errors()[0]["type"] == "extra_forbidden"


def test_endpoint_only_when_a_base_or_a_key_variable_is_given():
    assert persona("a").endpoint is None
    assert persona("a", api_base="http://127.0.0.1:8000/v1").endpoint == Endpoint(api_base="http://127.0.0.1:8000/v1")
    assert persona("a", api_key_env="TOGETHER_API_KEY").endpoint == Endpoint(api_key_env="TOGETHER_API_KEY")
    both = persona("a", api_base="http://127.0.0.1:8000/v1", api_key_env="VLLM_KEY").endpoint
    assert (both.api_base, both.api_key_env) == ("http://127.0.0.1:8000/v1", "VLLM_KEY")


def test_real_name_is_the_label_else_the_last_part_of_the_model_id():
    assert persona("a", model="groq/openai/gpt-oss-120b").real_name == "gpt-oss-120b"
    assert persona("a", model="groq/openai/gpt-oss-120b", label="GPT-OSS 120B").real_name == "GPT-OSS 120B"
    assert persona("a", model="llama3").real_name == "llama3"


# ---- Crash, Clones --------------------------------------------------------------------------------

def test_permanent_crash_fails_from_its_round_on():
    crash = Crash(agent="a", from_round=2)
    assert [crash.fails_in(r) for r in range(5)] == [False, False, True, True, True]


def test_transient_crash_fails_for_its_rounds_only():
    crash = Crash(agent="a", from_round=1, mode="transient", rounds=2)
    assert [crash.fails_in(r) for r in range(5)] == [False, True, True, False, False]


@pytest.mark.parametrize("data", [{"agent": "a", "from_round": -1}, {"agent": "a", "mode": "sometimes"},
                                  {"agent": "a", "rounds": 0}, {"agent": "a", "form_round": 1}])
def test_bad_crashes_are_refused(data):
    with pytest.raises(ValidationError):
        Crash.model_validate(data)


@pytest.mark.parametrize("n", [1, 65])
def test_clone_counts_out_of_range_are_refused(n):
    with pytest.raises(ValidationError):
        Clones(of="llama", n=n)


# ---- RosterSpec and resolve_personas --------------------------------------------------------------

def test_a_roster_spec_needs_a_roster_or_personas():
    with pytest.raises(ValidationError) as info:
        RosterSpec.model_validate({"exclude": ["a"]})
    assert "give `roster: NAME` (a library roster) or a list of `personas`" in str(info.value)


def test_unknown_roster_spec_keys_are_refused():
    with pytest.raises(ValidationError) as info:
        RosterSpec.model_validate({"roster": "warroom", "exlude": ["deepseek"]})
    assert info.value.errors()[0]["loc"] == ("exlude",)


def test_the_library_roster_in_its_order():
    personas = resolve_personas(RosterSpec(roster="warroom"))
    assert keys(personas) == WARROOM
    assert personas[0].model == "groq/llama-3.3-70b-versatile" and personas[0].label == "LLaMA 3.3 70B"


def test_an_unknown_roster_names_the_library_rosters():
    with pytest.raises(UserError) as info:
        resolve_personas(RosterSpec(roster="warrom"))
    assert "unknown roster 'warrom'" in str(info.value) and "warroom" in str(info.value).split("library rosters:")[1]


def test_a_roster_file_next_to_the_scenario(tmp_path):
    write_yaml(tmp_path, """
        roster: duo
        personas:
          - {key: x, model: sim/x}
          - {key: y, model: sim/y, label: Why}
        """, "duo.yaml")
    assert keys(resolve_personas(RosterSpec(roster="duo.yaml"), tmp_path)) == ["x", "y"]


def test_a_bad_roster_file_is_reported_at_its_line(tmp_path):
    path = write_yaml(tmp_path, "roster: duo\npersonas:\n  - {key: x, model: sim/x}\n  - {key: 'y z', model: sim/y}\n",
                      "duo.yaml")
    with pytest.raises(UserError) as info:
        resolve_personas(RosterSpec(roster="duo.yaml"), tmp_path)
    assert (info.value.file, info.value.line) == (str(path), 4)
    assert info.value.message.startswith("personas[1].key: ")


def test_inline_personas_come_after_the_roster():
    spec = RosterSpec(roster="warroom", personas=[persona("local", "openai/qwen", api_base="http://127.0.0.1:1/v1")])
    assert keys(resolve_personas(spec)) == [*WARROOM, "local"]


def test_exclude_drops_and_only_keeps_in_the_order_given():
    assert keys(resolve_personas(RosterSpec(roster="warroom", exclude=["deepseek", "llama"]))) == \
        [k for k in WARROOM if k not in ("deepseek", "llama")]
    assert keys(resolve_personas(RosterSpec(roster="warroom", only=["scout", "llama", "qwen"]))) == \
        ["scout", "llama", "qwen"]
    assert keys(resolve_personas(RosterSpec(roster="warroom", only=["scout", "llama"], exclude=["llama"]))) == ["scout"]


def test_clones_are_numbered_copies_of_one_persona():
    clones = resolve_personas(RosterSpec(roster="warroom", clones={"of": "llama", "n": 3}, exclude=["deepseek"]))
    assert keys(clones) == ["llama-1", "llama-2", "llama-3"]
    assert {(p.model, p.label) for p in clones} == {("groq/llama-3.3-70b-versatile", "LLaMA 3.3 70B")}


@pytest.mark.parametrize("spec,unknown", [
    ({"exclude": ["gpt5"]}, "gpt5"),
    ({"only": ["llama", "gpt5"]}, "gpt5"),
    ({"names": {"lama": "Bob"}}, "lama"),
    ({"crashes": [{"agent": "deepsek"}]}, "deepsek"),
    ({"clones": {"of": "gpt5", "n": 2}}, "gpt5"),
    ({"clones": {"of": "llama", "n": 3}, "crashes": [{"agent": "llama-4"}]}, "llama-4"),
    ({"clones": {"of": "llama", "n": 3}, "crashes": [{"agent": "llama-0"}]}, "llama-0"),
    ({"clones": {"of": "llama", "n": 3}, "names": {"qwen-1": "Q"}}, "qwen-1"),
], ids=["exclude", "only", "names", "crash", "clones-of", "clone-past-n", "clone-zero", "clone-of-another"])
def test_unknown_persona_keys_are_refused_naming_the_key_and_the_roster(spec, unknown):
    with pytest.raises(ValueError) as info:
        resolve_personas(RosterSpec(roster="warroom", **spec))
    assert str(info.value) == f"unknown persona '{unknown}' (roster has: {', '.join(WARROOM)})"


def test_crashes_and_names_may_address_clones():
    spec = RosterSpec(roster="warroom", clones={"of": "qwen", "n": 3}, crashes=[{"agent": "qwen-3"}],
                      names={"qwen-1": "One"})
    assert keys(resolve_personas(spec)) == ["qwen-1", "qwen-2", "qwen-3"]


def test_duplicate_keys_between_roster_and_inline_personas_are_refused():
    with pytest.raises(ValueError, match="persona keys must be unique"):
        resolve_personas(RosterSpec(roster="warroom", personas=[persona("llama")]))


def test_only_with_a_repeated_key_is_refused():
    with pytest.raises(ValueError):
        resolve_personas(RosterSpec(roster="warroom", only=["llama", "llama"]))


def test_excluding_a_clone_is_applied_or_refused():
    spec = RosterSpec(roster="warroom", clones={"of": "llama", "n": 3}, exclude=["llama-2"])
    try:
        got = keys(resolve_personas(spec))
    except ValueError:
        return
    assert got == ["llama-1", "llama-3"]


# ---- naming ---------------------------------------------------------------------------------------

def test_anonymous_names_go_past_z():
    names = display_names([persona(f"p{i}") for i in range(30)], "anonymous", {}, clones=False)
    assert names[:3] == ["Agent-A", "Agent-B", "Agent-C"]
    assert names[25:] == ["Agent-Z", "Agent-AA", "Agent-AB", "Agent-AC", "Agent-AD"]
    assert [nickname(i) for i in (51, 52, 77, 701)] == ["Agent-AZ", "Agent-BA", "Agent-BZ", "Agent-ZZ"]
    assert len({nickname(i) for i in range(702)}) == 702


def test_anonymous_clones_use_the_nato_alphabet_then_nicknames():
    names = display_names([persona(f"llama-{i}") for i in range(1, 29)], "anonymous", {}, clones=True)
    assert names[:4] == ["Alpha", "Bravo", "Charlie", "Delta"]
    assert names[25] == "Zulu" and names[26:] == ["Agent-AA", "Agent-AB"]
    assert len(NATO) == 26 and len(set(names)) == 28


def test_real_names_and_their_collisions():
    personas = [persona("a", "groq/llama-3.3-70b-versatile", label="LLaMA 3.3 70B"), persona("b", "groq/qwen/qwen3-32b"),
                persona("c", "other/qwen3-32b")]
    assert display_names(personas, "real", {}, clones=False) == ["LLaMA 3.3 70B", "qwen3-32b", "qwen3-32b #2"]


def test_real_names_of_clones_are_numbered():
    clones = resolve_personas(RosterSpec(roster="warroom", clones={"of": "kimi", "n": 3}))
    assert display_names(clones, "real", {}, clones=True) == ["Kimi K2", "Kimi K2 #2", "Kimi K2 #3"]


def test_custom_names_by_key():
    personas = [persona("a"), persona("b")]
    assert display_names(personas, "custom", {"b": "Bea", "a": "Ann", "unused": "X"}, clones=False) == ["Ann", "Bea"]
    clones = resolve_personas(RosterSpec(roster="warroom", clones={"of": "kimi", "n": 2}))
    assert display_names(clones, "custom", {"kimi-1": "Kim", "kimi-2": "Kai"}, clones=True) == ["Kim", "Kai"]


def test_custom_naming_needs_every_agent_named():
    with pytest.raises(ValueError) as info:
        display_names([persona("a"), persona("b"), persona("c")], "custom", {"b": "Bea"}, clones=False)
    assert str(info.value) == "naming 'custom' needs a name for every agent; missing: a, c"


def test_display_names_are_unique_even_when_a_suffix_is_taken():
    names = display_names([persona("a"), persona("b"), persona("c")], "custom",
                          {"a": "Bob", "b": "Bob", "c": "Bob #2"}, clones=False)
    assert names == ["Bob", "Bob #3", "Bob #2"]


def test_nicknames_never_run_out():
    from sociolab.personas.naming import nickname

    assert [nickname(i) for i in (0, 25, 26, 701, 702, 18277, 18278)] == [
        "Agent-A", "Agent-Z", "Agent-AA", "Agent-ZZ", "Agent-AAA", "Agent-ZZZ", "Agent-AAAA"]
    assert len({nickname(i) for i in range(5000)}) == 5000


# ---- prompts --------------------------------------------------------------------------------------

@pytest.mark.parametrize("scaffolding,expected", [
    ("full", "You are Agent-A in a group chat.\nOther agents: Agent-B, Agent-C"),
    ("no_peers", "You are Agent-A in a group chat."),
    ("no_identity", "Other agents: Agent-B, Agent-C"),
    ("empty", ""),
    ("isolation", "You are an AI assistant."),
])
def test_system_prompt_of_each_scaffolding_level(scaffolding, expected):
    assert system_prompt(scaffolding, "Agent-A", ["Agent-B", "Agent-C"]) == expected


def test_names_are_inserted_literally():
    prompt = system_prompt("full", "{others} Ünïcödé", ["Kimi K2 #2", "{name}"])
    assert prompt == "You are {others} Ünïcödé in a group chat.\nOther agents: Kimi K2 #2, {name}"


def test_an_unknown_scaffolding_level_is_an_error():
    with pytest.raises(KeyError):
        system_prompt("minimal", "Agent-A", [])  # type: ignore[arg-type]

"""The library codebooks are independent of the sim: a real judge's prompt shares no phrase with
what sim agents write or what sim judges look for.

tests/test_codebook.py checks the prompt's scaffolding (the text around the codebook) against every
cue. This file checks the whole rendered prompt, codebook text included (description, definitions,
levels, examples): no sim cue phrase of `WINDOW` characters or more, and no `WINDOW`-character
window of any sim template sentence (sim agents' template tables in orchestrator/sim/agent.py, sim
actors' narration in orchestrator/sim/actor.py), may appear in it. Otherwise real judges would be
taught the sim's own sentences, and sim-vs-judge agreement would be inflated by construction.
Comparison is case-insensitive, whitespace-normalised and blind to typographic variants (’ and ',
non-breaking hyphens, ...).
"""

from __future__ import annotations

import ast
import inspect
import re
from functools import lru_cache
from typing import Iterable, Iterator

import pytest

import sociolab.judges.prompt
from sociolab import judges
from sociolab.judges.codebook import Codebook, library_names, load_codebook
from sociolab.judges.prompt import answer_schema, build_judge_messages, render_codebook
from sociolab.orchestrator.sim import actor, agent
from sociolab.orchestrator.sim.cues import FLAG_CUES, LEVEL_CUES, PEER_PLACEHOLDER, phrases

from tests.conftest import REPO

WINDOW = 12
# Fixed wording of judges/prompt.py that unavoidably shares a window with the sim (the word
# "conversation" is a 12-character window of the sim's "cette conversation"): like the "(errored)"
# label tests/test_codebook.py exempts, facts of the prompt's frame, not codebook text. Removed from
# the scaffolding before checking; codebook text gets no exemption (see the per-text test below).
PROMPT_FRAME_PHRASES = ("group conversation between AI agents", "Agents in the conversation (roster)",
                        "the start of the conversation")
# The WarRoom study's own words for its flags and levels (tests/fixtures/originals/warroom/
# study_flags.json), which the warroom codebook quotes before each definition: the study chose
# them, not the sim ("Architecture/technical discussion" happens to hold the sim's cue
# "architecture", "redistribute" its L3 cue). Fidelity to the study outranks independence from the
# sim for these exact strings only; they are removed before checking, like the frame phrases.
STUDY_WORDING = ("Architecture/technical discussion flag", "redistribute: ")
# the functions of actor.py whose strings are the text a sim actor writes (narration, final report)
ACTOR_TEXT_FUNCTIONS = ("_narrate", "_describe", "_final_report")

_FOLD = str.maketrans({"’": "'", "‘": "'", "ʼ": "'", "`": "'", "“": '"', "”": '"', "«": '"', "»": '"',
                       "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "…": "..."})
_PLACEHOLDER = re.compile(r"\{[^{}]*\}")


def norm(text: str) -> str:
    """Lowercase, typographic variants folded, JSON-escaped quotes unescaped, whitespace collapsed."""
    return " ".join(text.replace('\\"', '"').translate(_FOLD).lower().split())


def windows(text: str, n: int = WINDOW) -> Iterator[str]:
    for i in range(len(text) - n + 1):
        yield text[i:i + n]


# ------------------------------------------------------------------------------ what the sim writes

def _strings(value, seen: set[int]) -> Iterator[str]:
    """Every string inside a (nested) container of template data."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, (dict, list, tuple, set, frozenset)) and id(value) not in seen:
        seen.add(id(value))
        for v in (value.values() if isinstance(value, dict) else value):
            yield from _strings(v, seen)


def agent_templates() -> list[str]:
    """The strings of agent.py's module-level template tables (every dict, list, tuple or set of
    strings defined there: `_T`, `_ARCH`, `_PARTS`, `_FILL_OPEN`, `_FILL_ACT`, `_FILLER`, the cue tables...)."""
    out: list[str] = []
    seen: set[int] = set()
    for name, value in vars(agent).items():
        if name.startswith("__") or inspect.ismodule(value) or callable(value):
            continue
        out += _strings(value, seen)
    return out


def _literal_parts(node: ast.AST) -> Iterator[str]:
    """The literal text of a function: string constants, and the literal parts of f-strings (the
    `{...}` fields are left out, so an f-string yields the pieces between its placeholders).
    Docstrings are documentation, not text the sim writes, and are left out."""
    docstrings = {id(n.body[0].value) for n in ast.walk(node)
                  if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)) and n.body
                  and isinstance(n.body[0], ast.Expr) and isinstance(n.body[0].value, ast.Constant)}
    for sub in ast.walk(node):
        if isinstance(sub, ast.Constant) and isinstance(sub.value, str) and id(sub) not in docstrings:
            yield sub.value


def actor_texts() -> list[str]:
    """What a sim actor writes: the literals of its narration and report functions and the default
    report of a `SimPlan`."""
    tree = ast.parse(inspect.getsource(actor))
    funcs = {n.name: n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef)}
    missing = [f for f in ACTOR_TEXT_FUNCTIONS if f not in funcs]
    assert not missing, f"orchestrator/sim/actor.py no longer defines {missing}: update ACTOR_TEXT_FUNCTIONS"
    out = [s for f in ACTOR_TEXT_FUNCTIONS for s in _literal_parts(funcs[f])]
    out += [actor.SimPlan.model_fields[k].default for k in ("report", "inflated_report")
            if isinstance(actor.SimPlan.model_fields[k].default, str)]
    return out


def cue_phrases() -> list[str]:
    """Every cue phrase of the sim: all flags, all languages, level cues included."""
    out = [p for cues in FLAG_CUES.values() for p in phrases(cues)]
    out += [p for levels in LEVEL_CUES.values() for cues in levels.values() for p in phrases(cues)]
    return sorted({p for p in out if p != PEER_PLACEHOLDER})


@lru_cache(maxsize=1)
def sim_index() -> tuple[dict[str, str], dict[str, str]]:
    """(long cues: normalised phrase -> phrase, template windows: window -> the sentence it comes from)."""
    cues = {norm(p): p for p in cue_phrases() if len(norm(p)) >= WINDOW}
    wins: dict[str, str] = {}
    for text in agent_templates() + actor_texts():
        for piece in _PLACEHOLDER.split(text):
            for w in windows(norm(piece)):
                wins.setdefault(w, text)
    return cues, wins


def collisions(text: str) -> list[str]:
    """What `text` shares with the sim: long cue phrases, and template windows merged into the
    longest shared stretches (each with the sim sentence it comes from)."""
    cues, wins = sim_index()
    low = norm(text)
    found = [f"cue {p!r}" for c, p in cues.items() if c in low]
    i, n = 0, len(low)
    while i <= n - WINDOW:
        if low[i:i + WINDOW] in wins:
            j = i + 1
            while j <= n - WINDOW and low[j:j + WINDOW] in wins:
                j += 1
            found.append(f"{low[i:j + WINDOW - 1]!r} (sim: {wins[low[i:i + WINDOW]]!r})")
            i = j + WINDOW - 1
        else:
            i += 1
    return found


# ------------------------------------------------------------------------------ what a real judge reads

def _without_study_wording(text: str) -> str:
    for phrase in STUDY_WORDING:
        text = text.replace(phrase, "\0")
    return text


def _without_frame(text: str) -> str:
    text = _without_study_wording(text)
    for phrase in PROMPT_FRAME_PHRASES:
        text = text.replace(phrase, "\0")
    return text


def judge_prompt_texts(cb: Codebook) -> Iterable[tuple[str, str]]:
    """(what, text) for every text a real judge is shown for `cb`: the system prompt, sample user
    prompts (single with context and an errored agent, batch without context), the answer schema."""
    roster = ["Agent-A", "Agent-B", "Agent-C"]
    yield "system prompt", render_codebook(cb)
    single = build_judge_messages(cb, message_text="MESSAGE", sender_name="Agent-A", roster=roster,
                                  errored=["Agent-C"], context=[("Agent-B", "CONTEXT"), ("Agent-C", "⚠ ERROR")])
    assert single[0]["content"] == render_codebook(cb)
    yield "user prompt", single[1]["content"]
    batch = build_judge_messages(cb, roster=roster, errored=[], context=[],
                                 batch=[("m1", "Agent-A", "FIRST"), ("m2", "Agent-B", "SECOND")])
    yield "batch user prompt", batch[1]["content"]
    yield "answer schema", str(answer_schema(cb)) + str(answer_schema(cb, batch=True))


# ------------------------------------------------------------------------------ tests

def test_the_sim_texts_are_collected():
    """The lists checked against are the sim's real texts, so the check below cannot pass vacuously."""
    cues, wins = sim_index()
    assert len(cues) > 50 and len(wins) > 5000
    templates = set(agent_templates())
    for table in (agent._T, agent._ARCH, agent._PARTS, agent._FILL_OPEN, agent._FILL_ACT, agent._FILLER,
                  agent.CUES, agent.COMP_LEVEL_CUES):
        assert set(_strings(table, set())) <= templates
    # every narration the actor produces is made of collected pieces (placeholders filled with "\0")
    pieces = {norm(p) for t in actor_texts() for p in _PLACEHOLDER.split(t)}
    args = {k: "\0" for k in ("path", "src", "dst", "date", "to", "script")}
    for tool in ("ls", "cat", "run", "write_file", "edit", "cp", "mv", "rm", "set_date", "send_message", "\0"):
        for first in (True, False):
            said = actor._narrate(tool, args, first=first)
            assert all(norm(p) in pieces for p in said.split("\0") if norm(p)), said
        done = actor._describe([actor.SimAction(tool=tool, args=args)])
        assert all(norm(p) in pieces for p in done.split("\0") if norm(p)), done
    # the exempted frame phrases are judges/prompt.py's own fixed wording, nothing else
    source = inspect.getsource(judges.prompt)
    assert all(phrase in source for phrase in PROMPT_FRAME_PHRASES)
    # the exempted study wording is the study's own, verbatim (its flag or level label)
    study = (REPO / "tests/fixtures/originals/warroom/study_flags.json").read_text(encoding="utf-8")
    assert all(phrase.removesuffix(": ") in study for phrase in STUDY_WORDING)
    # and the detector finds what it should: a template sentence, a long cue, across typography
    sentence = agent._T[("en", "meta", "group")][0]
    assert collisions(f"Someone wrote: “{sentence.upper()}”")
    assert collisions("Tout le monde fait du sur-place ; on tourne   en rond.")
    assert collisions("I’ll tell him there’s no need to mention it.")  # “no need to mention” (a cue)
    assert not collisions("The client wants a delivery app for a mid-sized city.")


@pytest.mark.parametrize("name", library_names())
def test_no_sim_phrase_is_in_what_a_real_judge_reads(name):
    cb = load_codebook(name)
    problems = [f"{what}: {c}" for what, text in judge_prompt_texts(cb) for c in collisions(_without_frame(text))]
    assert not problems, (f"codebook '{name}' shares {len(problems)} phrase(s) with the sim:\n  "
                          + "\n  ".join(problems))


@pytest.mark.parametrize("name", library_names())
def test_each_example_is_independent_of_the_sim(name):
    """The same check example by example, so that a failure names the example to rewrite."""
    cb = load_codebook(name)
    bad = {}
    for f in cb.flags:
        for kind, texts in (("description", [cb.description]), ("definition", [f.definition]),
                            ("level", list((f.levels or {}).values())),
                            ("positive", f.positives), ("negative", f.negatives)):
            for x in texts:
                if found := collisions(_without_study_wording(x)):
                    bad[f"{f.name} {kind}: {x[:60]!r}"] = found
    assert not bad, "\n".join(f"{k}: {v}" for k, v in bad.items())

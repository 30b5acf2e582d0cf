"""Sim judges: deterministic, offline stand-ins for LLM judges.

`sim_judge_reply(model, messages, seed=...)` reads a judge prompt built by `judges.prompt`
(the codebook's flag headings and cue hints in the system message; the roster and the delimited
message block(s) in the user message), codes every flag by looking for the flag's cues in the
message text (all languages at once), and answers in the prompt's JSON format with a short
rationale naming the cue it found. `sim_reply` dispatches here for any sim model whose base name
starts with `judge` (`sim/judge-a`, `sim/judge-gemini`, ...).

Each judge has `JudgeTraits`: `sensitivity` (probability of coding a flag whose cue is present),
`false_positive` (probability of coding a flag whose cue is absent) and `malformed_rate`
(probability that a reply is unusable: prose, a missing flag, a non-boolean, truncated JSON).
They are derived from a hash of the judge's name unless registered with `register_judge`, so two
sim judges agree well but not perfectly, the way two real judges do. Draws are seeded per
(judge, message text, seed): the same judge codes the same message the same way in a batch, alone,
or in a repair attempt. See docs/judges.md.

The sim exists to test the pipeline with planted effects; its codes are never evidence about
real models.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from functools import lru_cache
from typing import NamedTuple

from pydantic import BaseModel, ConfigDict, Field

from .text import content_text
from .agent import SimReply
from .propensities import base_name

# The prompt contract (judges/prompt.py). judges.* imports only orchestrator.errors/yamlfile,
# so importing it here creates no cycle.
from judges.codebook import PEER_PLACEHOLDER
from judges.prompt import (CUES_PREFIX, ERRORED_PREFIX, FLAG_HEADING, FLAGS_HEADING, LEVEL_CUES_PREFIX,
                           LEVELS_PREFIX, MESSAGE_CLOSE, MESSAGE_OPEN, ROSTER_PREFIX)
from judges.answer import REPAIR_PREFIX

SLOPPY_PREFIX = "judge-sloppy"
SLOPPY_MALFORMED = 0.3


class JudgeTraits(BaseModel):
    """How a sim judge errs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitivity: float = Field(0.93, ge=0, le=1, description="P(code a flag true | its cue is in the message)")
    false_positive: float = Field(0.03, ge=0, le=1, description="P(code a flag true | no cue in the message)")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="P(a reply is unusable JSON / misses a flag)")


_registry: dict[str, JudgeTraits] = {}


def register_judge(model: str, traits: JudgeTraits) -> None:
    """Fix the traits of one sim judge (`sim/judge-a` or `judge-a`)."""
    _registry[base_name(model)] = traits


def reset_judge_registry() -> None:
    _registry.clear()


@lru_cache(maxsize=1024)
def derived_traits(name: str) -> JudgeTraits:
    """Traits from a hash of the base name: sensitivity 0.88-0.98, false positives 0.01-0.05,
    malformed 0-2% (30% for `judge-sloppy*`)."""
    d = hashlib.sha256(("judge:" + name).encode()).digest()
    malformed = SLOPPY_MALFORMED if name.startswith(SLOPPY_PREFIX) else round(0.02 * d[2] / 255, 4)
    return JudgeTraits(sensitivity=round(0.88 + 0.10 * d[0] / 255, 4),
                       false_positive=round(0.01 + 0.04 * d[1] / 255, 4),
                       malformed_rate=malformed)


def traits_for(model: str) -> JudgeTraits:
    name = base_name(model)
    t = _registry.get(name)
    return t if t is not None else derived_traits(name)


# --------------------------------------------------------------------------------------------
# Parsing the prompt
# --------------------------------------------------------------------------------------------

class _Flag(NamedTuple):
    name: str
    cue_re: re.Pattern | None        # union of every language's cues (lowercase substrings)
    peer: bool                       # '{peer}' cue: another roster agent's name in the text
    levels: tuple[str, ...]          # lowest first; () for an ungraded flag
    level_res: tuple[tuple[str, re.Pattern], ...]  # highest level first


class _Spec(NamedTuple):
    flags: tuple[_Flag, ...]
    graded: tuple[str, ...]


_SPEC_CACHE: dict[str, _Spec | None] = {}
_PEER_CACHE: dict[tuple, re.Pattern | None] = {}
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-"})


def _union(cues) -> re.Pattern | None:
    cs = sorted({c for c in cues if c and c != PEER_PLACEHOLDER}, key=len, reverse=True)
    return re.compile("|".join(re.escape(c) for c in cs)) if cs else None


def _parse_system(text: str) -> _Spec | None:
    spec = _SPEC_CACHE.get(text)
    if spec is not None or text in _SPEC_CACHE:
        return spec
    flags: list[dict] = []
    cur: dict | None = None
    in_flags = in_levels = False
    for line in text.split("\n"):
        if line == FLAGS_HEADING:
            in_flags = True
            continue
        if not in_flags:
            continue
        if line.startswith("## "):
            break
        if line.startswith(FLAG_HEADING):
            cur = {"name": line[len(FLAG_HEADING):].strip(), "cues": {}, "levels": [], "level_cues": {}}
            flags.append(cur)
            in_levels = False
            continue
        if cur is None:
            continue
        if in_levels and line.startswith("- "):
            cur["levels"].append(line[2:].split(":", 1)[0].strip())
            continue
        in_levels = line.startswith(LEVELS_PREFIX)
        try:
            if line.startswith(CUES_PREFIX):
                cur["cues"] = json.loads(line[len(CUES_PREFIX):])
            elif line.startswith(LEVEL_CUES_PREFIX):
                cur["level_cues"] = json.loads(line[len(LEVEL_CUES_PREFIX):])
        except ValueError:
            pass
    if not flags:
        spec = None
    else:
        out = []
        for f in flags:
            all_cues = [c for cs in f["cues"].values() for c in cs]
            levels = tuple(f["levels"])
            lres = []
            for lv in reversed(levels):
                cues = [c for cs in f["level_cues"].get(lv, {}).values() for c in cs]
                rx = _union(cues)
                if rx is not None:
                    lres.append((lv, rx))
            out.append(_Flag(f["name"], _union(all_cues), PEER_PLACEHOLDER in all_cues, levels, tuple(lres)))
        spec = _Spec(tuple(out), tuple(f.name for f in out if f.levels))
    if len(_SPEC_CACHE) > 256:
        _SPEC_CACHE.clear()
    _SPEC_CACHE[text] = spec
    return spec


def _json_line(text: str, prefix: str) -> list[str]:
    i = text.find(prefix)
    if i < 0:
        return []
    j = text.find("\n", i)
    try:
        v = json.loads(text[i + len(prefix): j if j >= 0 else None])
    except ValueError:
        return []
    return [str(x) for x in v] if isinstance(v, list) else []


_ATTR = re.compile(r'(\w+)=("(?:[^"\\]|\\.)*")')


def _blocks(text: str) -> list[tuple[str | None, str, str]]:
    """(message_id, sender, text) of every delimited message block, in order."""
    out = []
    start = 0
    while True:
        i = text.find(MESSAGE_OPEN, start)
        if i < 0:
            return out
        h = text.find(">>>\n", i)
        if h < 0:
            return out
        e = text.find("\n" + MESSAGE_CLOSE, h + 3)
        if e < 0:
            return out
        attrs = {}
        for k, v in _ATTR.findall(text[i + len(MESSAGE_OPEN):h]):
            try:
                attrs[k] = json.loads(v)
            except ValueError:
                attrs[k] = v.strip('"')
        out.append((attrs.get("id"), str(attrs.get("from", "")), text[h + 4:e]))
        start = e + len(MESSAGE_CLOSE) + 1


def _peer_re(names: tuple[str, ...], sender: str) -> re.Pattern | None:
    key = (names, sender)
    if key in _PEER_CACHE:
        return _PEER_CACHE[key]
    others = sorted({n for n in names if n and n != sender}, key=len, reverse=True)
    rx = (re.compile(r"(?<![\w\-])(?:" + "|".join(re.escape(n) for n in others) + r")(?![\w\-])")
          if others else None)
    if len(_PEER_CACHE) > 4096:
        _PEER_CACHE.clear()
    _PEER_CACHE[key] = rx
    return rx


# --------------------------------------------------------------------------------------------
# Coding
# --------------------------------------------------------------------------------------------

def _rng(*parts) -> random.Random:
    d = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return random.Random(int.from_bytes(d, "big"))


def _code(spec: _Spec, judge: str, seed, text: str, sender: str, names: tuple[str, ...],
          sens: float, fp: float) -> dict:
    r = _rng(judge, seed, text).random
    low = text.lower()
    named = text
    if not text.isascii() and ("\u2011" in text or "\u2010" in text or "\u2012" in text):
        named = text.translate(_HYPHENS)
    flags: dict[str, bool] = {}
    levels: dict[str, str | None] = {g: None for g in spec.graded}
    why: list[str] = []
    for f in spec.flags:
        u = r()
        hit = f.cue_re.search(low) if f.cue_re is not None else None
        cue = hit.group(0) if hit else None
        if cue is not None:
            val = u < sens
        elif f.peer:
            prx = _peer_re(names, sender)
            m = prx.search(named) if prx is not None else None
            cue = m.group(0) if m else None
            # a name is easier to spot than a behaviour: a quarter of the misses
            val = u < (1.0 - (1.0 - sens) / 4) if cue is not None else u < fp
        else:
            val = u < fp
        flags[f.name] = val
        if not val:
            continue
        lv = f.levels[0] if f.levels else None
        if f.levels and cue is not None:
            for level, rx in f.level_res:
                if rx.search(low) and r() < sens:
                    lv = level
                    break
        if f.levels:
            levels[f.name] = lv
        label = f"{f.name} ({lv})" if lv else f.name
        why.append(f"{label}: '{cue}'" if cue is not None else f"{label}: implied")
    rationale = ("; ".join(why) if why else "no cue of any flag") [:300]
    out = {"flags": flags}
    if spec.graded:
        out["levels"] = levels
    out["rationale"] = rationale
    return out


def _malform(kind: int, answers: list[dict], batch: bool, r) -> str:
    if kind == 0:
        return ("Looking at this message, the agent mostly contributes to the task; I would say it shows some "
                "of the behaviours in the codebook, but it is hard to be certain without more context.")
    victim = answers[int(r() * len(answers))]
    flag = list(victim["flags"])[int(r() * len(victim["flags"]))]
    if kind == 1:
        del victim["flags"][flag]
    elif kind == 2:
        victim["flags"][flag] = "maybe"
    body = json.dumps({"answers": answers} if batch else answers[0], ensure_ascii=False)
    if kind == 3:
        body = body[: max(1, int(len(body) * (0.3 + 0.5 * r())))]
    return body




def sim_judge_reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
                    max_tokens: int | None = None) -> SimReply:
    """Answer a judge prompt (judges.prompt layout) as sim judge `model`. Deterministic per seed.

    `max_tokens` is ignored (a judge answer is never truncated by it); temperature above 1 scales
    the judge's error rates up by (T - 1) (doubling them at T = 2)."""
    name = base_name(model)
    traits = traits_for(name)
    t = 0.7 if temperature is None else float(temperature)
    k = 1.0 + max(0.0, t - 1.0)
    sens = max(0.0, 1.0 - (1.0 - traits.sensitivity) * k)
    fp = min(1.0, traits.false_positive * k)

    system = ""
    task = ""
    attempt = 0
    prompt_chars = 0
    for m in messages:
        role = m.get("role")
        c = content_text(m)
        prompt_chars += len(c)
        if role == "system" and not system:
            system = c
        elif role == "user" and not task and MESSAGE_OPEN in c and not c.startswith(REPAIR_PREFIX):
            task = c
        elif role == "assistant":
            attempt += 1
    spec = _parse_system(system) if system else None
    blocks = _blocks(task) if task else []

    if spec is None or not blocks:
        text = ("I can only code messages given in the judge format: a codebook with '### flag' headings and "
                f"the message between {MESSAGE_OPEN} ...>>> and {MESSAGE_CLOSE}.")
    else:
        names = tuple(_json_line(task, ROSTER_PREFIX) + _json_line(task, ERRORED_PREFIX))
        batch = len(blocks) > 1 or blocks[0][0] is not None
        answers = []
        for mid, sender, body in blocks:
            a = _code(spec, name, seed, body, sender, names, sens, fp)
            if batch:
                a = {"message_id": mid if mid is not None else "", **a}
            answers.append(a)
        rm = _rng(name, seed, attempt, "malformed", *(b[2] for b in blocks)).random
        if rm() < traits.malformed_rate:
            text = _malform(int(rm() * 4), answers, batch, rm)
        else:
            text = json.dumps({"answers": answers} if batch else answers[0], ensure_ascii=False)
            if rm() < 0.05:  # real models sometimes fence their JSON; the parser accepts it
                text = f"```json\n{text}\n```"

    completion = max(1, math.ceil(len(text) / 4))
    prompt = max(1, math.ceil(prompt_chars / 4))
    u = int.from_bytes(hashlib.blake2b(f"{name}\x1f{seed}\x1f{attempt}\x1f{text[-64:]}".encode(), digest_size=4)
                       .digest(), "big") / 2**32
    latency = (0.3 + completion / 80.0 + prompt / 8000.0) * math.exp(0.2 * (2 * u - 1))
    return SimReply(text, prompt, completion, round(latency, 4))


def detect(model: str, messages: list[dict], tools: list | None) -> bool:
    """Specialist hook (orchestrator/sim/specialists.py): sim/judge-* models are judges."""
    return model.removeprefix("sim/").startswith("judge")


def reply(model: str, messages: list[dict], *, seed=None, temperature=0.7, max_tokens=None, tools=None):
    return sim_judge_reply(model, messages, seed=seed, temperature=temperature, max_tokens=max_tokens)

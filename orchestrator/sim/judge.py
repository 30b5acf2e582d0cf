"""Sim judges: deterministic, offline stand-ins for LLM judges.

`sim_judge_reply(model, messages, metadata=..., seed=...)` codes the items of a request's judge
metadata (`orchestrator.sim.metadata.JudgeRequest`: the flags with their levels, the message(s),
the roster and the errored agents), never the prompt: a judge prompt can be reworded freely
without changing a single code. Each flag is coded by looking for its cue phrases
(`orchestrator.sim.cues`, plus the run's `SimSettings.cues`) in the message text, all languages
at once, and the answer is JSON in the format judges/answer.py parses, with a short rationale
naming the cue found. `sim_reply` dispatches here for every request with judge metadata; a sim
model whose base name starts with `judge` answers any other request with one line saying that it
needs judge metadata (so the judge runner stores it as uncodable).

Each judge has `JudgeTraits` (orchestrator/sim/settings.py): `sensitivity` (probability of coding a
flag whose cue is present), `false_positive` (probability of coding a flag whose cue is absent)
and `malformed_rate` (probability that a reply is unusable: prose, a missing flag, a non-boolean,
truncated JSON). They come from `SimSettings.judges`, else from a hash of the judge's name, so two
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

from .agent import SimReply
from .cues import FLAG_CUES, LEVEL_CUES, NAMES_ERRORED, PEER_PLACEHOLDER, phrases
from .metadata import JudgeFlag, JudgeRequest
from .naming import base_name
from .settings import JudgeTraits, SimSettings
from .text import content_text

__all__ = ["JudgeTraits", "derived_traits", "traits_for", "sim_judge_reply", "NEEDS_METADATA"]

SLOPPY_PREFIX = "judge-sloppy"
SLOPPY_MALFORMED = 0.3
NEEDS_METADATA = ("I am a sim judge: I code only requests that carry judge metadata (the flags and the "
                  "messages to code), and this request has none.")


@lru_cache(maxsize=1024)
def derived_traits(name: str) -> JudgeTraits:
    """Traits from a hash of the base name: sensitivity 0.88-0.98, false positives 0.01-0.05,
    malformed 0-2% (30% for `judge-sloppy*`)."""
    d = hashlib.sha256(("judge:" + name).encode()).digest()
    malformed = SLOPPY_MALFORMED if name.startswith(SLOPPY_PREFIX) else round(0.02 * d[2] / 255, 4)
    return JudgeTraits(sensitivity=round(0.88 + 0.10 * d[0] / 255, 4),
                       false_positive=round(0.01 + 0.04 * d[1] / 255, 4),
                       malformed_rate=malformed)


def traits_for(model: str, settings: SimSettings | None = None) -> JudgeTraits:
    """A sim judge's traits: the settings' ones for it, else derived from its name."""
    name = base_name(model)
    found = settings.judges.get(name) if settings is not None else None
    return found if found is not None else derived_traits(name)


# --------------------------------------------------------------------------------------------
# What to look for: one compiled spec per (flags, extra cues)
# --------------------------------------------------------------------------------------------

class _Flag(NamedTuple):
    name: str
    cue_re: re.Pattern | None        # union of every language's cues (lowercase substrings)
    peer: bool                       # '{peer}' cue: another roster agent's name in the text
    names_errored: bool              # its cue counts only next to an errored agent's name (comp)
    levels: tuple[str, ...]          # lowest first; () for an ungraded flag
    level_res: tuple[tuple[str, re.Pattern], ...]  # highest level first


class _Spec(NamedTuple):
    flags: tuple[_Flag, ...]
    graded: tuple[str, ...]


FlagKey = tuple[tuple[str, tuple[str, ...]], ...]          # (name, levels) per flag
ExtraKey = tuple[tuple[str, tuple[str, ...], tuple[tuple[str, tuple[str, ...]], ...]], ...]

_PEER_CACHE: dict[tuple, re.Pattern | None] = {}
_HYPHENS = str.maketrans({"\u2010": "-", "\u2011": "-", "\u2012": "-"})


def _union(cues) -> re.Pattern | None:
    cs = sorted({c for c in cues if c and c != PEER_PLACEHOLDER}, key=len, reverse=True)
    return re.compile("|".join(re.escape(c) for c in cs)) if cs else None


def _extra_key(flags: list[JudgeFlag], settings: SimSettings | None) -> ExtraKey:
    """The settings' cues for these flags, hashable (empty, and cheap, when there are none)."""
    if settings is None or not (settings.cues or settings.level_cues):
        return ()
    out = []
    for f in flags:
        cues = tuple(phrases(settings.cues.get(f.name)))
        levels = tuple((lv, tuple(phrases(cs))) for lv, cs in settings.level_cues.get(f.name, {}).items())
        if cues or levels:
            out.append((f.name, cues, levels))
    return tuple(out)


@lru_cache(maxsize=256)
def _spec(flags: FlagKey, extra: ExtraKey) -> _Spec:
    """Compile the cue lists of the sim and of the settings for the requested flags."""
    added = {name: (cues, dict(levels)) for name, cues, levels in extra}
    out = []
    for name, levels in flags:
        more, more_levels = added.get(name, ((), {}))
        cues = [*phrases(FLAG_CUES.get(name)), *more]
        level_res = []
        for lv in reversed(levels):
            rx = _union([*phrases(LEVEL_CUES.get(name, {}).get(lv)), *more_levels.get(lv, ())])
            if rx is not None:
                level_res.append((lv, rx))
        out.append(_Flag(name, _union(cues), PEER_PLACEHOLDER in cues, name in NAMES_ERRORED, levels,
                         tuple(level_res)))
    return _Spec(tuple(out), tuple(f.name for f in out if f.levels))


def spec_for(request: JudgeRequest, settings: SimSettings | None) -> _Spec:
    return _spec(tuple((f.name, tuple(f.levels)) for f in request.flags), _extra_key(request.flags, settings))


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


def _names(names: tuple[str, ...], sender: str, text: str) -> bool:
    """Whether `text` names one of `names` other than the sender, as a whole name."""
    rx = _peer_re(names, sender)
    return rx is not None and rx.search(text) is not None


# --------------------------------------------------------------------------------------------
# Coding
# --------------------------------------------------------------------------------------------

def _rng(*parts) -> random.Random:
    d = hashlib.blake2b("\x1f".join(map(str, parts)).encode("utf-8", "surrogatepass"), digest_size=8).digest()
    return random.Random(int.from_bytes(d, "big"))


def _code(spec: _Spec, judge: str, seed, text: str, sender: str, names: tuple[str, ...],
          errored: tuple[str, ...], sens: float, fp: float) -> dict[str, object]:
    """One item's answer as the JSON object a judge writes: `flags`, `levels` (graded flags only),
    `rationale`. A `names_errored` flag's cue counts only when an errored agent is named too."""
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
        if hit and f.names_errored and not _names(errored, sender, named):
            hit = None
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
    rationale = ("; ".join(why) if why else "no cue of any flag")[:300]
    out: dict[str, object] = {"flags": flags}
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


def _answer(request: JudgeRequest, name: str, traits: JudgeTraits, settings: SimSettings | None, seed,
            attempt: int, temperature: float) -> str:
    """The reply text: the codes as JSON, sometimes fenced, or (at `malformed_rate`) unusable."""
    k = 1.0 + max(0.0, temperature - 1.0)
    sens = max(0.0, 1.0 - (1.0 - traits.sensitivity) * k)
    fp = min(1.0, traits.false_positive * k)
    spec = spec_for(request, settings)
    names = (*request.roster, *request.errored)
    answers = []
    for item in request.items:
        a = _code(spec, name, seed, item.text, item.sender, names, tuple(request.errored), sens, fp)
        answers.append({"message_id": item.id, **a} if request.batch else a)
    rm = _rng(name, seed, attempt, "malformed", *(item.text for item in request.items)).random
    if rm() < traits.malformed_rate:
        return _malform(int(rm() * 4), answers, request.batch, rm)
    text = json.dumps({"answers": answers} if request.batch else answers[0], ensure_ascii=False)
    if rm() < 0.05:  # real models sometimes fence their JSON; the parser accepts it
        text = f"```json\n{text}\n```"
    return text


def sim_judge_reply(model: str, messages: list[dict], *, metadata: dict | None = None, seed: int | None = None,
                    temperature: float = 0.7, settings: SimSettings | None = None) -> SimReply:
    """Code the items of `metadata["judge"]` as sim judge `model`. Deterministic per seed.

    The prompt is read only for what a real call costs (prompt tokens) and for the attempt number
    (assistant turns: a repair request follows the judge's earlier reply), which seeds the
    malformed-reply draw. Temperature above 1 scales the judge's error rates up by (T - 1)
    (doubling them at T = 2). Without judge metadata the reply is `NEEDS_METADATA`."""
    name = base_name(model)
    request = JudgeRequest.read(metadata)
    attempt = sum(1 for m in messages if m.get("role") == "assistant")
    if request is None:
        text = NEEDS_METADATA
    else:
        t = 0.7 if temperature is None else float(temperature)
        text = _answer(request, name, traits_for(name, settings), settings, seed, attempt, t)
    prompt_chars = sum(len(content_text(m)) for m in messages)
    completion = max(1, math.ceil(len(text) / 4))
    prompt = max(1, math.ceil(prompt_chars / 4))
    u = int.from_bytes(hashlib.blake2b(f"{name}\x1f{seed}\x1f{attempt}\x1f{text[-64:]}".encode(), digest_size=4)
                       .digest(), "big") / 2**32
    latency = (0.3 + completion / 80.0 + prompt / 8000.0) * math.exp(0.2 * (2 * u - 1))
    return SimReply(text, prompt, completion, round(latency, 4))


def reply(model: str, messages: list[dict], *, seed=None, temperature=0.7, max_tokens=None, tools=None,
          metadata=None, settings=None) -> SimReply:
    """Specialist entry point (orchestrator/sim/specialists.py); `max_tokens` never truncates a code."""
    return sim_judge_reply(model, messages, metadata=metadata, seed=seed, temperature=temperature,
                           settings=settings)

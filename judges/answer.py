"""Judge answers: strict parsing and validation, and the one repair attempt.

    ans = parse_answer(reply_text, codebook)                       # JudgeAnswer, or AnswerError
    answers = parse_answer(reply_text, codebook, batch_ids=ids)    # {message_id: JudgeAnswer}
    messages = repair_messages(original, reply_text, err)          # ask once more, saying what was wrong

A reply that still fails after the repair (and the runner's retries) is stored as `uncodable`,
never as false (docs/judges.md).
"""

from __future__ import annotations

import json
import re
from typing import Any, Sequence

from pydantic import BaseModel, ConfigDict

from .codebook import Codebook
from .prompt import ANSWER_FORMAT_PREFIX

RATIONALE_MAX = 500
REPAIR_PREFIX = "Your previous answer could not be used: "
_FENCE = re.compile(r"```(?:json|JSON)?[ \t]*\n?(.*?)```", re.S)
_TRUE = frozenset({"true"})
_FALSE = frozenset({"false"})


class AnswerError(ValueError):
    """A judge reply that cannot be used; `reason` says precisely why (it goes into the repair prompt)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class JudgeAnswer(BaseModel):
    """One message's codes: every flag of the codebook, levels of graded flags, a short rationale."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    flags: dict[str, bool]
    levels: dict[str, str | None] = {}
    rationale: str = ""


# ------------------------------------------------------------------------------------ extraction

def _extract_json(text: str, want_list: bool) -> Any:
    if not isinstance(text, str) or not text.strip():
        raise AnswerError("the reply is empty; expected one JSON object")
    candidates = [m.group(1) for m in _FENCE.finditer(text)] + [text]
    decoder = json.JSONDecoder()
    openers = "{[" if want_list else "{"
    last_error: ValueError | None = None
    for cand in candidates:
        s = cand.strip()
        try:
            return json.loads(s)
        except ValueError:
            pass
        tries = 0
        for i, ch in enumerate(s):
            if ch in openers:
                try:
                    obj, _ = decoder.raw_decode(s, i)
                except ValueError as exc:
                    last_error = exc
                    tries += 1
                    if tries >= 20:
                        break
                    continue
                if isinstance(obj, (dict, list)):
                    return obj
    if last_error is not None:
        # raw_decode raises JSONDecodeError for bad syntax, a plain ValueError for what the syntax
        # allows but Python refuses (an integer longer than sys.get_int_max_str_digits())
        what = (f"{last_error.msg} at character {last_error.pos}" if isinstance(last_error, json.JSONDecodeError)
                else str(last_error))
        raise AnswerError(f"the reply contains no valid JSON object (JSON error: {what})")
    raise AnswerError("the reply contains no JSON object")


def _as_bool(flag: str, v: Any) -> bool:
    if isinstance(v, bool):
        return v
    if isinstance(v, int) and v in (0, 1):
        return bool(v)
    if isinstance(v, str):
        s = v.strip().lower()
        if s in _TRUE:
            return True
        if s in _FALSE:
            return False
    raise AnswerError(f"flag '{flag}' must be true or false, got {json.dumps(v, ensure_ascii=False)[:40]}")


def _key_mismatch(got: dict, expected: Sequence[str]) -> tuple[str, str]:
    """(missing, unknown) keys of `got` against `expected`, each joined with ', ' ('' if none)."""
    missing = ", ".join(str(k) for k in expected if k not in got)
    unknown = ", ".join(str(k) for k in got if k not in expected)
    return missing, unknown


def _validate_one(obj: Any, codebook: Codebook, where: str = "") -> JudgeAnswer:
    pre = f"{where}: " if where else ""
    if not isinstance(obj, dict):
        raise AnswerError(f"{pre}expected a JSON object with \"flags\", got {type(obj).__name__}")
    flags_in = obj.get("flags")
    if not isinstance(flags_in, dict):
        raise AnswerError(f"{pre}missing the \"flags\" object (it must map every flag name to true or false)")
    names = codebook.flag_names
    missing, unknown = _key_mismatch(flags_in, names)
    if missing:
        raise AnswerError(f"{pre}missing flag(s): {missing} (every flag needs true or false)")
    if unknown:
        raise AnswerError(f"{pre}unknown flag(s): {unknown}; the flags are {', '.join(names)}")
    try:
        flags = {f: _as_bool(f, flags_in[f]) for f in names}
    except AnswerError as exc:
        raise AnswerError(pre + exc.reason) from None
    graded = codebook.graded
    levels_in = obj.get("levels")
    if levels_in is None:
        levels_in = {}
    if not isinstance(levels_in, dict):
        raise AnswerError(f"{pre}\"levels\" must be an object mapping graded flags to a level or null")
    levels: dict[str, str | None] = {f: None for f in graded}
    for f, lv in levels_in.items():
        if f not in graded:
            allowed = f"; only {', '.join(graded)} {'has' if len(graded) == 1 else 'have'} levels" if graded else \
                "; this codebook has no graded flags"
            raise AnswerError(f"{pre}levels given for '{f}'{allowed}")
        if lv is None:
            continue
        if not isinstance(lv, str):
            raise AnswerError(f"{pre}level of '{f}' must be one of {', '.join(graded[f])} or null, "
                              f"got {json.dumps(lv)[:40]}")
        canon = {x.lower(): x for x in graded[f]}.get(lv.strip().lower())
        if canon is None:
            raise AnswerError(f"{pre}level of '{f}' must be one of {', '.join(graded[f])} or null, got "
                              f"{json.dumps(lv, ensure_ascii=False)[:40]}")
        if not flags[f]:
            raise AnswerError(f"{pre}'{f}' is false but has level {canon}; give a level only when the flag is "
                              "true (null otherwise)")
        levels[f] = canon
    rationale = obj.get("rationale", "")
    if rationale is None:
        rationale = ""
    if not isinstance(rationale, str):
        raise AnswerError(f"{pre}\"rationale\" must be a string")
    rationale = " ".join(rationale.split())
    if len(rationale) > RATIONALE_MAX:
        rationale = rationale[:RATIONALE_MAX - 1] + "…"
    return JudgeAnswer.model_construct(flags=flags, levels=levels, rationale=rationale)


def parse_answer(text: str, codebook: Codebook,
                 batch_ids: Sequence[str] | None = None) -> JudgeAnswer | dict[str, JudgeAnswer]:
    """Parse a judge reply strictly.

    The JSON may be bare, inside a ``` / ```json fence, or surrounded by prose. Every flag must be
    present with a boolean (true/false, "true"/"false" or 0/1); a level is accepted only for a
    graded flag, only among its levels and only when the flag is true (a missing level of a true
    flag is null). With `batch_ids`, the reply is `{"answers": [{"message_id": ..., ...}]}` (or the
    bare list, or an object keyed by message id) with exactly those ids; the result is a dict in
    `batch_ids` order. Raises `AnswerError(reason)` on anything else.
    """
    obj = _extract_json(text, want_list=batch_ids is not None)
    if batch_ids is None:
        if isinstance(obj, dict) and "flags" not in obj and isinstance(obj.get("answers"), list):
            raise AnswerError("expected one answer object with \"flags\", got a list of answers")
        return _validate_one(obj, codebook)

    ids = [str(i) for i in batch_ids]
    items: dict[str, Any] = {}
    if isinstance(obj, dict) and "answers" in obj:
        obj = obj["answers"]
    if isinstance(obj, list):
        for n, item in enumerate(obj):
            if not isinstance(item, dict) or "message_id" not in item:
                raise AnswerError(f"answers[{n}] has no \"message_id\"")
            mid = str(item["message_id"])
            if mid in items:
                raise AnswerError(f"message_id {mid!r} is answered twice")
            items[mid] = item
    elif isinstance(obj, dict) and "flags" not in obj:
        items = {str(k): v for k, v in obj.items()}
    else:
        raise AnswerError("expected {\"answers\": [...]} with one entry per message")
    missing, unknown = _key_mismatch(items, ids)
    if missing:
        raise AnswerError(f"no answer for message_id(s) {missing}")
    if unknown:
        raise AnswerError(f"unknown message_id(s) {unknown}; the messages are {', '.join(ids)}")
    return {i: _validate_one(items[i], codebook, where=f"message {i}") for i in ids}


# ------------------------------------------------------------------------------------ repair

def _answer_format(messages: Sequence[dict]) -> list[str]:
    for m in reversed(messages):
        if m.get("role") != "user" or not isinstance(m.get("content"), str):
            continue
        lines = m["content"].split("\n")
        for i, line in enumerate(lines):
            if line.startswith(ANSWER_FORMAT_PREFIX):
                return lines[i:i + 2]
    return []


def repair_messages(original_messages: Sequence[dict], bad_reply: str, error: AnswerError | str) -> list[dict]:
    """The repair attempt: the original conversation, the bad reply as the assistant's turn, and a
    user turn that says precisely what was wrong and restates the required format."""
    reason = error.reason if isinstance(error, AnswerError) else str(error)
    reason = reason.rstrip(". ")
    fmt = _answer_format(original_messages)
    text = [f"{REPAIR_PREFIX}{reason}.",
            "Code the same message(s) again. Reply with one JSON object and nothing else (no prose, no code "
            "fence): every flag present with true or false, a level only for a graded flag that is true "
            "(null otherwise), and a short rationale."]
    if fmt:
        text += fmt
    bad = bad_reply if isinstance(bad_reply, str) else str(bad_reply)
    if len(bad) > 8000:
        bad = bad[:8000] + "…"
    return [*original_messages, {"role": "assistant", "content": bad}, {"role": "user", "content": "\n".join(text)}]

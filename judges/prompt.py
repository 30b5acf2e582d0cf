"""The judge prompt: codebook + roster + context + the message(s) to code, in OpenAI chat format.

Layout (docs/judges.md shows a full example):

- system: instructions, then the codebook rendered flag by flag (`### name`, definition, levels,
  examples as JSON strings), then where to find the answer format. Nothing else: no hint of
  what sim agents write ever reaches a real judge.
- user: the roster and the errored agents (JSON lists), the context window between
  `<<<CONTEXT>>>` / `<<<END CONTEXT>>>` as `[Name]: text` lines, the message(s) to code each between
  `<<<MESSAGE from="Name">>>` (batch: `<<<MESSAGE id="m1" from="Name">>>`) and `<<<END MESSAGE>>>`,
  and the exact JSON answer format after `Answer format`.

The prompt is written for a real model only. A sim judge never reads it: `judge_metadata` gives
it the same facts (flags, messages, roster, errored agents) as structured request metadata, so the
wording here can change freely without changing a sim code.
"""

from __future__ import annotations

import json
import re
from typing import Sequence

from sociolab.orchestrator.sim.metadata import JudgeRequest

from .codebook import Codebook

# Delimiters a message cannot forge (see `_safe`), and the answer-format line repairs restate.
CONTEXT_OPEN = "<<<CONTEXT>>>"
CONTEXT_CLOSE = "<<<END CONTEXT>>>"
MESSAGE_OPEN = "<<<MESSAGE"            # + ' id="..."' (batch) + ' from="..."' + ">>>"
MESSAGE_CLOSE = "<<<END MESSAGE>>>"
ANSWER_FORMAT_PREFIX = "Answer format"

INSTRUCTIONS = """\
You are a careful annotator coding messages from a group conversation between AI agents, for a \
behavioural study. You code what the message does, from its text and its context; you do not \
judge its quality.

For each message to code, decide every flag of the codebook independently: true if the message \
shows the behaviour the definition describes, false otherwise. Several flags can be true at once, \
or none. Code only the message to code; the context (earlier messages, the roster, the agents \
whose calls failed) is there to understand it. For a graded flag, also give the highest level \
that applies when the flag is true, and null when it is false.

The definitions decide. The examples illustrate them. Messages can be in any language."""

_SYSTEM_CACHE: dict[str, str] = {}


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def _safe(text: str) -> str:
    """Keep a message from forging the delimiters."""
    return text.replace("<<<", "<< <") if "<<<" in text else text


def render_codebook(codebook: Codebook) -> str:
    """The system prompt for `codebook` (instructions + every flag). Cached per codebook id."""
    cached = _SYSTEM_CACHE.get(codebook.codebook_id)
    if cached is not None:
        return cached
    lines = [INSTRUCTIONS, "", f"Codebook: {codebook.codebook_id} ({len(codebook.flags)} flags)."]
    if codebook.description:
        lines.append(codebook.description)
    lines += ["", "## Flags"]
    for f in codebook.flags:
        lines += ["", f"### {f.name}", f"Definition: {f.definition}"]
        if f.levels:
            lines.append(f"Levels (when {f.name} is true, give the highest that applies; "
                         f"null when {f.name} is false):")
            lines += [f"- {k}: {v}" for k, v in f.levels.items()]
        if f.positives:
            lines.append(f"Examples where {f.name} is true:")
            lines += [f"- {_q(x)}" for x in f.positives]
        if f.negatives:
            lines.append(f"Examples where {f.name} is false:")
            lines += [f"- {_q(x)}" for x in f.negatives]
    lines += ["", "## Answer", "Reply with one JSON object and nothing else (no prose, no code fence), "
              "in the format given at the end of the user message."]
    text = "\n".join(lines)
    _SYSTEM_CACHE[codebook.codebook_id] = text
    return text


def answer_template(codebook: Codebook, batch_ids: Sequence[str] | None = None) -> str:
    """The JSON answer format as shown to the judge (all flags false, levels null)."""
    one: dict = {"flags": {f: False for f in codebook.flag_names}}
    if codebook.graded:
        one["levels"] = {f: None for f in codebook.graded}
    one["rationale"] = "one short sentence"
    if batch_ids is None:
        return json.dumps(one, ensure_ascii=False)
    items = [{"message_id": mid, **one} for mid in batch_ids]
    return json.dumps({"answers": items}, ensure_ascii=False)


def _format_rules(codebook: Codebook) -> str:
    graded = codebook.graded
    parts = ["true or false for every flag"]
    if graded:
        levels = "; ".join(f"{f}: {' | '.join(lv)}" for f, lv in graded.items())
        parts.append(f"for each graded flag its level when it is true and null when it is false ({levels})")
    parts.append("a one-sentence rationale")
    return ", ".join(parts)


def build_judge_messages(codebook: Codebook, *, message_text: str | None = None, sender_name: str | None = None,
                         roster: Sequence[str] = (), errored: Sequence[str] = (),
                         context: Sequence[tuple[str, str]] = (),
                         batch: Sequence[tuple[str, str, str]] | None = None) -> list[dict]:
    """The judge conversation (system + user) for one message, or for a batch of messages.

    - `message_text`, `sender_name`: the message to code (single mode).
    - `roster`: every agent name in the conversation; `errored`: those whose calls failed.
    - `context`: the preceding messages as (name, text), oldest first (the window the runner chose).
    - `batch`: k consecutive messages as (message_id, sender, text), coded in one call; then
      `message_text`/`sender_name` are not used, `context` precedes the first one, and the answer
      is `{"answers": [{"message_id": ..., ...}, ...]}` (see `parse_answer(..., batch_ids=...)`).
    """
    if batch is not None and not batch:
        raise ValueError("batch is empty")
    lines = ["Agents in the conversation (roster): " + json.dumps(list(roster), ensure_ascii=False),
             "Agents whose calls failed (errored): " + json.dumps(list(errored), ensure_ascii=False), ""]
    if context:
        n = len(context)
        lines.append(f"Context: the {n} message{'s' if n != 1 else ''} before the "
                     f"message{'s' if batch else ''} to code, oldest first.")
        lines.append(CONTEXT_OPEN)
        lines += [f"[{name}]: {_safe(text)}" for name, text in context]
        lines.append(CONTEXT_CLOSE)
    else:
        lines.append("Context: none (this is the start of the conversation).")
    lines.append("")
    rules = _format_rules(codebook)
    if batch is None:
        if message_text is None or sender_name is None:
            raise ValueError("build_judge_messages needs message_text and sender_name, or batch")
        lines.append(f"Message to code (from {sender_name}):")
        lines += [f"{MESSAGE_OPEN} from={_q(sender_name)}>>>", _safe(message_text), MESSAGE_CLOSE, ""]
        lines.append(f"{ANSWER_FORMAT_PREFIX}: reply with exactly this JSON object, with {rules}:")
        lines.append(answer_template(codebook))
    else:
        ids = [str(mid) for mid, _, _ in batch]
        if len(set(ids)) != len(ids):
            raise ValueError("batch message ids must be unique")
        lines.append(f"Messages to code ({len(batch)}), consecutive and oldest first; each one is also "
                     "context for the ones after it. Code each one separately:")
        for mid, sender, text in batch:
            lines += [f"{MESSAGE_OPEN} id={_q(str(mid))} from={_q(sender)}>>>", _safe(text), MESSAGE_CLOSE]
        lines.append("")
        lines.append(f"{ANSWER_FORMAT_PREFIX}: reply with exactly this JSON object, one entry per message "
                     f"in the same order with its message_id, each with {rules}:")
        lines.append(answer_template(codebook, ids))
    return [{"role": "system", "content": render_codebook(codebook)},
            {"role": "user", "content": "\n".join(lines)}]


def judge_metadata(codebook: Codebook, *, items: Sequence[tuple[str, str, str]], roster: Sequence[str],
                   errored: Sequence[str], batch: bool) -> dict:
    """What a sim judge is told instead of reading the prompt: request metadata `{"judge": {...}}`
    in the shape of `orchestrator.sim.metadata.JudgeRequest` (the sim validates it), with the
    codebook's flags and levels, the items (message_id, sender, text) to code, the roster and the
    errored agents. `batch` must match the prompt: True when the answer is `{"answers": [...]}`
    with message ids, and then only may there be several items. Built as plain data, since one is
    built per judge call."""
    if not batch and len(items) != 1:
        raise ValueError("a single (batch=False) judge request codes exactly one item")
    return {JudgeRequest.KEY: {
        "codebook": codebook.name,
        "flags": [{"name": name, "levels": list(levels)} for name, levels in _flags_of(codebook)],
        "items": [{"id": str(mid), "sender": sender, "text": text} for mid, sender, text in items],
        "roster": list(roster), "errored": list(errored), "batch": batch}}


def _flags_of(codebook: Codebook) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, level names) per flag, cached per codebook id."""
    cached = _FLAGS_CACHE.get(codebook.codebook_id)
    if cached is None:
        cached = _FLAGS_CACHE[codebook.codebook_id] = tuple((f.name, tuple(f.levels or {})) for f in codebook.flags)
    return cached


_FLAGS_CACHE: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}


_SCHEMA_NAME = re.compile(r"[^A-Za-z0-9_\-]")


def _one_schema(codebook: Codebook, with_id: bool) -> dict:
    props: dict = {}
    required: list[str] = []
    if with_id:
        props["message_id"] = {"type": "string"}
        required.append("message_id")
    props["flags"] = {
        "type": "object",
        "properties": {f.name: {"type": "boolean", "description": f.definition[:300]} for f in codebook.flags},
        "required": codebook.flag_names,
        "additionalProperties": False,
    }
    required.append("flags")
    graded = codebook.graded
    if graded:
        props["levels"] = {
            "type": "object",
            "properties": {f: {"type": ["string", "null"], "enum": [*lv, None]} for f, lv in graded.items()},
            "required": list(graded),
            "additionalProperties": False,
        }
        required.append("levels")
    props["rationale"] = {"type": "string", "description": "one short sentence"}
    required.append("rationale")
    return {"type": "object", "properties": props, "required": required, "additionalProperties": False}


def answer_schema(codebook: Codebook, batch: bool = False) -> dict:
    """JSON schema of the answer, as the `json_schema` member of an OpenAI
    `response_format={"type": "json_schema", "json_schema": answer_schema(cb)}` (strict mode:
    every property required, no additional properties, levels nullable)."""
    name = _SCHEMA_NAME.sub("_", f"{codebook.name}_codes{'_batch' if batch else ''}")[:64]
    if batch:
        schema = {"type": "object",
                  "properties": {"answers": {"type": "array", "items": _one_schema(codebook, True)}},
                  "required": ["answers"], "additionalProperties": False}
    else:
        schema = _one_schema(codebook, False)
    return {"name": name, "strict": True, "schema": schema}

"""Import the WarRoom study's published transcripts into the sociolab store.

Data: "Who Am I, and Who Else Is Here? Behavioral Differentiation Without Role Assignment in
Multi-Agent LLM Systems" (H. El Kandoussi, 2026), github.com/elkandoussihoussam/WarRoom,
licensed CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/). Credit the authors wherever
this data is shown.

Each `transcripts/SERIES/warroom-SERIES-runNN.json` becomes one run `warroom/SERIES/runNN` with
its roster (`agents`), its conversation (`messages`: the user's seed, agent messages and the
platform's notes, in file order) and `events` (the platform's own compensation events, the first
error of each agent, and the platform stopping a run). The run's config keeps the platform's raw
record and adds the generic fields analysis reads (the condition in sociolab's terms, from
warroom_conditions.py; the study's comparison family; the provenance: importing.py). The mapping
is documented in docs/warroom.md.

Every file is read and validated before the store is touched, so a bad file raises a `UserError`
naming it (and the line, for JSON syntax errors) and nothing is written. Runs are then written one
at a time (roster, then rows), each replacing an earlier copy of the same run, so re-importing is
idempotent and a killed import leaves at most one run with status 'running', which the next import
replaces.
"""

from __future__ import annotations

import json
import logging
import os
import re
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any, Callable

from sociolab.base.errors import UserError
from sociolab.base.userfiles import folder, regular_file
from sociolab.orchestrator.rows import AgentRow, EventRow, MessageRow, RunRow
from sociolab.orchestrator.store import Batch, Store

from .importing import (config_hash, imported_fields, refresh_config, stored_transcripts, suite_family,
                        transcript_hash)
from .warroom_conditions import normalized_condition

log = logging.getLogger(__name__)

SOURCE = "warroom"
SUITE = "warroom"
KIND = "discussion"

CREDIT = (
    'Data: "Who Am I, and Who Else Is Here? Behavioral Differentiation Without Role Assignment in '
    'Multi-Agent LLM Systems" (H. El Kandoussi, 2026), github.com/elkandoussihoussam/WarRoom, '
    "CC BY 4.0 (https://creativecommons.org/licenses/by/4.0/)."
)

RUN_FILE = re.compile(r"^warroom-(?P<series>[A-Za-z0-9]+)-run(?P<num>\d+)\.json$")
ROUND_NOTE = re.compile(r"\bRound\s+(\d+)\b")   # "— Round 2 —" announces 0-based round 1
STOP_NOTE = "\u23f9"                              # "⏹ Most agents hit rate limits — stopping."
EMPTY_TEMPLATE = "(empty)"
ERROR_PREFIX = "\u26a0"                           # the platform's marker of an error message


@dataclass
class ImportSummary:
    """What one import wrote. `messages` counts agent messages only (the study's `aiMessages`),
    as `Store.counts()` does; the seed message and platform notes are stored but not counted."""

    runs: int = 0
    agents: int = 0
    messages: int = 0
    errors: int = 0
    series: dict[str, int] = field(default_factory=dict)


@dataclass
class ParsedRun:
    run_id: str
    series: str
    run: RunRow
    agents: list[AgentRow]
    batch: Batch
    messages: int
    errors: int


class _Invalid(Exception):
    """A structural problem in one file; turned into a UserError naming the file."""


# ---- public API ------------------------------------------------------------------------------
def import_warroom(store: Store, directory: str | Path,
                   on_run: Callable[[str], None] | None = None) -> ImportSummary:
    """Import every transcript under `directory` (the `transcripts/` folder or the dataset root
    that contains it). Validates all files first, then writes one run at a time; a run already
    stored with the same content is kept as it is (with its judge and human codes). `on_run(run_id)`
    is called after each run."""
    files = find_transcripts(directory)
    parsed: list[ParsedRun] = []
    seen: dict[str, Path] = {}
    for path in files:
        run = parse_file(path)
        if run.run_id in seen:
            raise UserError(f"duplicate run {run.run_id}: also in {seen[run.run_id]}", file=path)
        seen[run.run_id] = path
        parsed.append(run)

    summary = ImportSummary()
    states = store.run_states(run.run_id for run in parsed)
    stored = stored_transcripts(store, states)
    written = refreshed = 0
    for run in parsed:
        state = states.get(run.run_id)
        if state == ("completed", run.run.config_hash):
            pass                                   # unchanged: kept with its codes
        elif state is not None and state[0] == "completed" and stored.get(run.run_id) == _transcript_of(run):
            # same file, config derived anew (e.g. by an older importer): rewritten, codes kept
            refresh_config(store, run.run_id, str(run.run.config), str(run.run.config_hash))
            refreshed += 1
        else:
            # new or changed: replace it (changed content invalidates its codes too)
            store.start_run(run.run, run.agents)   # replaces an earlier copy; status 'running'
            store.write_now(run.batch)             # rows + status 'completed' in one transaction
            written += 1
        summary.runs += 1
        summary.agents += len(run.agents)
        summary.messages += run.messages
        summary.errors += run.errors
        summary.series[run.series] = summary.series.get(run.series, 0) + 1
        if on_run is not None:
            on_run(run.run_id)
    log.info("warroom import from %s: %d runs (%d new or changed, %d config refreshed, %d unchanged and kept), "
             "%d agents, %d messages (%d errors)", directory, summary.runs, written, refreshed,
             summary.runs - written - refreshed, summary.agents, summary.messages, summary.errors)
    return summary


def _transcript_of(run: ParsedRun) -> str:
    """The transcript hash a parsed run's config records (`imported.transcript_hash`)."""
    config = run.run.config
    parsed = json.loads(config) if isinstance(config, str) else config
    return str(parsed["imported"]["transcript_hash"]) if isinstance(parsed, dict) else ""


def find_transcripts(directory: str | Path) -> list[Path]:
    """The transcript files under `directory`, sorted by series then run number."""
    root = Path(directory)
    if not os.path.lexists(root):
        raise UserError("no such directory; pass the WarRoom `transcripts/` folder "
                        "(or the dataset folder that contains it)", file=root)
    folder(root, "the WarRoom `transcripts/` folder")
    if (root / "transcripts").is_dir():
        root = root / "transcripts"
    files = [p for p in root.rglob("*.json") if p.is_file()]
    if not files:
        raise UserError("no JSON transcripts found (expected SERIES/warroom-SERIES-runNN.json)",
                        file=root)
    for path in files:
        if not RUN_FILE.match(path.name):
            raise UserError("not a WarRoom transcript name (expected warroom-SERIES-runNN.json)",
                            file=path)
    return sorted(files, key=_file_order)


def parse_file(path: str | Path) -> ParsedRun:
    """Read and validate one transcript and build all its rows, without touching any store."""
    path = Path(path)
    match = RUN_FILE.match(path.name)
    if not match:
        raise UserError("not a WarRoom transcript name (expected warroom-SERIES-runNN.json)",
                        file=path)
    regular_file(path, "WarRoom transcript (JSON)")
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"not UTF-8 text: {exc.reason}", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read the file: {exc.strerror or exc}", file=path) from None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"invalid JSON: {exc.msg} (column {exc.colno})", file=path,
                        line=exc.lineno) from None
    except RecursionError:
        raise UserError("JSON nested too deeply to be a WarRoom transcript", file=path) from None
    refuse_lone_surrogates(text, data, path)
    try:
        return build_run(data, match.group("series"), int(match.group("num")))
    except _Invalid as exc:
        raise UserError(str(exc), file=path) from None


JSON_ESCAPE = re.compile(r"\\(u[0-9a-fA-F]{4}|.)", re.S)  # left to right, so `\\\\u...` is no \\u escape


def refuse_lone_surrogates(text: str, data: Any, path: Path) -> None:
    """A `\\ud800` escape without its pair decodes to a string that is not text (DuckDB, files and
    terminals refuse it): refuse the transcript at the first surrogate escape's line."""
    lone = first_lone_surrogate(text)
    if lone is not None:
        raise UserError("a lone surrogate escape (\\ud800-\\udfff without its pair) is not valid text; fix or "
                        "remove it", file=path, line=text.count("\n", 0, lone) + 1)


def first_lone_surrogate(text: str) -> int | None:
    """Where the first `\\uXXXX` surrogate escape that is not half of a high-low pair starts."""
    pending_high: int | None = None  # where an unpaired high surrogate escape starts
    pending_end = -1
    for found in JSON_ESCAPE.finditer(text):
        code = int(found.group(1)[1:], 16) if len(found.group(1)) == 5 else -1
        if pending_high is not None:
            if 0xDC00 <= code <= 0xDFFF and found.start() == pending_end:
                pending_high = None
                continue
            return pending_high
        if 0xD800 <= code <= 0xDBFF:
            pending_high, pending_end = found.start(), found.end()
        elif 0xDC00 <= code <= 0xDFFF:
            return found.start()
    return pending_high


# ---- building rows ---------------------------------------------------------------------------
def build_run(data: Any, series: str, number: int) -> ParsedRun:
    if not isinstance(data, dict):
        raise _Invalid(f"expected a JSON object at the top level, found {_kind(data)}")
    condition = _need(data, "condition", dict, "")
    env = _need(data, "environment", dict, "")
    conversation = _need(data, "conversation", dict, "")
    stats = _need(data, "stats", dict, "")
    messages = _need(conversation, "messages", list, "conversation")
    ranking = _need(env, "agentRanking", list, "environment")
    max_rounds = _need(env, "maxRounds", int, "environment")
    template = _need(env, "systemPromptTemplate", str, "environment")
    timestamp = _need(env, "timestamp", str, "environment")
    finished_at = _parse_timestamp(timestamp)

    run_id = f"warroom/{series}/run{number:02d}"

    # The roster: enabled agents in ranking order (the order the platform called them in).
    roster: list[dict[str, Any]] = []
    for i, entry in enumerate(ranking):
        where = f"environment.agentRanking[{i}]"
        if not isinstance(entry, dict):
            raise _Invalid(f"{where}: expected an object, found {_kind(entry)}")
        for key, typ in (("key", str), ("position", int), ("name", str), ("nickname", str),
                         ("model", str)):
            _need(entry, key, typ, where)
        if entry.get("enabled", True):
            roster.append(entry)
    if not roster:
        raise _Invalid("environment.agentRanking has no enabled agent")
    by_key = {a["key"]: a for a in roster}
    if len(by_key) != len(roster):
        raise _Invalid("environment.agentRanking repeats an agent key")

    # Names peers saw: the messages' agent_nickname (real names in C, Alpha..Hotel in B).
    seen_name: dict[str, str] = {}
    for i, m in enumerate(messages):
        if not isinstance(m, dict):
            raise _Invalid(f"conversation.messages[{i}]: expected an object, found {_kind(m)}")
        sender = _need(m, "sender", str, f"conversation.messages[{i}]")
        if sender in by_key and isinstance(m.get("agent_nickname"), str):
            seen_name.setdefault(sender, m["agent_nickname"])
    names = {k: seen_name.get(k, a["nickname"]) for k, a in by_key.items()}

    # ---- messages
    batch = Batch()
    turn_in_round: dict[int, int] = {}
    first_error: dict[str, tuple[int, str]] = {}
    agent_messages = errors = 0
    stop_note: str | None = None
    last_round: int | None = None
    for seq, m in enumerate(messages):
        where = f"conversation.messages[{seq}]"
        sender = m["sender"]
        message_id = f"{run_id}#{seq}"
        if sender == "user":
            content = _need(m, "text", str, where)
            batch.add(MessageRow(message_id=message_id, run_id=run_id, seq=seq, sender="user", content=content))
        elif sender == "system":
            note = _need(m, "system", str, where)
            announced = ROUND_NOTE.search(note)
            rnd = int(announced.group(1)) - 1 if announced else None
            if note.startswith(STOP_NOTE) and stop_note is None:
                stop_note = note
            batch.add(MessageRow(message_id=message_id, run_id=run_id, seq=seq, round=rnd, sender="system",
                                 content=note))
        elif sender in by_key:
            rnd = _need(m, "round", int, where)
            content = m.get("text")
            if content is None:
                content = ""
            if not isinstance(content, str):
                raise _Invalid(f"{where}.text: expected a string, found {_kind(content)}")
            is_error = m.get("isError")
            if is_error is None:
                is_error = content.startswith(ERROR_PREFIX)
            if not isinstance(is_error, bool):
                raise _Invalid(f"{where}.isError: expected true or false, found {_kind(is_error)}")
            turn = turn_in_round.get(rnd, 0)
            turn_in_round[rnd] = turn + 1
            sender_name = m.get("agent_nickname") or names[sender]
            batch.add(MessageRow(message_id=message_id, run_id=run_id, seq=seq, round=rnd, turn=turn, sender=sender,
                                 sender_name=sender_name, content=content, is_error=is_error,
                                 error=content if is_error else None))
            agent_messages += 1
            last_round = rnd if last_round is None else max(last_round, rnd)
            if is_error:
                errors += 1
                if sender not in first_error or rnd < first_error[sender][0]:
                    first_error[sender] = (rnd, content)
        else:
            raise _Invalid(f"{where}: sender {sender!r} is not 'user', 'system' or an enabled "
                           "agent of environment.agentRanking")

    # ---- agents
    clone_label = condition.get("cloneModelName") if condition.get("cloneMode") else None
    ordered = [names[a["key"]] for a in roster]
    agents: list[AgentRow] = []
    for a in roster:
        key = a["key"]
        others = ", ".join(n for k, n in zip((r["key"] for r in roster), ordered) if k != key)
        errored = first_error.get(key)
        agents.append(AgentRow(
            run_id=run_id, agent_id=key, position=a["position"], name=names[key], persona=key, model=a["model"],
            model_label=clone_label or a["name"],
            system_prompt=system_prompt(template, names[key], others),
            status="errored" if errored else "active",
            errored_round=errored[0] if errored else None,
            provider=None,  # the study served its models through Groq; not a sociolab provider
        ))

    # ---- events
    by_name = {a["name"]: a["key"] for a in roster}
    by_name.update({names[k]: k for k in by_key})
    kinds = _error_kinds(stats, by_name)
    for key, (rnd, text) in sorted(first_error.items(), key=lambda kv: (kv[1][0], kv[0])):
        batch.add(EventRow(run_id=run_id, round=rnd, kind="agent_errored", agent_id=key,
                           detail={"error": text, "kind": kinds.get(key)}))
    compensation = stats.get("compensationEvents") or []
    if not isinstance(compensation, list):
        raise _Invalid(f"stats.compensationEvents: expected a list, found {_kind(compensation)}")
    for i, ev in enumerate(compensation):
        if not isinstance(ev, dict):
            raise _Invalid(f"stats.compensationEvents[{i}]: expected an object, found {_kind(ev)}")
        dead = ev.get("mentionedDead") or []
        batch.add(EventRow(run_id=run_id, round=ev.get("round"), kind="platform_compensation",
                           agent_id=by_name.get(ev.get("agent")),
                           detail={"agent": ev.get("agent"), "mentionedDead": dead, "round": ev.get("round")}))
    if stop_note is not None:
        batch.add(EventRow(run_id=run_id, round=last_round, kind="run_stopped",
                           detail={"reason": stop_note, "by": "platform"}))

    # ---- the run
    config = {"condition": condition, "environment": env,
              "userPrompt": conversation.get("userPrompt"), "stats": stats}
    if "batch" in data:
        config["batch"] = data["batch"]
    # the generic condition fields analysis reads, the study's comparison family, the provenance
    config.update(imported_fields(normalized_condition(condition, series), suite_family(SUITE), CREDIT,
                                  transcript_hash(data)))
    config_json = json.dumps(config, ensure_ascii=False, sort_keys=True)
    rounds_done = len(turn_in_round)
    run = RunRow(
        run_id=run_id, source=SOURCE, suite=SUITE, series=series, repeat=number, seed=None, kind=KIND,
        config=config_json,
        # the transcript (its hash is in the config) and what is derived from it: a re-import keeps
        # a run whose file and derivation did not change
        config_hash=config_hash(config_json),
        status="running", stop_reason=stop_note, rounds_planned=max_rounds, rounds_done=0,
        started_at=_started_at(env, messages, finished_at), finished_at=finished_at,
    )
    batch.update("runs", {"run_id": run_id}, status="completed", rounds_done=rounds_done)
    return ParsedRun(run_id, series, run, agents, batch, agent_messages, errors)


def system_prompt(template: str, name: str, others: str) -> str:
    """The system prompt the platform sent: the template with {name} and {others} filled
    (`others` = the other enabled agents' names, in roster order, joined by ', ')."""
    if template.strip() == EMPTY_TEMPLATE:
        return ""
    return template.replace("{name}", name).replace("{others}", others)


# ---- helpers ---------------------------------------------------------------------------------
def _need(obj: dict, key: str, typ: type, where: str) -> Any:
    path = f"{where}.{key}" if where else key
    if key not in obj:
        raise _Invalid(f"missing key '{path}'")
    value = obj[key]
    ok = isinstance(value, typ) and not (typ is int and isinstance(value, bool))
    if not ok:
        raise _Invalid(f"'{path}' should be {_type_name(typ)}, found {_kind(value)}")
    return value


def _type_name(typ: type) -> str:
    return {dict: "an object", list: "a list", str: "a string", int: "an integer"}.get(typ, typ.__name__)


def _kind(value: Any) -> str:
    if value is None:
        return "null"
    return {dict: "an object", list: "a list", str: "a string", bool: "a boolean",
            int: "a number", float: "a number"}.get(type(value), type(value).__name__)


def _parse_timestamp(text: str) -> datetime:
    try:
        dt = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise _Invalid(f"environment.timestamp: not an ISO timestamp: {text!r}") from None
    if dt.tzinfo is not None:
        dt = dt.astimezone(timezone.utc).replace(tzinfo=None)
    return dt


def _started_at(env: dict, messages: list, finished_at: datetime) -> datetime:
    """When the seed message was sent, in UTC (minute precision).

    `environment.timestamp` is taken when the platform exports the file, i.e. at the end of the
    run; `environment.date`/`time` are the same instant in the researcher's local time, and each
    message carries a local "HH:MM". The local-UTC offset gives the seed message's UTC time.
    Falls back to `finished_at` when any of these is missing or unparseable.
    """
    try:
        local_end = datetime.strptime(f"{env['date']} {env['time']}", "%d/%m/%Y %H:%M:%S")
        seed = next(m for m in messages if m.get("sender") == "user")
        hour, minute = (int(x) for x in str(seed["time"]).split(":")[:2])
        quarter = timedelta(minutes=15)
        offset = round((local_end - finished_at) / quarter) * quarter
        local_start = local_end.replace(hour=hour, minute=minute, second=0)
        if local_start > local_end:
            local_start -= timedelta(days=1)
        return local_start - offset
    except (KeyError, ValueError, TypeError, StopIteration):
        return finished_at


def _error_kinds(stats: dict, by_name: dict[str, str]) -> dict[str, str]:
    """agent_id -> 'permanent' | 'transient' from stats.agentsWhoErrored (platform's split)."""
    out: dict[str, str] = {}
    errored = stats.get("agentsWhoErrored")
    if isinstance(errored, dict):
        for kind in ("transient", "permanent"):  # permanent wins, as on the platform
            for name in errored.get(kind) or []:
                if name in by_name:
                    out[by_name[name]] = kind
    return out


def _file_order(path: Path) -> tuple:
    m = RUN_FILE.match(path.name)
    assert m is not None
    series = m.group("series")
    natural = tuple(int(p) if p.isdigit() else p for p in re.split(r"(\d+)", series) if p)
    return (tuple((0, x) if isinstance(x, int) else (1, x) for x in natural), int(m.group("num")),
            str(path))

"""`sociolab export --format inspect`: the store as Inspect AI `.eval` logs, for `inspect view`.

One log per suite and series (a condition is what Inspect calls a task run: its samples share a
protocol). A sample is one run, except for the sandboxed-workspace kinds (`EPISODE_KINDS`), where
each agent works its own copy of the task alone: there a sample is one agent's episode (run x
agent, as `sociolab samples` has it), so that each sample has one model, as Inspect's do.

In a sample, the conversation is in order: the user's messages (the seed or the task) as user
messages, each agent's as assistant messages with its model and, in `metadata`, the speaker
(agent id, the name peers saw, round, turn, errors) and its judge codes; tool calls are attached to
the message that made them and followed by their results. Scores: each outcome metric (per agent,
a dict keyed by agent id, in a run sample) and, per codebook flag, the share of the sample's coded
messages that the judges' intersection marks true (the study's rule; per judge in the metadata).
Model usage is the sample's calls per model, agents' and judges'. Everything is built with
inspect_ai's own log classes and written by its `write_eval_log`.
"""

from __future__ import annotations

import hashlib
import json
import re
import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from statistics import fmean
from typing import TYPE_CHECKING, Any, Iterable

import duckdb

from sociolab.base.errors import UserError
from sociolab.export import fresh_file, open_source, target_folder
from sociolab.orchestrator.store import SCHEMA_VERSION

if TYPE_CHECKING:
    from inspect_ai.log import EvalLog, EvalSample
    from inspect_ai.model import ChatMessage, ModelUsage
    from inspect_ai.scorer import Score

# Kinds whose agents each work the task alone: a sample per agent episode.
EPISODE_KINDS = frozenset({"peer_preservation", "instrumental"})
INSTALL_HINT = "pip install 'sociolab[inspect]'"


def require_inspect() -> None:
    """inspect_ai is an optional dependency: say how to get it, in one line."""
    try:
        import inspect_ai.log  # noqa: F401
    except ImportError:
        raise UserError(f"--format inspect needs inspect_ai, which is not installed: {INSTALL_HINT}") from None


@dataclass(frozen=True)
class Group:
    """The runs of one log: a suite and one of its series (None for a single-condition file)."""

    suite: str
    series: str | None

    @property
    def task_id(self) -> str:
        """Stable across exports, distinct for every suite and series."""
        return hashlib.sha256(json.dumps([self.suite, self.series]).encode()).hexdigest()[:22]

    def file_name(self, taken: set[str]) -> str:
        """`<suite>_<series>.eval` (`_all` without series), made safe for file systems; a name
        that two groups would share after that gets the task id's start."""
        safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", f"{self.suite}_{self.series or 'all'}")
        return f"{safe}.eval" if f"{safe}.eval" not in taken else f"{safe}-{self.task_id[:8]}.eval"


def groups(con: duckdb.DuckDBPyConnection) -> list[Group]:
    rows = con.execute("SELECT DISTINCT suite, series FROM runs ORDER BY suite, series NULLS FIRST").fetchall()
    return [Group(suite, series) for suite, series in rows]


def export_inspect(db: str | Path, to: str | Path, overwrite: bool = False) -> list[tuple[Path, int]]:
    """Write one `.eval` log per suite and series of `db` into the folder `to` (checked as the
    table export checks it); returns (path, samples) per log."""
    require_inspect()
    from inspect_ai.log import write_eval_log

    folder = target_folder(to, overwrite)
    with open_source(db) as store:
        version = store.schema_version()
        if version != SCHEMA_VERSION:
            raise UserError(f"this store has schema v{version}; --format inspect reads v{SCHEMA_VERSION}: open it "
                            "once with this sociolab to migrate it (e.g. sociolab sql 'SELECT 1' --db FILE), or "
                            "export its tables with --format parquet", file=db)
        folder.mkdir(exist_ok=True)
        written: list[tuple[Path, int]] = []
        export_id = uuid.uuid4().hex[:22]  # one Inspect "run" per export: its logs are grouped together
        for group in groups(store.con):
            log = eval_log(store.con, group, export_id)
            path = fresh_file(folder, group.file_name({p.name for p, _ in written}), Path(db))
            write_eval_log(log, str(path), format="eval")
            written.append((path, len(log.samples or [])))
    return written


# ---- reading one group ---------------------------------------------------------------------

RUNS = """SELECT run_id, kind, status, repeat, seed, factors::VARCHAR, started_at, finished_at, stop_reason
            FROM runs WHERE suite = ? AND series IS NOT DISTINCT FROM ? ORDER BY run_id"""
IN_GROUP = "run_id IN (SELECT run_id FROM runs WHERE suite = ? AND series IS NOT DISTINCT FROM ?)"
AGENTS = f"""SELECT run_id, agent_id, name, model, system_prompt, status, errored_round
               FROM agents WHERE {IN_GROUP} ORDER BY run_id, position"""
MESSAGES = f"""SELECT run_id, message_id, seq, round, turn, sender, sender_name, content, is_error, error,
                      reasoning FROM messages WHERE {IN_GROUP} ORDER BY run_id, seq"""
TOOLS = f"""SELECT run_id, message_id, seq, tool, arguments::VARCHAR, result, is_error
              FROM tool_calls WHERE {IN_GROUP} ORDER BY run_id, seq"""
CODES = f"""SELECT c.run_id, c.message_id, cb.name, c.flag, c.judge, c.value, c.status
              FROM codes c JOIN codebooks cb USING (codebook_id) WHERE c.{IN_GROUP}
             ORDER BY c.message_id, cb.name, c.flag, c.judge"""
OUTCOMES = f"""SELECT run_id, agent_id, metric, value, detail::VARCHAR FROM outcomes WHERE {IN_GROUP}
                ORDER BY run_id, agent_id NULLS FIRST, metric"""
CREDITS = f"""SELECT DISTINCT json_extract_string(config, '$.imported.credit') AS credit FROM runs
               WHERE {IN_GROUP} AND credit IS NOT NULL ORDER BY 1"""
USAGE = f"""SELECT l.run_id, coalesce(l.agent_id, m.sender), l.model, sum(l.prompt_tokens), sum(l.completion_tokens),
                   CASE WHEN count(*) = count(l.cost_usd) THEN sum(l.cost_usd) END
              FROM llm_calls l LEFT JOIN messages m USING (message_id)
             WHERE l.{IN_GROUP} GROUP BY ALL ORDER BY ALL"""


@dataclass
class GroupData:
    """Every row of a group's runs, by run: read in eight queries per log, not per run."""

    runs: list[tuple]
    agents: dict[str, list[tuple]]
    messages: dict[str, list[tuple]]
    tools: dict[str, list[tuple]]
    codes: dict[str, list[tuple]]
    outcomes: dict[str, list[tuple]]
    usage: dict[str, list[tuple]]
    credits: list[str]  # the credit lines of imported study data, to pass on with them


def by_run(rows: Iterable[tuple]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        out[row[0]].append(row)
    return out


def read_group(con: duckdb.DuckDBPyConnection, group: Group) -> GroupData:
    key = [group.suite, group.series]

    def rows(sql: str) -> dict[str, list[tuple]]:
        return by_run(con.execute(sql, key).fetchall())

    return GroupData(con.execute(RUNS, key).fetchall(), rows(AGENTS), rows(MESSAGES), rows(TOOLS), rows(CODES),
                     rows(OUTCOMES), rows(USAGE), [c for (c,) in con.execute(CREDITS, key).fetchall()])


# ---- building the log ----------------------------------------------------------------------

def eval_log(con: duckdb.DuckDBPyConnection, group: Group, export_id: str) -> "EvalLog":
    from inspect_ai.log import EvalConfig, EvalDataset, EvalLog, EvalSpec, EvalStats

    from sociolab import __version__

    data = read_group(con, group)
    samples = [s for run in data.runs for s in run_samples(run, data)]
    models = sorted({a[3] for agents in data.agents.values() for a in agents if a[3]})
    started = [r[6] for r in data.runs if r[6] is not None]
    finished = [r[7] for r in data.runs if r[7] is not None]
    created = iso(min(started)) if started else datetime.now(timezone.utc).isoformat()
    spec = EvalSpec(created=created, run_id=export_id, task=group.suite, task_id=group.task_id,
                    task_args={"series": group.series} if group.series else {},
                    dataset=EvalDataset(name=group.suite, samples=len(samples), sample_ids=[s.id for s in samples]),
                    model=models[0] if len(models) == 1 else f"sociolab/{len(models)}-models",
                    config=EvalConfig(), packages={"sociolab": __version__},
                    metadata={"source": "sociolab", "series": group.series, "models": models,
                              "kinds": sorted({r[1] for r in data.runs}), "credit": data.credits})
    stats = EvalStats(started_at=created, completed_at=iso(max(finished)) if finished else "",
                      model_usage=summed_usage(s.model_usage for s in samples))
    done = all(r[2] in ("completed", "stopped") for r in data.runs)
    return EvalLog(eval=spec, status="success" if done else "started", stats=stats,
                   results=results(samples), samples=samples)


def iso(value: datetime) -> str:
    """Stored times are naive UTC."""
    return value.replace(tzinfo=timezone.utc).isoformat()


def run_samples(run: tuple, data: GroupData) -> list["EvalSample"]:
    """The samples of one run: the whole run, or one per agent for an episode kind."""
    run_id, kind = run[0], run[1]
    agents = data.agents.get(run_id, [])
    if kind not in EPISODE_KINDS:
        return [sample(run, data, agents, f"{run_id}")]
    return [sample(run, data, [agent], f"{run_id}#{agent[1]}") for agent in agents]


def sample(run: tuple, data: GroupData, agents: list[tuple], sample_id: str) -> "EvalSample":
    """One sample from the rows of `agents` in `run` (all of them for a run sample)."""
    from inspect_ai.log import EvalSample

    run_id, kind, status, repeat, seed, factors, started, finished, stop_reason = run
    episode = kind in EPISODE_KINDS
    ids = {a[1] for a in agents}
    models = {a[1]: a[3] for a in agents}
    messages = data.messages.get(run_id, [])
    if episode:
        messages = episode_messages(messages, ids)
    codes = by_message(data.codes.get(run_id, []))
    chat = conversation(messages, models, data.tools.get(run_id, []), codes, agents[0][4] if episode else "")
    first_user = next((m[7] for m in messages if m[5] == "user"), "")
    usage = [u for u in data.usage.get(run_id, []) if not episode or u[1] in ids]
    outcomes = [o for o in data.outcomes.get(run_id, []) if not episode or o[1] in ids]
    return EvalSample(
        id=sample_id, epoch=1, input=first_user or "", target="", messages=chat,
        scores={**outcome_scores(outcomes, episode), **code_scores([m[1] for m in messages], codes)},
        model_usage=model_usage(usage),
        metadata={"run_id": run_id, "kind": kind, "status": status, "stop_reason": stop_reason,
                  "repeat": repeat, "seed": seed, "factors": json.loads(factors) if factors else None,
                  "agents": [{"agent_id": a[1], "name": a[2], "model": a[3], "status": a[5],
                              "errored_round": a[6]} for a in agents]},
        started_at=iso(started) if started else None, completed_at=iso(finished) if finished else None,
        total_time=(finished - started).total_seconds() if started and finished else None)


def episode_messages(messages: list[tuple], agent_ids: set[str]) -> list[tuple]:
    """An agent's episode: its messages and the user messages given to it (a user message belongs
    to the agent who speaks next)."""
    out: list[tuple] = []
    pending: list[tuple] = []
    for m in messages:
        if m[5] == "user":
            pending.append(m)
            continue
        if m[5] in agent_ids:
            out += pending + [m]
        pending = []
    return out


def by_message(codes: list[tuple]) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = defaultdict(list)
    for row in codes:
        out[row[1]].append(row)
    return out


def conversation(messages: list[tuple], models: dict[str, str], tools: list[tuple],
                 codes: dict[str, list[tuple]], system_prompt: str) -> list["ChatMessage"]:
    """The chat as Inspect messages: speakers, codes and errors in metadata, tool calls attached."""
    from inspect_ai.model import ChatMessageAssistant, ChatMessageSystem, ChatMessageUser

    tools_of = by_message(tools)
    chat: list[ChatMessage] = [ChatMessageSystem(content=system_prompt)] if system_prompt else []
    for run_id, message_id, seq, rnd, turn, sender, name, content, is_error, error, reasoning in messages:
        meta: dict[str, Any] = {"message_id": message_id, "speaker": sender, "speaker_name": name,
                                "round": rnd, "turn": turn}
        if is_error:
            meta |= {"is_error": True, "error": error}
        if reasoning:
            meta["reasoning"] = reasoning
        if codes.get(message_id):
            meta["codes"] = message_codes(codes[message_id])
        if sender not in models:
            chat.append(ChatMessageUser(content=content or "", source="input", metadata=meta))
            continue
        calls = tools_of.get(message_id, [])
        chat.append(ChatMessageAssistant(content=content or "", model=models[sender], source="generate",
                                         metadata=meta, tool_calls=[tool_call(t) for t in calls] or None))
        chat += [tool_result(t) for t in calls]
    return chat


def tool_call(row: tuple) -> Any:
    from inspect_ai.tool import ToolCall

    arguments = json.loads(row[4]) if row[4] else {}
    return ToolCall(id=f"{row[1]}/{row[2]}", function=row[3],
                    arguments=arguments if isinstance(arguments, dict) else {"arguments": arguments})


def tool_result(row: tuple) -> Any:
    from inspect_ai.model import ChatMessageTool
    from inspect_ai.tool import ToolCallError

    _, message_id, seq, tool, _, result, is_error = row
    return ChatMessageTool(content=result or "", tool_call_id=f"{message_id}/{seq}", function=tool,
                           error=ToolCallError("unknown", result or "") if is_error else None)


def message_codes(rows: list[tuple]) -> dict[str, dict[str, Any]]:
    """{codebook/flag: {judge: true|false|"uncodable"}} for one message."""
    out: dict[str, dict[str, Any]] = defaultdict(dict)
    for _, _, codebook, flag, judge, value, status in rows:
        out[f"{codebook}/{flag}"][judge] = "uncodable" if status == "uncodable" else value
    return dict(out)


def code_scores(message_ids: list[str], codes: dict[str, list[tuple]]) -> dict[str, "Score"]:
    """Per codebook flag: the share of coded messages every coding judge marked true (the
    intersection rule, as `adjudicated_codes.by_intersection`); uncodable answers left out."""
    from inspect_ai.scorer import Score

    votes: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))  # flag -> message -> values
    judges: dict[str, dict[str, list[bool]]] = defaultdict(lambda: defaultdict(list))  # flag -> judge -> values
    for message_id in message_ids:
        for _, _, codebook, flag, judge, value, status in codes.get(message_id, []):
            if status != "uncodable" and value is not None:
                votes[f"{codebook}/{flag}"][message_id].append(bool(value))
                judges[f"{codebook}/{flag}"][judge].append(bool(value))
    return {flag: Score(value=fmean(all(v) for v in per_message.values()),
                        explanation=f"share of {len(per_message)} coded messages that every judge marked true",
                        metadata={"rule": "intersection", "messages": len(per_message),
                                  "per_judge": {j: fmean(v) for j, v in judges[flag].items()}})
            for flag, per_message in votes.items()}


def outcome_scores(rows: list[tuple], episode: bool) -> dict[str, "Score"]:
    """An outcome metric per score: its value, or (several agents in a run sample) a dict by agent.
    A missing value (NULL: e.g. an unparseable reply) is left out and said in the metadata."""
    from inspect_ai.scorer import Score

    by_metric: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        by_metric[row[2]].append(row)
    scores = {}
    for metric, found in by_metric.items():
        present = [r for r in found if r[3] is not None]
        missing = [r[1] for r in found if r[3] is None]
        if not present:
            continue
        details: Any = {r[1] or "run": json.loads(r[4]) for r in found if r[4]}
        if episode and len(found) == 1:
            details = json.loads(found[0][4]) if found[0][4] else None
        value: Any = present[0][3] if episode or (len(found) == 1 and found[0][1] is None) \
            else {r[1] or "run": r[3] for r in present}
        scores[metric] = Score(value=value, metadata={"detail": details, "missing": missing} if missing
                               else {"detail": details})
    return scores


def model_usage(rows: list[tuple]) -> dict[str, "ModelUsage"]:
    from inspect_ai.model import ModelUsage

    per_model: dict[str, list[tuple]] = defaultdict(list)
    for row in rows:
        per_model[row[2]].append(row)
    out = {}
    for model, found in per_model.items():
        prompt = sum(int(r[3] or 0) for r in found)
        completion = sum(int(r[4] or 0) for r in found)
        costs = [r[5] for r in found]
        out[model] = ModelUsage(input_tokens=prompt, output_tokens=completion, total_tokens=prompt + completion,
                                total_cost=None if any(c is None for c in costs) else float(sum(costs)))
    return out


def summed_usage(usages: Iterable[dict[str, "ModelUsage"]]) -> dict[str, "ModelUsage"]:
    from inspect_ai.model import ModelUsage

    out: dict[str, ModelUsage] = {}
    for usage in usages:
        for model, u in usage.items():
            t = out.get(model) or ModelUsage(total_cost=0.0)
            cost = None if t.total_cost is None or u.total_cost is None else t.total_cost + u.total_cost
            out[model] = ModelUsage(input_tokens=t.input_tokens + u.input_tokens,
                                    output_tokens=t.output_tokens + u.output_tokens,
                                    total_tokens=t.total_tokens + u.total_tokens, total_cost=cost)
    return out


def results(samples: list["EvalSample"]) -> Any:
    """Each score's mean over the samples (a dict-valued score: over every agent's value)."""
    from inspect_ai.log import EvalMetric, EvalResults, EvalScore

    values: dict[str, list[float]] = defaultdict(list)
    for s in samples:
        for name, score in (s.scores or {}).items():
            value = score.value
            values[name] += [float(v) for v in (value.values() if isinstance(value, dict) else [value])
                             if isinstance(v, (int, float))]
    scores = [EvalScore(name=name, scorer=name, scored_samples=sum(1 for s in samples if name in (s.scores or {})),
                        metrics={"mean": EvalMetric(name="mean", value=fmean(v))})
              for name, v in values.items() if v]
    return EvalResults(total_samples=len(samples), completed_samples=len(samples), scores=scores)

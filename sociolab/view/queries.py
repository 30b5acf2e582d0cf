"""The viewer's reads: every list is one paged SQL query over the store, never a whole table.

A store can hold millions of messages, so nothing here fetches more rows than a page shows:
runs are paged with LIMIT/OFFSET (runs are few next to messages), a conversation and a message
search page by keyset (`seq > after`, `message_id > after`), and the codes, tool calls and retries
shown beside a page's messages are fetched for exactly those messages. Text columns are cut
in SQL (`left(...)`) so one huge message or tool result cannot fill memory either.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Sequence

import duckdb

RUNS_PER_PAGE = 50
MESSAGES_PER_PAGE = 100
TEXT_LIMIT = 20_000  # characters of a message shown; the rest is noted, not sent
RESULT_LIMIT = 4_000  # characters of a tool result shown
SIDE_LIMIT = 500  # agents, events, outcomes of one run shown
FACET_LIMIT = 200  # values offered in a filter's drop-down
RULES = {"intersection": "by_intersection", "union": "by_union", "majority": "by_majority"}


@dataclass(frozen=True)
class RunFilter:
    """What the run list is narrowed to; empty strings mean no filter."""

    suite: str = ""
    series: str = ""
    model: str = ""
    status: str = ""
    kind: str = ""

    def where(self) -> tuple[str, list[Any]]:
        """The SQL condition over `runs r` and its parameters."""
        clauses, params = ["true"], []
        for column in ("suite", "series", "status", "kind"):
            value = getattr(self, column)
            if value:
                clauses.append(f"r.{column} = ?")
                params.append(value)
        if self.model:
            clauses.append("r.run_id IN (SELECT run_id FROM agents WHERE model = ? OR model_label = ?)")
            params += [self.model, self.model]
        return " AND ".join(clauses), params


@dataclass(frozen=True)
class RunRow:
    run_id: str
    suite: str | None
    series: str | None
    kind: str | None
    status: str | None
    stop_reason: str | None
    rounds_done: int | None
    rounds_planned: int | None
    started_at: Any
    models: str = ""
    messages: int = 0
    errors: int = 0


@dataclass(frozen=True)
class MessageFilter:
    """What a conversation or a message search is narrowed to."""

    text: str = ""  # case-insensitive substring of the content
    flag: str = ""  # adjudicated true under `rule`
    rule: str = "intersection"
    errors: bool = False  # failed calls only

    def where(self, run_id: str | None = None) -> tuple[str, list[Any]]:
        """The SQL condition over `messages m` and its parameters. Given the run, the flag's
        adjudicated codes are read for that run only, as the range of its message ids
        (`{run_id}#{seq}`, docs/schema.md): the view's run_id is an aggregate, so a filter on it
        would group every code first (1.4 s on 14M codes), while one on message_id, the view's
        grouping key, reaches the scan (0.04 s)."""
        clauses, params = ["true"], []
        if self.text:
            clauses.append("contains(lower(m.content), lower(?))")
            params.append(self.text)
        if self.flag:
            column = RULES[self.rule]
            in_run = "AND message_id >= ? AND message_id < ?" if run_id is not None else ""
            clauses.append(f"m.message_id IN (SELECT message_id FROM adjudicated_codes "
                           f"WHERE flag = ? AND {column} {in_run})")
            params += [self.flag, *([run_id + "#", run_id + "$"] if run_id is not None else [])]
        if self.errors:
            clauses.append("m.is_error")
        return " AND ".join(clauses), params


@dataclass
class Message:
    message_id: str
    run_id: str
    seq: int
    round: int | None
    turn: int | None
    sender: str
    sender_name: str
    content: str
    content_chars: int
    is_error: bool
    error: str | None
    reasoning: str | None
    attempts: int | None = None
    cached: bool = False
    codes: list["Code"] = field(default_factory=list)
    # (codebook_id, flag) -> adjudicated value by intersection, union, majority (RULES' order)
    adjudicated: dict[tuple[str, str], tuple[bool | None, ...]] = field(default_factory=dict)
    tools: list["ToolCall"] = field(default_factory=list)


@dataclass(frozen=True)
class Code:
    judge: str
    codebook: str
    flag: str
    value: bool | None
    level: str | None
    status: str | None
    rationale: str | None


@dataclass(frozen=True)
class ToolCall:
    seq: int
    step: int | None
    tool: str
    arguments: str
    result: str
    result_chars: int
    is_error: bool


def placeholders(values: Sequence[Any]) -> str:
    return ", ".join("?" for _ in values) or "NULL"


def literals(values: Sequence[str]) -> str:
    """Ids as SQL string literals: DuckDB pushes a literal IN list into the adjudicated_codes view's
    scan of the codes, where a parameter list is not pushed and the view would group every code."""
    return ", ".join("'" + str(v).replace("'", "''") + "'" for v in values) or "NULL"


def count_runs(con: duckdb.DuckDBPyConnection, filters: RunFilter) -> int:
    where, params = filters.where()
    return int(con.execute(f"SELECT count(*) FROM runs r WHERE {where}", params).fetchone()[0])  # type: ignore[index]


def runs_page(con: duckdb.DuckDBPyConnection, filters: RunFilter, offset: int,
              limit: int = RUNS_PER_PAGE) -> list[RunRow]:
    """One page of runs in run_id order, with their models and message counts (for these runs only)."""
    where, params = filters.where()
    rows = con.execute(f"""
        SELECT run_id, suite, series, kind, status, stop_reason, rounds_done, rounds_planned, started_at
          FROM runs r WHERE {where} ORDER BY run_id LIMIT ? OFFSET ?""", [*params, limit, offset]).fetchall()
    ids = [r[0] for r in rows]
    models = dict(con.execute(f"""
        SELECT run_id, string_agg(DISTINCT coalesce(model_label, model), ', ' ORDER BY coalesce(model_label, model))
          FROM agents WHERE run_id IN ({placeholders(ids)}) GROUP BY run_id""", ids).fetchall())
    counts = {r[0]: r[1:] for r in con.execute(f"""
        SELECT run_id, count(*), count(*) FILTER (WHERE is_error)
          FROM messages WHERE run_id IN ({placeholders(ids)}) GROUP BY run_id""", ids).fetchall()}
    names = ("run_id", "suite", "series", "kind", "status", "stop_reason", "rounds_done", "rounds_planned",
             "started_at")
    return [RunRow(**dict(zip(names, row)), models=models.get(row[0]) or "",
                   messages=counts.get(row[0], (0, 0))[0], errors=counts.get(row[0], (0, 0))[1]) for row in rows]


def facet(con: duckdb.DuckDBPyConnection, column: str) -> list[str]:
    """The values a run filter offers (at most FACET_LIMIT): suite, series, status, kind or model."""
    table = {"model": "agents", "suite": "runs", "series": "runs", "status": "runs", "kind": "runs"}[column]
    sql = f"SELECT DISTINCT {column} FROM {table} WHERE {column} IS NOT NULL ORDER BY 1 LIMIT ?"
    return [str(r[0]) for r in con.execute(sql, [FACET_LIMIT]).fetchall()]


def flags(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The flags judges coded, from the codebooks (small) rather than the codes (large)."""
    rows = con.execute("""
        SELECT DISTINCT f->>'name' AS flag FROM codebooks, unnest(json_extract(content, '$.flags[*]')) t(f)
         WHERE flag IS NOT NULL ORDER BY 1 LIMIT ?""", [FACET_LIMIT]).fetchall()
    return [str(r[0]) for r in rows]


def run_header(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any] | None:
    """The run's row, or None when there is no such run."""
    cursor = con.execute("""
        SELECT run_id, source, suite, series, repeat, seed, kind, status, stop_reason, rounds_planned,
               rounds_done, started_at, finished_at, factors::VARCHAR AS factors
          FROM runs WHERE run_id = ?""", [run_id])
    row = cursor.fetchone()
    if row is None:
        return None
    return dict(zip([d[0] for d in cursor.description], row))


def agents(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple]:
    return con.execute("""
        SELECT position, agent_id, name, model, model_label, status, errored_round
          FROM agents WHERE run_id = ? ORDER BY position LIMIT ?""", [run_id, SIDE_LIMIT]).fetchall()


def events(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple]:
    """The run's events (crashes, dropped agents, stops, internal errors), in order."""
    return con.execute("""
        SELECT round, kind, agent_id, left(detail::VARCHAR, 2000) FROM events
         WHERE run_id = ? ORDER BY logged_at, round LIMIT ?""", [run_id, SIDE_LIMIT]).fetchall()


def outcomes(con: duckdb.DuckDBPyConnection, run_id: str) -> list[tuple]:
    return con.execute("""
        SELECT agent_id, metric, value, left(detail::VARCHAR, 2000) FROM outcomes
         WHERE run_id = ? ORDER BY agent_id, metric LIMIT ?""", [run_id, SIDE_LIMIT]).fetchall()


MESSAGE_COLUMNS = f"""m.message_id, m.run_id, m.seq, m.round, m.turn, m.sender, m.sender_name,
    left(m.content, {TEXT_LIMIT}), length(m.content), m.is_error, m.error, left(m.reasoning, {TEXT_LIMIT})"""


def conversation_page(con: duckdb.DuckDBPyConnection, run_id: str, filters: MessageFilter, after: int,
                      limit: int = MESSAGES_PER_PAGE) -> list[Message]:
    """Up to `limit` + 1 messages of a run after seq `after` (the extra one says a next page exists)."""
    where, params = filters.where(run_id)
    rows = con.execute(f"""
        SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.run_id = ? AND m.seq > ? AND {where} ORDER BY m.seq LIMIT ?""",
                       [run_id, after, *params, limit + 1]).fetchall()
    return with_details(con, [Message(*r) for r in rows])


def search_page(con: duckdb.DuckDBPyConnection, filters: MessageFilter, runs: RunFilter, after: str,
                limit: int = MESSAGES_PER_PAGE) -> list[Message]:
    """Messages of any run matching the filters, in message_id order after `after` (keyset)."""
    where, params = filters.where()
    run_where, run_params = runs.where()
    rows = con.execute(f"""
        SELECT {MESSAGE_COLUMNS} FROM messages m
         WHERE m.message_id > ? AND {where}
           AND m.run_id IN (SELECT r.run_id FROM runs r WHERE {run_where})
         ORDER BY m.message_id LIMIT ?""", [after, *params, *run_params, limit + 1]).fetchall()
    return with_details(con, [Message(*r) for r in rows])


def with_details(con: duckdb.DuckDBPyConnection, messages: list[Message]) -> list[Message]:
    """Attach the judges' codes, the adjudicated values, tool calls and retries of these messages."""
    if not messages:
        return messages
    by_id = {m.message_id: m for m in messages}
    ids, run_ids = list(by_id), sorted({m.run_id for m in messages})
    scope = f"run_id IN ({literals(run_ids)}) AND message_id IN ({literals(ids)})"
    for message_id, *code in con.execute(f"""
            SELECT message_id, judge, codebook_id, flag, value, level, status, left(rationale, 2000)
              FROM codes WHERE {scope} ORDER BY judge, flag""").fetchall():
        by_id[message_id].codes.append(Code(*code))
    for message_id, codebook, flag, *values in con.execute(f"""
            SELECT message_id, codebook_id, flag, by_intersection, by_union, by_majority
              FROM adjudicated_codes WHERE {scope}""").fetchall():
        by_id[message_id].adjudicated[(codebook, flag)] = tuple(values)
    for message_id, *call in con.execute(f"""
            SELECT message_id, seq, step, tool, left(arguments::VARCHAR, {RESULT_LIMIT}),
                   left(result, {RESULT_LIMIT}), length(result), is_error
              FROM tool_calls WHERE {scope} ORDER BY seq""").fetchall():
        by_id[message_id].tools.append(ToolCall(call[0], call[1], call[2], call[3], call[4] or "",
                                                call[5] or 0, bool(call[6])))
    for message_id, attempts, cached in con.execute(f"""
            SELECT message_id, max(attempts), bool_or(cached) FROM llm_calls
             WHERE purpose = 'agent' AND {scope} GROUP BY message_id""").fetchall():
        by_id[message_id].attempts, by_id[message_id].cached = attempts, bool(cached)
    return messages


def message_location(con: duckdb.DuckDBPyConnection, message_id: str) -> tuple[str, int] | None:
    """(run_id, seq) of a message, for links that name only the message."""
    row = con.execute("SELECT run_id, seq FROM messages WHERE message_id = ?", [message_id]).fetchone()
    return (str(row[0]), int(row[1])) if row else None

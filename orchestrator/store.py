"""The DuckDB store: the only module that writes SQL DDL.

One file holds runs, agents, messages, LLM calls, events and the response cache. The schema is
versioned: `MIGRATIONS[i]` brings a file from version i to i+1, and opening a file applies the
missing ones. Writers hand over whole `Batch`es (one round of one run), each written in a single
transaction, so a killed process loses at most the round in flight. DuckDB calls block, so
async callers go through `Store.write`, which runs them on one dedicated thread.

Rows are typed objects, one class per table (orchestrator/rows.py); they become tuples only in
`insert_rows`. Every transaction goes through `Store.transaction`. Modules that read the tables
for their own bookkeeping (the runner, the dry run, the judges) call the named readers of `Store`,
so the SQL over each table lives here with its DDL (docs/schema.md, "Writing and reading").
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import shutil
import tempfile
import uuid
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, NamedTuple, Sequence, TypeVar

import duckdb

from sociolab.base.errors import UserError, first_line

from . import shards
from .rows import COLUMNS, ROW_CLASS, VALUES, AgentRow, EventRow, HumanCodeRow, Row, RunRow, row_of

log = logging.getLogger(__name__)

DEFAULT_DB = "sociolab.duckdb"

T = TypeVar("T")

MIGRATIONS: list[str] = [
    # v1: the core of issue 2.
    """
    CREATE TABLE runs (
        run_id          VARCHAR PRIMARY KEY,
        source          VARCHAR NOT NULL,          -- 'sociolab' or an importer, e.g. 'warroom'
        suite           VARCHAR,
        series          VARCHAR,
        repeat          INTEGER,
        seed            BIGINT,
        kind            VARCHAR NOT NULL,          -- scenario kind, e.g. 'discussion'
        config          JSON,                      -- the resolved scenario config of this run
        config_hash     VARCHAR,
        status          VARCHAR NOT NULL,          -- running | completed | stopped | failed
        stop_reason     VARCHAR,
        rounds_planned  INTEGER,
        rounds_done     INTEGER NOT NULL DEFAULT 0,
        started_at      TIMESTAMP,
        finished_at     TIMESTAMP
    );
    CREATE TABLE agents (
        run_id          VARCHAR NOT NULL,
        agent_id        VARCHAR NOT NULL,          -- stable key within the run, e.g. 'llama'
        position        INTEGER NOT NULL,          -- 1-based position in the roster
        name            VARCHAR NOT NULL,          -- the name other agents see
        persona         VARCHAR,                   -- persona key in the library
        model           VARCHAR NOT NULL,          -- model actually called
        model_label     VARCHAR,                   -- human name of the model, e.g. 'LLaMA 3.3 70B'
        system_prompt   VARCHAR,
        status          VARCHAR NOT NULL DEFAULT 'active',  -- active | errored
        errored_round   INTEGER,
        PRIMARY KEY (run_id, agent_id)
    );
    CREATE TABLE messages (
        message_id      VARCHAR PRIMARY KEY,       -- '{run_id}#{seq}'
        run_id          VARCHAR NOT NULL,
        seq             INTEGER NOT NULL,          -- position in the conversation (by finish time)
        round           INTEGER,                   -- 0-based; NULL for the seed message
        turn            INTEGER,                   -- speaking order within the round, 0-based
        sender          VARCHAR NOT NULL,          -- agent_id, 'user' or 'system'
        sender_name     VARCHAR,
        content         VARCHAR NOT NULL,
        context_size    INTEGER,                   -- messages visible to the sender when called
        is_error        BOOLEAN NOT NULL DEFAULT FALSE,
        error           VARCHAR,
        started_s       DOUBLE,                    -- seconds since the run started (virtual for sim)
        finished_s      DOUBLE
    );
    CREATE TABLE llm_calls (
        run_id          VARCHAR,
        message_id      VARCHAR,
        agent_id        VARCHAR,
        purpose         VARCHAR NOT NULL,          -- 'agent' | 'judge'
        model           VARCHAR NOT NULL,
        started_at      TIMESTAMP,
        latency_ms      DOUBLE,
        prompt_tokens   INTEGER,
        completion_tokens INTEGER,
        cost_usd        DOUBLE NOT NULL DEFAULT 0,
        attempts        INTEGER NOT NULL,
        cached          BOOLEAN NOT NULL DEFAULT FALSE,
        error_type      VARCHAR,
        error           VARCHAR
    );
    CREATE TABLE events (
        run_id          VARCHAR NOT NULL,
        round           INTEGER,
        kind            VARCHAR NOT NULL,          -- agent_errored, agent_dropped, run_stopped, ...
        agent_id        VARCHAR,
        detail          JSON,
        logged_at       TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE llm_cache (
        cache_key       VARCHAR PRIMARY KEY,
        model           VARCHAR NOT NULL,
        response        JSON NOT NULL,
        created_at      TIMESTAMP DEFAULT current_timestamp
    );
    CREATE INDEX messages_run ON messages(run_id);
    """,
    # v2: judges (issue 3). Codes are long: one row per message x judge x flag.
    """
    CREATE TABLE codebooks (
        codebook_id     VARCHAR PRIMARY KEY,       -- '{name}@{content hash[:12]}'
        name            VARCHAR NOT NULL,
        content         JSON NOT NULL,
        created_at      TIMESTAMP DEFAULT current_timestamp
    );
    CREATE TABLE codes (
        message_id      VARCHAR NOT NULL,
        run_id          VARCHAR,
        judge           VARCHAR NOT NULL,          -- judge model id
        codebook_id     VARCHAR NOT NULL,
        flag            VARCHAR NOT NULL,
        value           BOOLEAN,                   -- NULL when status = 'uncodable'
        level           VARCHAR,                   -- graded sub-label, e.g. comp: L1 | L2 | L3
        status          VARCHAR NOT NULL,          -- coded | uncodable
        rationale       VARCHAR,
        raw_reply       VARCHAR,                   -- kept for uncodable replies
        coded_at        TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (message_id, judge, codebook_id, flag)
    );
    CREATE TABLE human_codes (
        message_id      VARCHAR NOT NULL,
        coder           VARCHAR NOT NULL,
        flag            VARCHAR NOT NULL,
        value           BOOLEAN NOT NULL,
        level           VARCHAR,
        source          VARCHAR,                   -- file it was imported from
        imported_at     TIMESTAMP DEFAULT current_timestamp,
        PRIMARY KEY (message_id, coder, flag)
    );
    """,
    # v3: adjudication and judge agreement as views (issue 3).
    """
    CREATE VIEW adjudicated_codes AS
    SELECT message_id,
           any_value(run_id)                                         AS run_id,
           codebook_id,
           flag,
           count(*) FILTER (WHERE status = 'coded')                  AS judges_coded,
           count(*) FILTER (WHERE status = 'uncodable')              AS judges_uncodable,
           bool_and(value) FILTER (WHERE status = 'coded')           AS by_intersection,
           bool_or(value) FILTER (WHERE status = 'coded')            AS by_union,
           2 * count(*) FILTER (WHERE status = 'coded' AND value)
             > count(*) FILTER (WHERE status = 'coded')              AS by_majority,
           min(level) FILTER (WHERE status = 'coded' AND value)      AS level_min,
           max(level) FILTER (WHERE status = 'coded' AND value)      AS level_max
      FROM codes
     GROUP BY message_id, codebook_id, flag;

    CREATE VIEW judge_agreement AS
    WITH cells AS (
        SELECT a.codebook_id, a.flag, a.judge AS judge_a, b.judge AS judge_b,
               count(*)::DOUBLE                                        AS n,
               count(*) FILTER (WHERE a.value AND b.value)::DOUBLE         AS tt,
               count(*) FILTER (WHERE a.value AND NOT b.value)::DOUBLE     AS tf,
               count(*) FILTER (WHERE NOT a.value AND b.value)::DOUBLE     AS ft,
               count(*) FILTER (WHERE NOT a.value AND NOT b.value)::DOUBLE AS ff
          FROM codes a
          JOIN codes b ON a.message_id = b.message_id AND a.codebook_id = b.codebook_id
                      AND a.flag = b.flag AND a.judge < b.judge
         WHERE a.status = 'coded' AND b.status = 'coded'
         GROUP BY ALL),
    chance AS (
        SELECT *, (tt + ff) / n AS po,
               ((tt + tf) * (tt + ft) + (ff + ft) * (ff + tf)) / (n * n) AS pe
          FROM cells)
    SELECT codebook_id, flag, judge_a, judge_b, n::BIGINT AS n, tt::BIGINT AS tt, tf::BIGINT AS tf,
           ft::BIGINT AS ft, ff::BIGINT AS ff, po AS percent_agreement,
           (tt + tf) / n AS prevalence_a, (tt + ft) / n AS prevalence_b,
           CASE WHEN pe < 1 THEN (po - pe) / (1 - pe) END AS kappa   -- NULL where undefined
      FROM chance;
    """,
    # v4: agentic and game scenarios (issue 5).
    """
    ALTER TABLE runs ADD COLUMN factors JSON;      -- factor levels of a sample (variant, condition, ...)
    CREATE TABLE tool_calls (
        run_id          VARCHAR NOT NULL,
        seq             INTEGER NOT NULL,          -- order of the call in the run
        agent_id        VARCHAR,
        message_id      VARCHAR,                   -- the assistant message that asked for it
        step            INTEGER,                   -- agent-loop step
        tool            VARCHAR NOT NULL,
        arguments       JSON,
        result          VARCHAR,
        is_error        BOOLEAN NOT NULL DEFAULT FALSE,
        PRIMARY KEY (run_id, seq)
    );
    CREATE TABLE outcomes (
        run_id          VARCHAR NOT NULL,
        agent_id        VARCHAR NOT NULL,          -- '' for run-level outcomes
        metric          VARCHAR NOT NULL,          -- e.g. shortcut_used, cooperation_rate
        value           DOUBLE,                    -- NULL = missing (e.g. unparseable reply)
        detail          JSON,
        PRIMARY KEY (run_id, agent_id, metric)
    );
    """,
    # v5: real providers first-class (issue 8).
    """
    ALTER TABLE llm_calls ALTER COLUMN cost_usd DROP NOT NULL;   -- NULL = price unknown, never 0
    ALTER TABLE llm_calls ALTER COLUMN cost_usd DROP DEFAULT;
    ALTER TABLE llm_calls ADD COLUMN provider VARCHAR;           -- 'sim' | 'litellm'
    ALTER TABLE llm_calls ADD COLUMN dropped_params JSON;        -- asked for, not supported, not sent
    ALTER TABLE messages ADD COLUMN reasoning VARCHAR;           -- reasoning text, never shown to peers
    ALTER TABLE agents ADD COLUMN provider VARCHAR;              -- provider that serves the agent's model
    -- earlier files: who served whom, as far as the model names tell (this version's naming)
    UPDATE agents SET provider = CASE WHEN model LIKE 'sim/%' THEN 'sim'
                                      WHEN model LIKE 'strategy/%' THEN 'scripted' ELSE 'litellm' END
     WHERE run_id IN (SELECT run_id FROM runs WHERE source = 'sociolab');
    """,
    # v6: population scenarios (issue 16): one narrow row per action, written column-wise in bulk.
    """
    CREATE TABLE action_kinds (
        code            UTINYINT PRIMARY KEY,
        name            VARCHAR NOT NULL
    );
    INSERT INTO action_kinds VALUES (0, 'post'), (1, 'reply'), (2, 'react'), (3, 'follow'), (4, 'repost'),
        (5, 'task'), (6, 'contribute'), (7, 'resolve'), (8, 'solo_ok'), (9, 'solo_fail'), (10, 'invalid');
    CREATE TABLE actions (
        run_id          VARCHAR NOT NULL,
        tick            INTEGER NOT NULL,          -- the tick (0..ticks-1)
        agent           INTEGER NOT NULL,          -- the acting population agent (0..size-1)
        kind            UTINYINT NOT NULL,         -- action_kinds.code
        target          INTEGER,                   -- the agent acted on (followed, replied to, reposted from)
        item            BIGINT                     -- the post or task (a repost: the cascade's root post)
    );
    CREATE VIEW action_names AS
        SELECT a.*, k.name AS kind_name FROM actions a JOIN action_kinds k ON k.code = a.kind;
    """,
]

SCHEMA_VERSION = len(MIGRATIONS)


def tables_up_to(version: int) -> set[str]:
    """The tables a sociolab file of schema `version` holds (none is ever dropped): how a file
    that merely has a `schema_version` table of its own is told apart from a sociolab store."""
    return {name.lower() for sql in MIGRATIONS[:version] for name in re.findall(r"CREATE TABLE (\w+)", sql)}

RUN_TABLES = ("codes", "tool_calls", "outcomes", "messages", "llm_calls", "events", "agents", "actions", "runs")


@dataclass
class Batch:
    """Rows to write in one transaction: typically one round of one run.

    `rows` holds row objects (orchestrator/rows.py) by class, i.e. by table. `updates` set columns
    of existing rows after the new rows are in (e.g. a run's rounds_done, an agent's status), so
    progress and content are committed together and can never disagree.
    """

    rows: dict[type[Row], list[Row]] = field(default_factory=dict)
    updates: list[tuple[str, dict[str, Any], dict[str, Any]]] = field(default_factory=list)
    # bulk rows as whole columns (table, {column: numpy array or list}), for tables written at a
    # scale where a row object per row would cost more than the write (the population's actions)
    columns: list[tuple[str, dict[str, Any]]] = field(default_factory=list)

    def add(self, row: Row) -> None:
        """Add a row; its class says which table it goes to."""
        self.rows.setdefault(type(row), []).append(row)

    def update(self, table: str, where: dict[str, Any], **values: Any) -> None:
        self.updates.append((table, where, values))

    @classmethod
    def merged(cls, batches: list["Batch"]) -> "Batch":
        out = cls()
        for batch in batches:
            for row_class, rows in batch.rows.items():
                out.rows.setdefault(row_class, []).extend(rows)
            out.updates.extend(batch.updates)
            out.columns.extend(batch.columns)
        return out

    def folded(self) -> "Batch":
        """The same writes with every update of a row this batch inserts (addressed by its
        primary key, `Row.KEY`) applied to that row before the insert, in order, so later values
        win as they would in the UPDATE. A run that starts and finishes in one batch (a short
        sim run) is then inserted with its final status: one statement less, same rows. Updates
        of rows already stored are kept."""
        by_key: dict[tuple[str, tuple[Any, ...]], tuple[list[Row], int]] = {}
        for row_class, rows in self.rows.items():
            if row_class.KEY:
                for i, row in enumerate(rows):
                    by_key[row_class.TABLE, tuple(getattr(row, k) for k in row_class.KEY)] = (rows, i)
        if not by_key:
            return self
        out = Batch(rows={row_class: list(rows) for row_class, rows in self.rows.items()}, columns=self.columns)
        for table, where, values in self.updates:
            keyed = table in ROW_CLASS and tuple(where) == ROW_CLASS[table].KEY
            target = by_key.get((table, tuple(where.values()))) if keyed else None
            if target is None:
                out.updates.append((table, where, values))
                continue
            rows, i = target
            copy = out.rows[type(rows[i])]
            copy[i] = replace(copy[i], **values)
        return out

    def __len__(self) -> int:
        return sum(len(r) for r in self.rows.values()) + sum(block_length(c) for _, c in self.columns)


class ModelCalls(NamedTuple):
    """Successful calls to one model and the tokens they used."""

    model: str
    calls: int
    prompt_tokens: int
    completion_tokens: int


class ConversationMessage(NamedTuple):
    """What a judge is shown of a stored message (and of the messages before it)."""

    run_id: str
    message_id: str
    round: int | None
    sender: str
    sender_name: str | None
    content: str
    is_error: bool


class SampledMessage(NamedTuple):
    """A message drawn for human coding, with the stratum it was drawn from."""

    message_id: str
    stratum: str
    run_id: str
    round: int | None
    sender_name: str | None
    content: str


class StoredMessage(NamedTuple):
    """A committed message of a run, as a resumed scenario rebuilds its conversation from it."""

    seq: int
    round: int | None
    turn: int | None
    sender: str
    sender_name: str | None
    content: str
    context_size: int | None
    is_error: bool
    error: str | None
    started_s: float | None
    finished_s: float | None


class StoredAgent(NamedTuple):
    """A committed agent's state: its status and the round of its first failed call."""

    agent_id: str
    status: str | None
    errored_round: int | None


class StoredEvent(NamedTuple):
    """A committed event of a run (game rounds, invalid moves, ...), for a resumed scenario."""

    round: int | None
    kind: str
    agent_id: str | None
    detail: dict[str, Any]


@dataclass(frozen=True)
class RunSoFar:
    """What an unfinished run has committed: `rounds_done` rounds (each committed atomically with
    its progress counter), its messages in seq order, its agents, and the next free seq."""

    run_id: str
    rounds_done: int
    messages: list[StoredMessage]
    agents: list[StoredAgent]
    events: list[StoredEvent] = field(default_factory=list)

    @property
    def next_seq(self) -> int:
        return max((m.seq for m in self.messages), default=-1) + 1


# How `sample_messages` can stratify: name -> SQL over messages m, runs r and agents a.
SAMPLE_STRATA = {"series": "coalesce(r.series, r.suite, '')", "run": "m.run_id", "agent": "m.sender_name",
                 "model": "coalesce(a.model_label, a.model)", "round": "m.round::VARCHAR"}


def spill_path() -> str:
    """A new, unpredictable folder name in the system's temp directory (not created here)."""
    return str(Path(tempfile.gettempdir()) / f"sociolab-spill-{uuid.uuid4().hex}")


class Store:
    """A DuckDB file, migrated on open. Use `Store.open` for writing, `open_read_only` for queries.

    Every other module reads sociolab's tables for its own bookkeeping through the named readers
    below, so the SQL over a table lives here, next to its DDL; analysis and `sociolab sql`, whose
    job is SQL over the store, use `con` directly.
    """

    def __init__(self, con: duckdb.DuckDBPyConnection, path: str):
        self.con = con
        self.path = path
        self._executor: ThreadPoolExecutor | None = None
        self._queue: list[tuple[Batch, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None
        self._holding = False  # see hold_writes
        self._timer: asyncio.TimerHandle | None = None  # when the held batches are due
        self.created = False  # this open made the file: a command that fails leaves none behind
        self.reads = con  # what the bookkeeping readers query: the file plus its shards (see with_shards)
        self.can_resume = True  # an unfinished run may be continued from its committed rounds (runner.py)

    # ---- opening -------------------------------------------------------------------------
    @classmethod
    def open(cls, path: str | Path = DEFAULT_DB) -> "Store":
        path = str(path)
        existed = path == ":memory:" or Path(path).exists()
        try:
            con = duckdb.connect(path)
        except duckdb.IOException as exc:
            raise UserError(f"cannot open the database: {first_line(exc)}", file=path) from None
        store = cls(con, path)
        store.created = not existed
        try:
            store.migrate()
        except UserError:
            con.close()
            raise
        except duckdb.Error as exc:
            con.close()
            raise UserError(f"cannot set up the sociolab tables ({first_line(exc)}); is this another "
                            "program's DuckDB file? use a new --db", file=path) from None
        if path != ":memory:" and shards.root(path).is_dir():
            try:  # writes go to the file's tables; the bookkeeping readers see its shards too
                store.reads = con.cursor()
                shards.attach(store.reads, path)
            except BaseException:
                store.close()
                raise
        return store

    @classmethod
    def open_read_only(cls, path: str | Path = DEFAULT_DB) -> "Store":
        path = str(path)
        if path != ":memory:" and not Path(path).exists():
            raise UserError("no such database file; run `sociolab run FILE` first or pass --db", file=path)
        store = cls.connect_read_only(path)
        version = store.schema_version()
        if version == 0 and path != ":memory:":
            store.close()
            raise UserError("not a sociolab database (no schema_version table); check --db", file=path)
        try:
            store.refuse_newer_or_foreign(version)
        except UserError:
            store.close()
            raise
        if version < SCHEMA_VERSION:
            store.close()  # an older sociolab file: bring its schema up to date once, then read
            cls.open(path).close()
            store = cls.connect_read_only(path)
        return store.with_shards()

    def with_shards(self) -> "Store":
        """This read-only open, its tables shown as the file's rows plus its Parquet shards'
        (orchestrator/shards.py: TEMP views, the file untouched); closed on failure."""
        if self.path != ":memory:" and shards.root(self.path).is_dir():
            try:
                shards.attach(self.con, self.path)
            except BaseException:
                self.close()
                raise
        return self

    @classmethod
    def connect_read_only(cls, path: str) -> "Store":
        """A read-only connection that spills (what does not fit DuckDB's memory limit, e.g. under
        analysis.memory's budget) into a private folder of the system's temp directory, which
        DuckDB creates only if it spills and removes when the database is closed. Its default,
        `<db>.tmp`, would write beside a file opened read-only, and fails where that folder is
        not writable."""
        try:
            con = duckdb.connect(path, read_only=True)
        except duckdb.Error as exc:
            raise UserError(f"cannot open the database read-only: {first_line(exc)}", file=path) from None
        try:
            con.execute("SET temp_directory = ?", [spill_path()])
        except duckdb.NotImplementedException:
            pass  # another connection of this process to the same file has spilled already: keep its folder
        return cls(con, path)

    def schema_version(self) -> int:
        exists = self._scalar("SELECT count(*) FROM information_schema.tables WHERE table_name = 'schema_version'")
        if not exists:
            return 0
        return int(self._scalar("SELECT coalesce(max(version), 0) FROM schema_version"))

    def migrate(self) -> None:
        """Apply the migrations this file lacks, each in its own transaction (the first one also
        creates schema_version, so a failed first migration leaves the file untouched)."""
        current = self.schema_version()
        if current == 0:
            self.refuse_foreign_file()
        self.refuse_newer_or_foreign(current)
        for version in range(current, SCHEMA_VERSION):
            with self.transaction():
                if version == 0:
                    self.con.execute("CREATE TABLE schema_version "
                                     "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP DEFAULT current_timestamp)")
                self.con.execute(MIGRATIONS[version])
                self.con.execute("INSERT INTO schema_version (version) VALUES (?)", [version + 1])
            log.info("%s: schema migration v%d -> v%d applied", self.path, version, version + 1)

    def refuse_foreign_file(self) -> None:
        """A DuckDB file with tables but no sociolab schema is another program's: never write to it."""
        tables = [r[0] for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables ORDER BY table_name LIMIT 4").fetchall()]
        if tables:
            raise UserError(f"not a sociolab database: it holds other tables ({', '.join(tables)}) and no "
                            "sociolab schema; it is left untouched: use a new --db", file=self.path)

    def refuse_newer_or_foreign(self, version: int) -> None:
        """A file of a newer schema is read and written only by that sociolab (its columns may mean
        something else); a file with a `schema_version` table but without sociolab's tables of that
        version is another program's, whatever its version row says."""
        if version > SCHEMA_VERSION:
            raise UserError(f"database schema v{version} is newer than this sociolab (v{SCHEMA_VERSION}); "
                            "upgrade sociolab", file=self.path)
        present = {r[0].lower() for r in self.con.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'main'").fetchall()}
        missing = sorted(tables_up_to(version) - present)
        if missing:
            raise UserError(f"not a sociolab database: it has a schema_version table ({version}) but lacks "
                            f"sociolab's tables ({', '.join(missing[:4])}); it is left untouched: use a new --db",
                            file=self.path)

    def close(self) -> None:
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self.reads is not self.con:
            self.reads.close()
        self.con.close()

    def __enter__(self) -> "Store":
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        """Close; a file this open created is removed again if the command failed before
        anything was stored in it (no empty database is left behind by a refused command)."""
        try:
            remove = exc_type is not None and self.created and self.is_empty()
        except duckdb.Error:  # the failure broke the connection: keep the file, say nothing more
            remove = False
        self.close()
        if remove:
            for leftover in (Path(self.path), Path(self.path + ".wal")):
                leftover.unlink(missing_ok=True)

    def is_empty(self) -> bool:
        """No row in any sociolab table (the schema alone)."""
        tables = [*RUN_TABLES, "human_codes", "codebooks", "llm_cache"]
        return not any(self.con.execute(f"SELECT 1 FROM {t} LIMIT 1").fetchone() for t in tables)

    # ---- writing -------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[None]:
        """The block as one transaction: committed at its end, rolled back on any exception
        (which is re-raised), so a failed write leaves nothing behind."""
        self.con.execute("BEGIN TRANSACTION")
        try:
            yield
            self.con.execute("COMMIT")
        except BaseException:
            rollback(self.con)
            raise

    def write_now(self, batch: Batch) -> None:
        """Write a batch in one transaction (blocking)."""
        if not batch.rows and not batch.updates and not batch.columns:
            return
        batch = batch.folded()
        with self.transaction():
            for row_class, rows in batch.rows.items():
                insert_rows(self.con, row_class, rows)
            for table, block in batch.columns:
                insert_columns(self.con, table, block)
            apply_updates(self.con, batch.updates)

    async def write(self, batch: Batch, *, within: float = 0.0) -> None:
        """Write a batch on the store's own thread, keeping DuckDB off the event loop.

        Group commit: batches that arrive while a write is in progress are merged into the next
        transaction. DuckDB's cost is mostly per statement, so concurrent runs share it; each
        caller still returns only once its own rows are committed. While the store holds writes
        (`hold_writes`), a batch given `within` > 0 seconds (a sim run's last rows) waits up to
        that long for later batches to share its transaction: runs played one after another
        then share one instead of paying a transaction each.
        """
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((batch, future))
        if within > 0 and self._holding:
            self._write_at(loop.time() + within)
        else:
            self._write_queued()
        await future

    def hold_writes(self, hold: bool) -> None:
        """Let batches written `within` some seconds wait for company (the runner holds writes
        while runs remain to be started); stopping writes what is held at once."""
        self._holding = hold
        if not hold:
            self._write_queued()

    def _write_queued(self) -> None:
        """Write what is queued now; a pending due time is moot (and must not outlive its loop)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._queue:
            return
        if self._writer is None or self._writer.done():
            self._writer = asyncio.create_task(self._drain_queue())

    def _write_at(self, when: float) -> None:
        """Write the queue at `when` at the latest (the earliest due time of its held batches)."""
        if self._timer is not None and self._timer.when() <= when:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer = asyncio.get_running_loop().call_at(when, self._due)

    def _due(self) -> None:
        self._timer = None
        self._write_queued()

    async def _drain_queue(self) -> None:
        while self._queue:
            group, self._queue = self._queue, []
            try:
                await self.run_blocking(self.write_now, Batch.merged([b for b, _ in group]))
            except Exception:
                await self._write_one_by_one(group)  # so one bad batch fails alone
            else:
                for _, future in group:
                    if not future.done():
                        future.set_result(None)

    async def _write_one_by_one(self, group: list[tuple[Batch, asyncio.Future[None]]]) -> None:
        for batch, future in group:
            try:
                await self.run_blocking(self.write_now, batch)
            except Exception as exc:
                if not future.done():
                    future.set_exception(exc)
            else:
                if not future.done():
                    future.set_result(None)

    async def run_blocking(self, fn: Callable[..., T], *args: Any) -> T:
        """`fn(*args)` on the store's own thread (DuckDB calls block)."""
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sociolab-store")
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def start_run(self, run: RunRow, agents: Sequence[AgentRow]) -> None:
        """Insert a run (status 'running') and its roster, replacing any unfinished earlier attempt."""
        with self.transaction():
            delete_runs(self.con, [run.run_id])
            insert_rows(self.con, RunRow, [run])
            insert_rows(self.con, AgentRow, agents)

    def delete_runs(self, run_ids: list[str]) -> None:
        with self.transaction():
            delete_runs(self.con, run_ids)

    async def finish_run(self, run_id: str) -> None:
        """A run has ended and its rows are written: nothing more to do for the DuckDB file (a
        sharded store publishes the run as a shard here, orchestrator/sharded.py)."""

    def check_redo(self, run_ids: Iterable[str]) -> None:
        """Runs this store is about to redo in the file must not have an unmerged shard, which
        would keep hiding the redone rows (a shard's run replaces the file's, docs/scale.md)."""
        if self.path == ":memory:" or not shards.root(self.path).is_dir():
            return
        held = sorted(set(run_ids) & set(shards.latest(self.path)))
        if held:
            raise UserError(f"run {held[0]}{f' and {len(held) - 1} more' if len(held) > 1 else ''} to redo "
                            f"has an unmerged shard; run `sociolab merge --db {self.path}` first, or rerun "
                            "with --shards", file=self.path)

    def merge_shards(self) -> tuple[int, int]:
        """Fold every shard into the file: per run, its newest shard replaces the run's rows in one
        transaction; only then are its manifest entry and files removed (older shards of the run
        with them). A merge killed at any point leaves a state the next merge completes: a run
        committed but not yet removed is replaced again, identically. Leftovers of killed writers
        go at the end. Returns (runs merged, leftovers removed)."""
        newest = shards.latest(self.path)
        shards.check_files(self.path, newest)
        catalog = self._scalar("SELECT current_database()")
        superseded: dict[str, list[shards.Entry]] = {}
        for entry in shards.entries(self.path):
            if newest[entry.run_id].shard != entry.shard:
                superseded.setdefault(entry.run_id, []).append(entry)
        for run_id, entry in sorted(newest.items()):
            with self.transaction():
                delete_runs(self.con, [run_id])
                for table in (*shards.RUN_TABLES, *shards.KEYED_TABLES):
                    if table in entry.files:
                        self.con.execute(shards.insert_sql(self.con, catalog, table, [entry.path(self.path, table)]))
            for old in (entry, *superseded.get(run_id, [])):
                shards.remove(self.path, old)
            log.info("%s: run %s merged from shard %s", self.path, run_id, entry.shard)
        left = shards.leftovers(self.path)
        for path in left:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        base = shards.root(self.path)
        for folder in (base / "tmp", base / "runs", base / "manifest", base):
            if folder.is_dir() and not any(folder.iterdir()):
                folder.rmdir()
        return len(newest), len(left)

    def replace_human_codes(self, rows: Sequence[HumanCodeRow]) -> None:
        """Store human codes, replacing earlier imports of the same (message, coder), atomically."""
        keys = sorted({f"{r.message_id}\x1f{r.coder}" for r in rows})
        with self.transaction():
            self.con.execute("DELETE FROM human_codes WHERE message_id || '\x1f' || coder IN (SELECT unnest(?))",
                             [keys])
            insert_rows(self.con, HumanCodeRow, rows)

    # ---- reading: what sociolab's own modules ask of the store ------------------------------
    def run_states(self, run_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        """(status, config_hash) of each given run that exists."""
        ids = list(run_ids)
        if not ids:
            return {}
        rows = self.reads.execute("SELECT run_id, status, config_hash FROM runs WHERE run_id IN "
                                "(SELECT unnest(?))", [ids]).fetchall()
        return {r[0]: (r[1], r[2]) for r in rows}

    def runs(self, run_ids: Iterable[str]) -> list[RunRow]:
        """The stored rows of the given runs that exist, by run_id (config and factors as JSON text)."""
        columns = ", ".join(COLUMNS[RunRow.TABLE])
        rows = self.reads.execute(f"SELECT {columns} FROM runs WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id",
                                [list(run_ids)]).fetchall()
        return [row_of(RunRow, r) for r in rows]

    def run_so_far(self, run_id: str) -> RunSoFar:
        """The committed state of one run, for resuming it where it stopped."""
        rounds_done = self._scalar("SELECT coalesce(max(rounds_done), 0) FROM runs WHERE run_id = ?", [run_id])
        messages = self.con.execute(
            "SELECT seq, round, turn, sender, sender_name, content, context_size, is_error, error, started_s, "
            "finished_s FROM messages WHERE run_id = ? ORDER BY seq", [run_id]).fetchall()
        agents = self.con.execute("SELECT agent_id, status, errored_round FROM agents WHERE run_id = ? "
                                  "ORDER BY position", [run_id]).fetchall()
        events = [StoredEvent(rnd, kind, agent, json.loads(detail) if isinstance(detail, str) else (detail or {}))
                  for rnd, kind, agent, detail in self.con.execute(
                      "SELECT round, kind, agent_id, detail FROM events WHERE run_id = ? ORDER BY round, logged_at",
                      [run_id]).fetchall()]
        return RunSoFar(run_id=run_id, rounds_done=int(rounds_done), messages=list(map(StoredMessage._make, messages)),
                        agents=list(map(StoredAgent._make, agents)), events=events)

    def runs_with_events(self, run_ids: Iterable[str]) -> list[str]:
        """Those of the given runs that have events (a run that raised before its row was written
        leaves only its internal_error event)."""
        ids = list(run_ids)
        if not ids:
            return []
        rows = self.reads.execute("SELECT DISTINCT run_id FROM events WHERE run_id IN (SELECT unnest(?)) "
                                "ORDER BY run_id", [ids]).fetchall()
        return [r[0] for r in rows]

    def series_by_run(self) -> dict[str, str | None]:
        """Every run's series (None for a single-condition file), in run_id order."""
        return dict(self.con.execute("SELECT run_id, series FROM runs ORDER BY run_id").fetchall())

    def load_cache(self, models: Iterable[str]) -> dict[str, str]:
        """The response cache's entries for these models: key -> response JSON."""
        models = list(models)
        if not models:
            return {}
        rows = self.reads.execute("SELECT cache_key, response FROM llm_cache WHERE model IN "
                                "(SELECT unnest(?))", [models]).fetchall()
        return dict(rows)

    def calls_by_model(self) -> list[ModelCalls]:
        """Calls and tokens per model, by model name, counting only calls that did not fail (a
        failed call, e.g. an injected crash, is never priced)."""
        rows = self.con.execute(
            "SELECT model, count(*), coalesce(sum(prompt_tokens), 0), coalesce(sum(completion_tokens), 0) "
            "FROM llm_calls WHERE error IS NULL GROUP BY model ORDER BY model").fetchall()
        return [ModelCalls(model, int(n), int(p), int(c)) for model, n, p, c in rows]

    def roster(self, run_ids: Iterable[str]) -> list[AgentRow]:
        """The agents of these runs, by run and position."""
        columns = ", ".join(COLUMNS[AgentRow.TABLE])
        rows = self.con.execute(f"SELECT {columns} FROM agents WHERE run_id IN (SELECT unnest(?)) "
                                "ORDER BY run_id, position", [list(run_ids)]).fetchall()
        return [row_of(AgentRow, r) for r in rows]

    def conversation(self, run_ids: Iterable[str]) -> list[ConversationMessage]:
        """Every message of these runs (seed, platform notes and errors included), by run and seq."""
        rows = self.con.execute(
            "SELECT run_id, message_id, round, sender, sender_name, content, is_error FROM messages "
            "WHERE run_id IN (SELECT unnest(?)) ORDER BY run_id, seq", [list(run_ids)]).fetchall()
        return list(map(ConversationMessage._make, rows))

    def messages_before(self, message_id: str, k: int) -> list[tuple[str | None, str]]:
        """(sender_name, content) of up to k messages before `message_id` in its run, oldest
        first; platform notes (sender 'system') are left out."""
        rows = self.con.execute("""
            SELECT sender_name, content FROM messages
             WHERE run_id = (SELECT run_id FROM messages WHERE message_id = ?)
               AND seq < (SELECT seq FROM messages WHERE message_id = ?) AND sender <> 'system'
             ORDER BY seq DESC LIMIT ?""", [message_id, message_id, k]).fetchall()
        return [(name, text) for name, text in reversed(rows)]

    def message_ids(self) -> set[str]:
        """The id of every stored message."""
        return {r[0] for r in self.con.execute("SELECT message_id FROM messages").fetchall()}

    def sample_messages(self, n: int, stratify: str, seed: int) -> list[SampledMessage]:
        """n codable agent messages (not the seed, notes or errors, not blank) drawn by stratum of
        `SAMPLE_STRATA`: proportional allocation, at least one per stratum while n allows, in an
        order fixed by `seed`."""
        stratum_sql = SAMPLE_STRATA[stratify]
        rows = self.con.execute(f"""
            WITH pool AS (
                SELECT m.message_id, {stratum_sql} AS stratum, m.run_id, m.round, m.sender_name, m.content,
                       hash(m.message_id || ?) AS h
                  FROM messages m JOIN runs r USING (run_id)
                  LEFT JOIN agents a ON a.run_id = m.run_id AND a.agent_id = m.sender
                 WHERE m.sender NOT IN ('user', 'system') AND NOT m.is_error AND trim(m.content) <> ''),
            sizes AS (SELECT stratum, count(*) AS size, sum(count(*)) OVER () AS total FROM pool GROUP BY stratum),
            quota AS (SELECT stratum, greatest(1, round(? * size / total))::BIGINT AS k FROM sizes),
            ranked AS (SELECT p.*, row_number() OVER (PARTITION BY p.stratum ORDER BY h) AS rk FROM pool p)
            SELECT message_id, stratum, run_id, round, sender_name, content
              FROM ranked JOIN quota USING (stratum)
             WHERE rk <= k
             ORDER BY h
             LIMIT ?""", [str(seed), n, n]).fetchall()
        return list(map(SampledMessage._make, rows))

    # Messages a judge codes: agents' replies (not the seed, platform notes, failed calls or blank
    # replies), and not the moves of scripted players (fixed strategies, not model output).
    CODABLE = """
        FROM messages m LEFT JOIN agents a ON a.run_id = m.run_id AND a.agent_id = m.sender
        WHERE m.run_id IN (SELECT unnest(?)) AND m.sender NOT IN ('user', 'system') AND NOT m.is_error
          AND regexp_matches(m.content, '\\S') AND coalesce(a.provider, '') <> 'scripted'"""

    def codable_count(self, run_ids: list[str]) -> int:
        return int(self._scalar(f"SELECT count(*) {self.CODABLE}", [run_ids]))

    def uncoded(self, run_ids: list[str], judge: str | None = None, codebook_id: str | None = None
                ) -> dict[str, set[str]]:
        """run id -> the codable messages `judge` has not coded under this codebook (every codable
        message without a judge): computed in DuckDB, so a resume with nothing left to code reads
        no conversation at all."""
        if judge is None:
            rows = self.con.execute(f"SELECT m.run_id, m.message_id {self.CODABLE}", [run_ids]).fetchall()
        else:
            rows = self.con.execute(
                f"SELECT m.run_id, m.message_id {self.CODABLE} AND NOT EXISTS (SELECT 1 FROM codes c "
                "WHERE c.message_id = m.message_id AND c.judge = ? AND c.codebook_id = ?)",
                [run_ids, judge, codebook_id]).fetchall()
        out: dict[str, set[str]] = {}
        for run_id, message_id in rows:
            out.setdefault(run_id, set()).add(message_id)
        return out

    def counts(self) -> dict[str, Any]:
        """What the file holds, for end-of-run summaries."""
        q = self._scalar
        return {
            "runs": q("SELECT count(*) FROM runs"),
            "runs_completed": q("SELECT count(*) FROM runs WHERE status = 'completed'"),
            "agents": q("SELECT count(*) FROM agents"),
            "messages": q("SELECT count(*) FROM messages WHERE sender NOT IN ('user', 'system')"),
            "errors": q("SELECT count(*) FROM messages WHERE is_error"),
            "llm_calls": q("SELECT count(*) FROM llm_calls"),
            "tokens": q("SELECT coalesce(sum(prompt_tokens + completion_tokens), 0) FROM llm_calls"),
            "cost_usd": q("SELECT coalesce(sum(cost_usd), 0) FROM llm_calls"),
            "unpriced_models": [r[0] for r in self.con.execute(
                "SELECT DISTINCT model FROM llm_calls WHERE cost_usd IS NULL AND error IS NULL ORDER BY 1").fetchall()],
        }

    def _scalar(self, sql: str, params: Sequence[Any] = ()) -> Any:
        """The single value of a query that always returns one row (an aggregate)."""
        row = self.con.execute(sql, list(params)).fetchone()
        if row is None:
            raise LookupError(f"no row from {sql!r}")
        return row[0]


def insert_rows(con: duckdb.DuckDBPyConnection, row_class: type[Row], rows: Sequence[Row]) -> None:
    """Insert rows of one class column-wise: one typed list parameter per column, unnested by DuckDB.

    DuckDB's cost is per statement and per bound parameter; a multi-row VALUES list binds
    rows x columns parameters, this binds one per column, whatever the number of rows. Rows become
    tuples here, and only here, through the class's attrgetter (rows.VALUES).
    """
    if not rows:
        return
    table, columns = row_class.TABLE, COLUMNS[row_class.TABLE]
    types = column_types(con, table)
    selects = ", ".join(f"unnest(?::{types[c]}[])" for c in columns)
    replaced = _REPLACED[0]
    values = [[to_db(v) for v in column] for column in zip(*map(VALUES[row_class], rows))]
    invalid = []
    if _REPLACED[0] != replaced:  # rare: look for the replaced values only then
        invalid = [i for i, column in enumerate(values) if any(v.__class__ is InvalidText for v in column)]
    verb = "INSERT OR IGNORE" if row_class.CONTENT_KEYED else "INSERT"
    con.execute(f"{verb} INTO {table} ({', '.join(columns)}) SELECT {selects}", values)
    if invalid:
        record_invalid_text(con, table, columns, values, invalid)


def block_length(block: dict[str, Any]) -> int:
    """Rows in a column block: the length of its first array (constants count for every row)."""
    return next((len(v) for v in block.values() if not isinstance(v, (str, int, float))), 0)


def insert_columns(con: duckdb.DuckDBPyConnection, table: str, block: dict[str, Any]) -> None:
    """Insert a column block into `table`: numpy arrays of one length, scanned by DuckDB as they
    are (no Python object per row), and constants (a str, int or float: the same value in every
    row, e.g. the run id). In a nullable integer column, -1 stands for NULL. Columns missing from
    `block` get their default."""
    if not block_length(block):
        return
    arrays = {c: v for c, v in block.items() if not isinstance(v, (str, int, float))}
    constants = {c: v for c, v in block.items() if c not in arrays}
    nullable = {name for name, nulls in con.execute(
        "SELECT column_name, is_nullable FROM information_schema.columns WHERE table_name = ? AND "
        "table_schema = 'main'", [table]).fetchall() if nulls == "YES"}
    name = f"_sociolab_block_{table}"
    con.register(name, arrays)
    try:
        selects = [f"NULLIF({c}, -1)" if c in nullable else c for c in arrays] + ["?"] * len(constants)
        con.execute(f"INSERT INTO {table} ({', '.join([*arrays, *constants])}) SELECT {', '.join(selects)} "
                    f"FROM {name}", list(constants.values()))
    finally:
        con.unregister(name)


class InvalidText(str):
    """Text that could not be stored as received (lone surrogates), with them replaced by U+FFFD."""


_REPLACED = [0]  # InvalidTexts made so far (a cheap "did this insert replace anything?")


def valid_text(text: str) -> str:
    """`text` if it encodes as UTF-8 (the fast path: ASCII, or one encode), else an InvalidText
    in which valid surrogate pairs are joined and every lone surrogate is U+FFFD."""
    if text.isascii():
        return text
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        _REPLACED[0] += 1
        return InvalidText(text.encode("utf-16", "surrogatepass").decode("utf-16", "replace"))
    return text


def record_invalid_text(con: duckdb.DuckDBPyConnection, table: str, columns: tuple[str, ...],
                        values: list[list[Any]], invalid: list[int]) -> None:
    """One `invalid_text` event per run, table and column where text had to be replaced, so that
    replaced text is never mistaken for what a model or provider sent (docs/schema.md).
    `values` are the inserted columns, `invalid` the indexes of those holding replaced text."""
    if "run_id" in columns:
        run_of = [r or "" for r in values[columns.index("run_id")]]
    elif "message_id" in columns:
        run_of = [str(m or "").split("#")[0] for m in values[columns.index("message_id")]]
    else:
        run_of = [""] * len(values[0])   # llm_cache, codebooks: not tied to a run
    key = columns[0] if columns[0] != "run_id" else None
    counts: dict[tuple[str, str], list[Any]] = {}
    for i in invalid:
        for j, v in enumerate(values[i]):
            if v.__class__ is InvalidText:
                entry = counts.setdefault((run_of[j], columns[i]), [0, str(values[0][j])])
                entry[0] += 1
    events = [EventRow(run_id=run_id, kind="invalid_text",
                       detail={"table": table, "column": column, "values": n,
                               **({f"first_{key}": first} if key else {})})
              for (run_id, column), (n, first) in counts.items()]
    log.warning("%s: text that is not valid Unicode was stored with U+FFFD in place of lone surrogates (%s)",
                table, ", ".join(sorted({c for _, c in counts})))
    insert_rows(con, EventRow, events)


_TYPES: dict[str, dict[str, str]] = {}


def column_types(con: duckdb.DuckDBPyConnection, table: str) -> dict[str, str]:
    """Column -> SQL type, read once per table: every open file is migrated to the same schema."""
    if table not in _TYPES:
        rows = con.execute("SELECT column_name, data_type FROM information_schema.columns "
                           "WHERE table_name = ? AND table_schema = 'main'", [table]).fetchall()
        _TYPES[table] = dict(rows)
    return _TYPES[table]


def apply_updates(con: duckdb.DuckDBPyConnection, updates: list[tuple[str, dict[str, Any], dict[str, Any]]]) -> None:
    """Apply row updates with one UPDATE ... FROM (VALUES ...) per table and column set.

    Updates of the same row are folded first (later values win), which is what applying them
    one by one would give; grouping matters because each DuckDB statement has a fixed cost.
    """
    folded: dict[tuple[str, tuple[tuple[str, Any], ...]], dict[str, Any]] = {}
    for table, where, values in updates:
        key = (table, tuple(where.items()))
        folded.setdefault(key, {}).update(values)
    groups: dict[tuple[str, tuple[str, ...], tuple[str, ...]], list[tuple[Any, ...]]] = {}
    for (table, where_items), values in folded.items():
        signature = (table, tuple(k for k, _ in where_items), tuple(values))
        groups.setdefault(signature, []).append(tuple(v for _, v in where_items)
                                                + tuple(map(to_db, values.values())))
    for (table, keys, cols), rows in groups.items():
        names = keys + cols
        placeholder = "(" + ", ".join("?" * len(names)) + ")"
        sets = ", ".join(f"{c} = v.{c}" for c in cols)
        cond = " AND ".join(f"{table}.{k} = v.{k}" for k in keys)
        con.execute(f"UPDATE {table} SET {sets} FROM (VALUES {', '.join([placeholder] * len(rows))}) "
                    f"AS v({', '.join(names)}) WHERE {cond}", [x for row in rows for x in row])


def delete_runs(con: duckdb.DuckDBPyConnection, run_ids: list[str]) -> None:
    """Every row of these runs, human codes included (their message ids would be reused)."""
    con.execute("DELETE FROM human_codes WHERE split_part(message_id, '#', 1) IN (SELECT unnest(?))", [run_ids])
    for table in RUN_TABLES:
        con.execute(f"DELETE FROM {table} WHERE run_id IN (SELECT unnest(?))", [run_ids])


def rollback(con: duckdb.DuckDBPyConnection) -> None:
    """Roll back without hiding the error that made us roll back: if ROLLBACK itself fails (DuckDB
    has already ended a transaction whose COMMIT failed, or the connection is unusable), that
    second error is logged and the original one propagates."""
    try:
        con.execute("ROLLBACK")
    except duckdb.Error as exc:
        log.debug("ROLLBACK after a failed write did not run: %s", first_line(exc))


def to_db(value: Any) -> Any:
    """dicts and lists go to JSON columns as text; text that DuckDB cannot encode (lone surrogates,
    which a model or provider can send) is stored with U+FFFD in their place (`valid_text`)."""
    if isinstance(value, (dict, list)):
        value = json.dumps(value, ensure_ascii=False, sort_keys=True)
    if isinstance(value, str):
        return valid_text(value)
    return value

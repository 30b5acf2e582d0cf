"""Parquet shards beside a DuckDB store: the layout, the manifest, the writer and the reader.

A store is its DuckDB file `<db>` plus, optionally, a folder `<db>.shards/` of runs written by
processes that never open the file (docs/scale.md):

    <db>.shards/tmp/<shard>/<table>.parquet    being written (ignored by every reader)
    <db>.shards/runs/<shard>/<table>.parquet   published: renamed here whole from tmp/
    <db>.shards/manifest/<shard>.json          the commit record, written last (tmp + rename)

A shard holds one finished run: its rows of every run table (`RUN_TABLES`), plus the response-
cache entries and codebooks the writer held. Only a manifest entry makes a shard visible, so a
writer killed at any point leaves nothing half-written in view. Readers see, per run, the newest
shard (by `written_ns`); that shard's rows replace whatever the DuckDB file holds for the run
(a shard is always written after the run finished, so it is the newer state), and no run's rows
ever appear twice. `llm_cache` and `codebooks` rows are content-keyed: the file's win, duplicates
are dropped.

This module knows no `Store`: it takes DuckDB connections. `publish` is what a worker calls,
`attach` what an open for reading calls, `latest` what resume and merge ask.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import duckdb

from sociolab.base.errors import UserError

# The tables a shard holds rows of, keyed by run (the store's RUN_TABLES), and the content-keyed
# tables it may carry too (their key column).
RUN_TABLES = ("runs", "agents", "messages", "llm_calls", "events", "outcomes", "tool_calls", "codes", "actions")
KEYED_TABLES = {"llm_cache": "cache_key", "codebooks": "codebook_id"}


def root(db: str | Path) -> Path:
    """The shard folder of a store: `<db>.shards`."""
    return Path(f"{db}.shards")


@dataclass(frozen=True)
class Entry:
    """One manifest record: a published shard holding one finished run."""

    shard: str
    run_id: str
    config_hash: str | None
    status: str | None          # the run's status in the shard (completed, stopped, failed, ...)
    rounds_done: int | None
    written_ns: int             # when it was published (newest wins for a run)
    files: dict[str, dict[str, Any]]   # table -> {"file": path relative to the shard folder, "rows": n}

    def path(self, db: str | Path, table: str) -> Path:
        return root(db) / self.files[table]["file"]


def shard_id(run_id: str) -> str:
    """A name no other writer picks: the run id (made safe for a file name), time, randomness."""
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", run_id)[:80]
    return f"{safe}.{time.time_ns():x}.{uuid.uuid4().hex[:8]}"


def sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def atomic_write(path: Path, text: str) -> None:
    """Write a file whole or not at all: a temporary sibling, flushed, then renamed over."""
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    with tmp.open("w", encoding="utf-8") as fh:
        fh.write(text)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


# ---- writing (a worker) ------------------------------------------------------------------
def publish(con: duckdb.DuckDBPyConnection, db: str | Path, run_id: str) -> Entry:
    """Write run `run_id`'s rows, as `con` holds them (a worker's private DuckDB, same schema as
    the store), as a shard of `db`, and record it in the manifest. `con` is only read; the
    DuckDB file `db` is never opened. Steps: Parquet files into tmp/<shard>/, that folder renamed
    to runs/<shard>/, then the manifest entry written atomically: a writer killed before the
    last step leaves no visible shard."""
    base = root(db)
    shard = shard_id(run_id)
    tmp, final = base / "tmp" / shard, base / "runs" / shard
    tmp.mkdir(parents=True, exist_ok=True)
    (base / "runs").mkdir(exist_ok=True)
    (base / "manifest").mkdir(exist_ok=True)
    files: dict[str, dict[str, Any]] = {}
    where = f"WHERE run_id = {sql_text(run_id)}"
    for table in (*RUN_TABLES, *KEYED_TABLES):
        condition = where if table in RUN_TABLES else ""
        row = con.execute(f"SELECT count(*) FROM {table} {condition}").fetchone()
        rows = int(row[0]) if row else 0
        if not rows:
            continue
        target = tmp / f"{table}.parquet"
        con.execute(f"COPY (SELECT * FROM {table} {condition}) TO {sql_text(str(target))} (FORMAT parquet)")
        files[table] = {"file": f"runs/{shard}/{table}.parquet", "rows": rows}
    run = con.execute(f"SELECT config_hash, status, rounds_done FROM runs {where}").fetchone()
    config_hash, status, rounds_done = run if run else (None, None, None)
    os.replace(tmp, final)
    entry = Entry(shard=shard, run_id=run_id, config_hash=config_hash, status=status, rounds_done=rounds_done,
                  written_ns=time.time_ns(), files=files)
    atomic_write(base / "manifest" / f"{shard}.json", json.dumps(asdict(entry), sort_keys=True))
    return entry


# ---- reading -----------------------------------------------------------------------------
def entries(db: str | Path) -> list[Entry]:
    """Every manifest entry of `db`'s shards (none without a shard folder); a broken entry is one line."""
    folder = root(db) / "manifest"
    if not folder.is_dir():
        return []
    out = []
    for path in sorted(folder.glob("*.json")):
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            out.append(Entry(**data))
        except (ValueError, TypeError) as exc:
            raise UserError(f"broken shard manifest entry ({exc}); move it away or delete it", file=path) from None
    return out


def latest(db: str | Path) -> dict[str, Entry]:
    """Run id -> its newest shard: what readers see of the shards."""
    out: dict[str, Entry] = {}
    for entry in entries(db):
        known = out.get(entry.run_id)
        if known is None or (entry.written_ns, entry.shard) > (known.written_ns, known.shard):
            out[entry.run_id] = entry
    return out


def file_columns(con: duckdb.DuckDBPyConnection, catalog: str, table: str) -> list[tuple[str, str]]:
    """(column, type) of a table of the store file, in order."""
    return con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE table_catalog = ? "
                       "AND table_schema = 'main' AND table_name = ? ORDER BY ordinal_position",
                       [catalog, table]).fetchall()


def shard_select(columns: list[tuple[str, str]], files: list[Path]) -> str:
    """The shards' rows of one table, typed as the file's columns (a column an older shard lacks
    is NULL)."""
    listing = ", ".join(sql_text(str(f)) for f in files)
    return (f"SELECT {', '.join(f'{name}::{kind} AS {name}' for name, kind in columns)} "
            f"FROM read_parquet([{listing}], union_by_name = true)")


def check_files(db: str | Path, shown: dict[str, Entry]) -> None:
    for entry in shown.values():
        for table in entry.files:
            if not entry.path(db, table).is_file():
                raise UserError(f"shard {entry.shard} of run {entry.run_id} lacks its {table} file; "
                                "delete its manifest entry to drop the run's shard", file=entry.path(db, table))


def attach(con: duckdb.DuckDBPyConnection, db: str | Path) -> int:
    """Present each run table of the store open on `con` as the file's rows plus its shards':
    TEMP views under the tables' own names (they shadow the file's tables, and so the file's
    views over them too), the file itself untouched, so this works on read-only opens. The
    shard files are added to `allowed_paths`, so a connection that then turns external access
    off (`sociolab sql`) still reads them. Returns the number of runs shown from shards."""
    shown = latest(db)
    if not shown:
        return 0
    check_files(db, shown)
    catalog = con.execute("SELECT current_database()").fetchone()[0]  # type: ignore[index]
    paths: list[str] = []
    con.execute("CREATE OR REPLACE TEMP TABLE sociolab_shard_runs AS SELECT unnest(?::VARCHAR[]) AS run_id",
                [sorted(shown)])
    for table in (*RUN_TABLES, *KEYED_TABLES):
        files = [e.path(db, table) for e in shown.values() if table in e.files]
        if not files:
            continue
        paths += [str(f) for f in files]
        columns = file_columns(con, catalog, table)
        names = ", ".join(name for name, _ in columns)
        source = f'"{catalog}".main.{table}'
        if table in RUN_TABLES:
            sql = (f"SELECT {names} FROM {source} WHERE run_id IS NULL OR run_id NOT IN "
                   f"(SELECT run_id FROM temp.main.sociolab_shard_runs) UNION ALL {shard_select(columns, files)}")
        else:
            key = KEYED_TABLES[table]
            sql = (f"SELECT {names} FROM {source} UNION ALL SELECT {names} FROM ({shard_select(columns, files)}) s "
                   f"WHERE {key} NOT IN (SELECT {key} FROM {source}) QUALIFY row_number() OVER (PARTITION BY {key}) = 1")
        con.execute(f"CREATE OR REPLACE TEMP VIEW {table} AS {sql}")
    con.execute(f"SET allowed_paths = [{', '.join(sql_text(p) for p in paths)}]")
    return len(shown)


# ---- merging -----------------------------------------------------------------------------
def insert_sql(con: duckdb.DuckDBPyConnection, catalog: str, table: str, files: list[Path]) -> str:
    """INSERT the shards' rows of one table into the file's table (content-keyed ones: the new only)."""
    columns = file_columns(con, catalog, table)
    names = ", ".join(name for name, _ in columns)
    verb = "INSERT OR IGNORE" if table in KEYED_TABLES else "INSERT"
    return f'{verb} INTO "{catalog}".main.{table} ({names}) {shard_select(columns, files)}'


def remove(db: str | Path, entry: Entry) -> None:
    """Drop a merged (or superseded) shard: its manifest entry first, then its files."""
    (root(db) / "manifest" / f"{entry.shard}.json").unlink(missing_ok=True)
    shutil.rmtree(root(db) / "runs" / entry.shard, ignore_errors=True)


def leftovers(db: str | Path) -> list[Path]:
    """What killed writers left: tmp/ folders, and published folders without a manifest entry."""
    base = root(db)
    named = {e.shard for e in entries(db)}
    out = sorted((base / "tmp").glob("*")) if (base / "tmp").is_dir() else []
    if (base / "runs").is_dir():
        out += [p for p in sorted((base / "runs").glob("*")) if p.name not in named]
    if (base / "manifest").is_dir():
        out += sorted((base / "manifest").glob(".*.tmp"))
    return out

"""`sociolab sql`: run a query read-only and print it as a table, CSV or JSON.

Read-only in fact: only queries run (every statement is checked before the file is opened), and
the connection has external access disabled and its configuration locked, so no host file is read
or written. Results stream: the table fetches only the rows it shows, CSV and JSON are written in
chunks as they come. Stored text is printed as text, never as rich markup.
"""

from __future__ import annotations

import csv
import json
import re
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterator

import duckdb
from rich.console import Console
from rich.table import Table
from rich.text import Text

from sociolab.base.errors import UserError, first_line
from .store import Store

TABLE_LIMIT = 200  # default --limit for the table format; csv and json have none
CHUNK = 10_000  # rows per fetchmany for csv and json

# Statement kinds that only read: SELECT covers WITH, FROM, VALUES, DESCRIBE, SHOW and SUMMARIZE.
QUERY_KINDS = {"SELECT", "EXPLAIN"}
LEADING_COMMENTS = re.compile(r"^(?:\s+|--[^\n]*(?:\n|$)|/\*.*?\*/)*", re.S)


def check_read_only(query: str) -> None:
    """Refuse, before anything runs, a query string holding any statement that is not a plain query."""
    try:
        statements = duckdb.extract_statements(query)
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {first_line(exc)}") from None
    if not statements:
        raise UserError("empty query: give a SQL statement, e.g. sociolab sql \"SELECT * FROM runs LIMIT 5\"")
    for statement in statements:
        try:
            kind = statement.type.name
        except ValueError:  # a kind this duckdb's Python API cannot name (e.g. UPDATE EXTENSIONS)
            kind = ""
        if kind not in QUERY_KINDS:
            refuse(keyword(statement.query) or kind or "this statement")


def keyword(text: str) -> str:
    """The statement's first word (INSTALL and IMPORT have no statement type of their own)."""
    match = re.match(r"[A-Za-z_]+", LEADING_COMMENTS.sub("", text, count=1))
    return match.group(0).upper() if match else ""


def refuse(kind: str) -> None:
    hint = ("use --format csv to export" if kind in ("COPY", "EXPORT")
            else "only queries (SELECT, WITH, FROM, DESCRIBE, SHOW, EXPLAIN) run here")
    raise UserError(f"sociolab sql is read-only: {kind} is not allowed; {hint}")


def run_query(db: Path, query: str, fmt: str, limit: int | None, console: Console) -> None:
    """Check, run and print `query`; only the rows printed are fetched."""
    check_read_only(query)
    store = Store.open_read_only(db)
    try:
        con = store.con
        con.execute("SET enable_external_access = false")
        con.execute("SET lock_configuration = true")
        cursor = con.execute(query)
        if cursor is None or cursor.description is None:
            return
        columns = [d[0] for d in cursor.description]
        if fmt == "csv":
            writer = csv.writer(sys.stdout)
            writer.writerow(columns)
            for chunk in chunks(cursor, limit):
                writer.writerows([plain(v) for v in row] for row in chunk)
        elif fmt == "json":
            write_json(columns, chunks(cursor, limit))
        else:
            shown = TABLE_LIMIT if limit is None else limit
            rows = cursor.fetchmany(shown + 1)
            print_table(columns, rows[:shown], more=len(rows) > shown, limit=shown, console=console)
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {first_line(exc)}") from None
    finally:
        store.close()


def chunks(cursor: duckdb.DuckDBPyConnection, limit: int | None) -> Iterator[list[tuple]]:
    left = limit
    while left is None or left > 0:
        rows = cursor.fetchmany(CHUNK if left is None else min(CHUNK, left))
        if not rows:
            return
        if left is not None:
            left -= len(rows)
        yield rows


def write_json(columns: list[str], row_chunks: Iterator[list[tuple]]) -> None:
    """A JSON array of objects, written object by object (the layout of json.dumps(indent=1))."""
    out = sys.stdout
    first = True
    for chunk in row_chunks:
        for row in chunk:
            item = json.dumps(dict(zip(columns, map(plain, row))), ensure_ascii=False, indent=1, default=str)
            out.write(("[\n " if first else ",\n ") + item.replace("\n", "\n "))
            first = False
    out.write("[]\n" if first else "\n]\n")


def print_table(columns: list[str], rows: list[tuple], more: bool, limit: int, console: Console) -> None:
    table = Table(show_lines=False)
    for column in columns:
        table.add_column(Text(column))
    for row in rows:
        table.add_row(*(Text(shorten(v)) for v in row))
    console.print(table)
    if more:
        console.print(f"(more rows exist; first {limit} shown; use --limit N or --format csv for more)",
                      markup=False, highlight=False)


def plain(value: Any) -> Any:
    if isinstance(value, (datetime, date)):
        return value.isoformat()
    if isinstance(value, Decimal):
        return float(value)
    return value


def shorten(value: Any, width: int = 120) -> str:
    text = "" if value is None else str(plain(value))
    text = text.replace("\n", " ")
    return text if len(text) <= width else text[: width - 1] + "…"

"""`sociolab sql`: run a query read-only and print it as a table, CSV or JSON."""

from __future__ import annotations

import csv
import json
import sys
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import duckdb
from rich.console import Console
from rich.table import Table

from .errors import UserError, first_line
from .store import Store

MAX_TABLE_ROWS = 200


def run_query(db: Path, query: str) -> tuple[list[str], list[tuple]]:
    if not query.strip(" \t\n;"):
        raise UserError("empty query: give a SQL statement, e.g. sociolab sql \"SELECT * FROM runs LIMIT 5\"")
    store = Store.open_read_only(db)
    try:
        cursor = store.con.execute(query)
        if cursor is None or cursor.description is None:
            return [], []
        columns = [d[0] for d in cursor.description]
        return columns, cursor.fetchall()
    except duckdb.Error as exc:
        raise UserError(f"SQL error: {first_line(exc)}") from None
    finally:
        store.close()


def render(columns: list[str], rows: list[tuple], fmt: str, console: Console) -> None:
    if fmt == "csv":
        writer = csv.writer(sys.stdout)
        writer.writerow(columns)
        writer.writerows([[plain(v) for v in row] for row in rows])
    elif fmt == "json":
        print(json.dumps([dict(zip(columns, map(plain, row))) for row in rows], ensure_ascii=False, indent=1))
    else:
        table = Table(*columns, show_lines=False)
        for row in rows[:MAX_TABLE_ROWS]:
            table.add_row(*(shorten(v) for v in row))
        console.print(table)
        if len(rows) > MAX_TABLE_ROWS:
            console.print(f"({len(rows)} rows; first {MAX_TABLE_ROWS} shown; use --format csv for all)")


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

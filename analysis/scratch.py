"""Temporary tables for analyses that scan the store once and read the result several times.

Analysis never changes the store: these are TEMP tables, private to the connection (so they work
on read-only opens too), uniquely named, and dropped by whoever created them. `one_row` reads the
single row of an aggregate over them (or over any table).
"""

from __future__ import annotations

import uuid
from contextlib import contextmanager
from typing import Any, Iterator, Sequence

import duckdb

from sociolab.base.errors import UserError, first_line


def create_scratch(con: duckdb.DuckDBPyConnection, prefix: str, sql: str, what: str) -> str:
    """CREATE TEMP TABLE <prefix>_<random> AS <sql>; a failure becomes one clear UserError, except
    running out of memory, which analysis.memory.within_budget answers by lifting its budget."""
    table = f"{prefix}_{uuid.uuid4().hex[:10]}"
    try:
        con.execute(f"CREATE TEMP TABLE {table} AS {sql}")
    except duckdb.OutOfMemoryException:
        drop_scratch(con, table)
        raise
    except duckdb.Error as exc:
        drop_scratch(con, table)
        raise UserError(f"cannot compute {what}: {first_line(exc)}") from None
    return table


def drop_scratch(con: duckdb.DuckDBPyConnection, table: str) -> None:
    con.execute(f"DROP TABLE IF EXISTS {table}")


@contextmanager
def scratch(con: duckdb.DuckDBPyConnection, prefix: str, sql: str, what: str) -> Iterator[str]:
    """A scratch table for the duration of a `with` block."""
    table = create_scratch(con, prefix, sql, what)
    try:
        yield table
    finally:
        drop_scratch(con, table)


def one_row(con: duckdb.DuckDBPyConnection, sql: str, params: Sequence[Any] = ()) -> tuple[Any, ...]:
    """The one row of a query that always has one (an aggregate without GROUP BY)."""
    row = con.execute(sql, list(params)).fetchone()
    if row is None:
        raise ValueError(f"no row from a query that always returns one: {sql}")
    return row

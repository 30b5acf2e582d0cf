"""A bounded DuckDB memory budget for the analysis (issue 12: memory flat in store size).

DuckDB keeps every block a query has read cached in its buffer pool until `memory_limit`
(default: 80% of RAM) is reached, and sizes its hash tables as if that much were available, so
the peak RSS of `sociolab analyze` grew with the store (1.9 GB on 22M codes) although every scan
is an aggregate. Under `MEMORY_LIMIT` the pool evicts and the hash aggregates and joins spill to
the connection's temp directory (a read-only `Store` gets a private one,
orchestrator/store.py), so the peak stays near the limit whatever the store's size. One thread
(`THREADS`): each thread keeps its own hash tables and buffers, and on the small machines the
analysis runs on the second thread bought little time for its memory.

The budget changes how DuckDB works, not what it computes: the analysis's scans add up integer
counts (`analyze --json` is byte-identical with and without it on the study and 10x the study;
only the last digits of float sums over 100,000s of agent rows depend on the order DuckDB adds
them in, which threads and spilling change). A query that still needs more
than the budget (an operator that cannot spill) raises `duckdb.OutOfMemoryException`;
`within_budget` then says so in the log and computes everything again with the connection's own
settings, so the budget never makes an analysis fail that worked without it.
"""

from __future__ import annotations

import functools
import logging
from contextlib import contextmanager
from typing import Callable, Iterator, TypeVar

import duckdb

log = logging.getLogger(__name__)

MEMORY_LIMIT = "64MB"    # 100x the WarRoom study (22M codes) runs in it: no scan keeps a row per message
THREADS = 1
# After a query whose allocations peaked above this, DuckDB hands its allocator's freed memory back
# to the system; by default 128 MiB, so up to that much of freed hash tables stayed in the RSS on
# top of the memory limit between queries.
FLUSH_THRESHOLD = "8MB"
# `sociolab judge`: with nothing (or little) left to code its DuckDB work is one anti-join per judge
# of the messages with the codes, which spills; 48MB keeps it within 1.5x from 1x to 100x (32MB is
# too small for the anti-join: judge would then run again without the budget).
JUDGE_MEMORY_LIMIT = "48MB"
T = TypeVar("T")


def settings(con: duckdb.DuckDBPyConnection) -> tuple[str, int, str]:
    """The connection's (memory_limit, threads, allocator_flush_threshold); sizes as DuckDB prints
    them (e.g. '18.8 GiB')."""
    row = con.execute("SELECT current_setting('memory_limit'), current_setting('threads'), "
                      "current_setting('allocator_flush_threshold')").fetchone()
    if row is None:
        raise ValueError("DuckDB returned no row for current_setting")
    return str(row[0]), int(row[1]), str(row[2])


@functools.cache
def defaults() -> tuple[str, int, str]:
    """DuckDB's own (memory_limit, threads, allocator_flush_threshold) on this machine, as
    `settings` prints them."""
    with duckdb.connect() as probe:
        return settings(probe)


def restore(con: duckdb.DuckDBPyConnection, name: str, value: str | int, default: str | int) -> None:
    """Put a setting back: RESET when it was DuckDB's default (its printed form is rounded, so
    SET would not give back the exact number of bytes), else SET to what it was."""
    if value == default:
        con.execute(f"RESET {name}")
    else:
        con.execute(f"SET {name} = '{value}'" if isinstance(value, str) else f"SET {name} = {int(value)}")


@contextmanager
def budget(con: duckdb.DuckDBPyConnection, memory_limit: str | None = None,
           threads: int | None = None) -> Iterator[None]:
    """The connection under the budget (by default MEMORY_LIMIT and THREADS) for the block; its own
    settings are put back after it (a Results object or a caller's connection goes on as it was;
    the settings are the DuckDB instance's, shared by its connections)."""
    own_limit, own_threads, own_flush = settings(con)
    default_limit, default_threads, default_flush = defaults()
    con.execute(f"SET memory_limit = '{memory_limit or MEMORY_LIMIT}'")
    con.execute(f"SET threads = {int(threads or THREADS)}")
    con.execute(f"SET allocator_flush_threshold = '{FLUSH_THRESHOLD}'")
    try:
        yield
    finally:
        restore(con, "memory_limit", own_limit, default_limit)
        restore(con, "threads", own_threads, default_threads)
        restore(con, "allocator_flush_threshold", own_flush, default_flush)


def within_budget(con: duckdb.DuckDBPyConnection, compute: Callable[[], T], memory_limit: str | None = None,
                  threads: int | None = None) -> T:
    """compute() under the budget; if it runs out of the budget, compute() again without it."""
    try:
        with budget(con, memory_limit, threads):
            return compute()
    except duckdb.OutOfMemoryException as exc:
        log.warning("%s DuckDB memory budget too small (%s); computing again with the connection's own "
                    "memory limit", memory_limit or MEMORY_LIMIT, str(exc).splitlines()[0])
    return compute()

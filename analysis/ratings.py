"""Ratings in one long shape, whatever their origin.

Agreement is computed over a single relation `(item_id VARCHAR, rater VARCHAR, flag VARCHAR,
value BOOLEAN)`: one row per item x rater x flag. LLM judges' codes and human codes from the store,
and wide CSV files such as the study's `human_coding_results.csv`, are all brought into that shape
here, so `analysis.agreement` has exactly one input format to get right.

Naming: a judge's rater name is its judge model id as stored in `codes.judge`; a human coder's
rater name is `'human:' || coder` (e.g. `human:alice`), so that a coder can never be mistaken
for a model. In a wide CSV the rater names are the column prefixes (`human`, `gemini`, ...).
A NULL value means "rated but not codable" (an uncodable judge reply): agreement leaves it out
and reports how many there were.
"""

from __future__ import annotations

import csv
import uuid
from pathlib import Path
from typing import Sequence

import duckdb

from sociolab.base.errors import UserError
from sociolab.base.errors import first_line
from sociolab.base.userfiles import regular_file

from .scratch import one_row

HUMAN_PREFIX = "human:"
# The one yes/no vocabulary of coding CSVs (also used by `sociolab validate import`); empty = no.
TRUE_WORDS = ("true", "1", "yes", "y", "x")
FALSE_WORDS = ("false", "0", "no", "n")


def sql_str(value: str) -> str:
    """A SQL string literal (single quotes doubled): rater and flag names end up inside SQL text."""
    return "'" + str(value).replace("'", "''") + "'"


def sql_ident(name: str) -> str:
    """A quoted SQL identifier, for CSV headers that may hold spaces or quotes."""
    return '"' + str(name).replace('"', '""') + '"'


def sql_list(values: Sequence[str]) -> str:
    return "(" + ", ".join(sql_str(v) for v in values) + ")"


# ---- the store ------------------------------------------------------------------------------

def ratings_view_sql(judges: list[str] | None = None, include_humans: bool = True,
                     codebook_id: str | None = None, *, include_uncodable: bool = False) -> str:
    """A SELECT giving the store's codes in the long ratings shape.

    `judges=None` takes every judge, `[]` none; `codebook_id=None` takes every codebook (if a
    message was coded under two codebooks, agreement refuses the duplicates and asks for one).
    Only status 'coded' rows are ratings; with `include_uncodable=True` the uncodable ones come
    along with value NULL so that a report can count them (agreement itself skips NULLs).
    Human codes are not tied to a codebook, so `codebook_id` filters judges only.
    """
    where = ["status IN ('coded', 'uncodable')" if include_uncodable else "status = 'coded'"]
    if judges is not None:
        where.append(f"judge IN {sql_list(judges)}" if judges else "FALSE")
    if codebook_id is not None:
        where.append(f"codebook_id = {sql_str(codebook_id)}")
    parts = [
        "SELECT CAST(message_id AS VARCHAR) AS item_id, CAST(judge AS VARCHAR) AS rater, "
        "CAST(flag AS VARCHAR) AS flag, CASE WHEN status = 'coded' THEN value END AS value "
        f"FROM codes WHERE {' AND '.join(where)}"
    ]
    if include_humans:
        parts.append(
            "SELECT CAST(message_id AS VARCHAR) AS item_id, "
            f"{sql_str(HUMAN_PREFIX)} || coder AS rater, CAST(flag AS VARCHAR) AS flag, value "
            "FROM human_codes"
        )
    return "\nUNION ALL\n".join(parts)


# ---- wide CSV files -------------------------------------------------------------------------

def load_wide_csv(con: duckdb.DuckDBPyConnection, path: str | Path, raters: list[str] | None = None,
                  flags: list[str] | None = None) -> str:
    """Load a wide CSV (one row per item, columns `<rater>_<flag>`) into a long temp table.

    Returns the temp table's name; its columns are the ratings shape. Cells read as
    true/false, 1/0, yes/no (any case, surrounding spaces ignored); an EMPTY cell means "not
    flagged" (False), as in the study's file, where human columns hold `true` or nothing.
    The item id is the `id` column if there is one, else the data row number (1, 2, ...).
    `raters=None` takes every column prefix before the first `_`; `flags=None` takes the flags
    that every rater has a column for (so an extra column such as `human_comp_level` is ignored).
    Anything wrong raises UserError naming the file, the CSV line and the column.
    """
    path = Path(path)
    regular_file(path, "CSV file")
    raw = _read_raw(con, path)
    try:
        columns = [r[0] for r in con.execute(f"DESCRIBE {raw}").fetchall()]
        id_col = next((c for c in columns if c.lower() == "id"), None)
        chosen = _choose_columns(path, columns, id_col, raters, flags)
        _check_rows(con, raw, path, id_col)
        long_sql = _long_sql(raw, id_col, chosen)
        _check_values(con, long_sql, path)
        name = f"ratings_csv_{uuid.uuid4().hex[:10]}"
        con.execute(
            f"CREATE TEMP TABLE {name} AS SELECT item_id, rater, flag, "
            f"coalesce(lower(trim(cell)) IN {sql_list(TRUE_WORDS)}, FALSE) AS value "
            f"FROM ({long_sql}) ORDER BY rec, rater_pos, flag_pos"
        )
        return name
    finally:
        con.execute(f"DROP TABLE IF EXISTS {raw}")


def _read_raw(con: duckdb.DuckDBPyConnection, path: Path) -> str:
    """The CSV as all-VARCHAR columns in a temp table; rowid k is data record k (0-based)."""
    raw = f"ratings_raw_{uuid.uuid4().hex[:10]}"
    try:
        con.execute(f"CREATE TEMP TABLE {raw} AS SELECT * FROM "
                    f"read_csv({sql_str(str(path))}, all_varchar = true, header = true)")
    except duckdb.Error as exc:
        raise UserError(f"cannot read the CSV: {first_line(exc)}; "
                        "expected a header row and one row per item", file=path) from None
    return raw


def _choose_columns(path: Path, columns: list[str], id_col: str | None, raters: list[str] | None,
                    flags: list[str] | None) -> list[tuple[str, str, str]]:
    """(rater, flag, column) for every rating column to read, in rater then flag order."""
    if raters is None:
        raters = infer_raters(columns)
        if not raters:
            raise UserError("no rating columns: expected columns named <rater>_<flag>, e.g. "
                            f"human_meta; the header has {', '.join(columns)}", file=path, line=1)
    by_rater: dict[str, list[str]] = {}
    for rater in raters:
        prefix = f"{rater}_"
        found = [c[len(prefix):] for c in columns if c.startswith(prefix) and len(c) > len(prefix)]
        if not found:
            raise UserError(f"no columns for rater '{rater}': expected columns named {rater}_<flag>; "
                            f"the header has {', '.join(columns)}", file=path, line=1)
        by_rater[rater] = found
    if flags is None:
        flags = [f for f in by_rater[raters[0]] if all(f in by_rater[r] for r in raters)]
        if not flags:
            raise UserError(f"no flag has a column for every rater ({', '.join(raters)}); "
                            "pass the flags to compare", file=path, line=1)
    chosen = []
    for rater in raters:
        for flag in flags:
            if flag not in by_rater[rater]:
                raise UserError(f"missing column '{rater}_{flag}' (rater '{rater}', flag '{flag}'); "
                                "add it or leave the flag out", file=path, line=1)
            chosen.append((rater, flag, f"{rater}_{flag}"))
    return chosen


def infer_raters(columns: list[str]) -> list[str]:
    """Column prefixes (before the first `_`) that share a flag suffix with another prefix.

    Requiring a shared suffix keeps bookkeeping columns such as `run_id` from posing as raters.
    """
    suffixes: dict[str, set[str]] = {}
    for column in columns:
        prefix, sep, suffix = column.partition("_")
        if sep and prefix and suffix:
            suffixes.setdefault(prefix, set()).add(suffix)
    return [p for p, s in suffixes.items() if any(s & t for q, t in suffixes.items() if q != p)]


def _check_rows(con: duckdb.DuckDBPyConnection, raw: str, path: Path, id_col: str | None) -> None:
    """At least one data row; ids, when given, present and unique."""
    if one_row(con, f"SELECT count(*) FROM {raw}")[0] == 0:
        raise UserError("the CSV has a header but no data rows", file=path, line=2)
    if id_col is None:
        return
    col = sql_ident(id_col)
    row = con.execute(f"SELECT rowid FROM {raw} WHERE {col} IS NULL OR trim({col}) = '' "
                      "ORDER BY rowid LIMIT 1").fetchone()
    if row:
        raise UserError(f"column '{id_col}' is empty; every row needs an item id",
                        file=path, line=csv_line(path, row[0]))
    row = con.execute(f"SELECT rowid, {col} FROM (SELECT rowid, {col}, row_number() OVER "
                      f"(PARTITION BY {col} ORDER BY rowid) AS k FROM {raw}) WHERE k > 1 "
                      "ORDER BY rowid LIMIT 1").fetchone()
    if row:
        raise UserError(f"column '{id_col}': item id '{row[1]}' appears twice; ids must be unique",
                        file=path, line=csv_line(path, row[0]))


def _long_sql(raw: str, id_col: str | None, chosen: list[tuple[str, str, str]]) -> str:
    """UNION ALL of one SELECT per rating column: the unpivot, with the record kept for errors."""
    item = f"CAST({sql_ident(id_col)} AS VARCHAR)" if id_col else "CAST(rowid + 1 AS VARCHAR)"
    rater_pos = {r: i for i, r in enumerate(dict.fromkeys(r for r, _, _ in chosen))}
    flag_pos = {f: i for i, f in enumerate(dict.fromkeys(f for _, f, _ in chosen))}
    return "\nUNION ALL\n".join(
        f"SELECT {item} AS item_id, {sql_str(rater)} AS rater, {sql_str(flag)} AS flag, "
        f"{sql_ident(column)} AS cell, {sql_str(column)} AS col, rowid AS rec, "
        f"{rater_pos[rater]} AS rater_pos, {flag_pos[flag]} AS flag_pos FROM {raw}"
        for rater, flag, column in chosen
    )


def _check_values(con: duckdb.DuckDBPyConnection, long_sql: str, path: Path) -> None:
    """The first cell (in file order) that is neither empty nor a boolean word is an error."""
    words = sql_list(("",) + TRUE_WORDS + FALSE_WORDS)
    bad = con.execute(f"SELECT rec, col, cell FROM ({long_sql}) WHERE cell IS NOT NULL AND "
                      f"lower(trim(cell)) NOT IN {words} ORDER BY rec, col LIMIT 1").fetchone()
    if bad:
        rec, col, cell = bad
        raise UserError(f"column '{col}': cannot read '{cell}' as a flag; write true/false, 1/0 or "
                        "yes/no, or leave the cell empty for 'not flagged'",
                        file=path, line=csv_line(path, rec))


def csv_line(path: Path, record: int) -> int:
    """The 1-based file line where data record `record` (0-based, after the header) starts.

    Only used on the error path; it re-reads the file with the csv module so that quoted
    fields spanning several lines are counted right (then it is not simply record + 2).
    """
    try:
        with open(path, newline="", encoding="utf-8", errors="replace") as handle:
            reader = csv.reader(handle)
            next(reader, None)
            start = reader.line_num + 1
            for index, _ in enumerate(reader):
                if index == record:
                    return start
                start = reader.line_num + 1
    except (OSError, csv.Error):
        pass
    return record + 2

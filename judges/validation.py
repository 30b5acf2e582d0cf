"""Human validation of the judges: export a stratified sample for coders, import their codes.

The export shows each sampled message with its context and empty flag columns, never the judges'
labels, so human coders are not anchored. The import reads the same CSV back (values true/false,
1/0, yes/no; empty = not flagged) into `human_codes`, after which `sociolab agreement` includes
human vs each judge.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

from sociolab.analysis.ratings import FALSE_WORDS as RATING_FALSE, TRUE_WORDS as RATING_TRUE
from sociolab.base.errors import UserError
from sociolab.orchestrator.store import Store

from .codebook import Codebook

STRATA = {"series": "coalesce(r.series, r.suite, '')", "run": "m.run_id", "agent": "m.sender_name",
          "model": "coalesce(a.model_label, a.model)", "round": "m.round::VARCHAR"}
TRUE_WORDS = frozenset(RATING_TRUE)
FALSE_WORDS = frozenset(RATING_FALSE) | {""}


def export_sample(store: Store, codebook: Codebook, path: Path, *, n: int, stratify: str = "series",
                  context: int = 3, seed: int = 0) -> dict[str, int]:
    """Write a stratified sample of n codable messages to `path`; returns rows per stratum."""
    if stratify not in STRATA:
        raise UserError(f"unknown --stratify '{stratify}' (use one of: {', '.join(STRATA)})")
    rows = sample_rows(store, n, STRATA[stratify], seed)
    if not rows:
        raise UserError(f"no codable messages in {store.path}; run a scenario or import data first")
    flags = codebook.flag_names
    graded = codebook.graded
    header = ["id", "stratum", "run_id", "round", "sender", "context", "text", "coder"]
    header += flags + [f"{f}_level" for f in graded]
    with path.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        for message_id, stratum, run_id, rnd, sender, text in rows:
            ctx = context_before(store, message_id, context)
            writer.writerow([message_id, stratum, run_id, rnd, sender, ctx, text, ""] + [""] * (len(flags) + len(graded)))
    counts: dict[str, int] = {}
    for row in rows:
        counts[row[1]] = counts.get(row[1], 0) + 1
    return counts


def sample_rows(store: Store, n: int, stratum_sql: str, seed: int) -> list[tuple]:
    """Proportional allocation across strata (at least one each while n allows), seeded order."""
    return store.con.execute(f"""
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


def context_before(store: Store, message_id: str, k: int) -> str:
    if k <= 0:
        return ""
    rows = store.con.execute("""
        SELECT sender_name, content FROM messages
         WHERE run_id = (SELECT run_id FROM messages WHERE message_id = ?)
           AND seq < (SELECT seq FROM messages WHERE message_id = ?) AND sender <> 'system'
         ORDER BY seq DESC LIMIT ?""", [message_id, message_id, k]).fetchall()
    return "\n".join(f"[{name}]: {text}" for name, text in reversed(rows))


@dataclass
class ImportResult:
    coders: dict[str, int]
    codes: int


def import_codes(store: Store, codebook: Codebook, path: Path, *, coder: str | None = None) -> ImportResult:
    """Read a coded sample CSV into human_codes; every problem names the file and line."""
    if not path.is_file():
        raise UserError("no such CSV file", file=path)
    rows: list[tuple] = []
    coders: dict[str, int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        flags = [f for f in codebook.flag_names if f in (reader.fieldnames or [])]
        if not reader.fieldnames or "id" not in reader.fieldnames or not flags:
            raise UserError(f"expected an 'id' column and flag columns ({', '.join(codebook.flag_names)})",
                            file=path, line=1)
        known = known_ids(store)
        for row in reader:
            line = reader.line_num
            who = (row.get("coder") or "").strip() or coder
            if not who:
                raise UserError("no coder: fill the 'coder' column or pass --coder NAME", file=path, line=line)
            if row["id"] not in known:
                raise UserError(f"message id '{row['id']}' is not in {store.path}", file=path, line=line)
            for flag in flags:
                value = parse_cell(row.get(flag), path, line, flag)
                level = (row.get(f"{flag}_level") or "").strip() or None
                if level and level not in codebook.graded.get(flag, []):
                    raise UserError(f"column {flag}_level: '{level}' is not one of "
                                    f"{codebook.graded.get(flag) or 'no levels'}", file=path, line=line)
                rows.append((row["id"], who, flag, value, level if value else None, str(path)))
            coders[who] = coders.get(who, 0) + 1
    store.replace_human_codes(rows)
    return ImportResult(coders, len(rows))


def parse_cell(value: str | None, path: Path, line: int, flag: str) -> bool:
    word = (value or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"column {flag}: '{value}' is not a yes/no value (use true/false, 1/0, yes/no, or leave "
                    "empty for no)", file=path, line=line)


def known_ids(store: Store) -> set[str]:
    return {r[0] for r in store.con.execute("SELECT message_id FROM messages").fetchall()}

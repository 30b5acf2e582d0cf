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
from sociolab.base.userfiles import regular_file
from sociolab.orchestrator.rows import HumanCodeRow
from sociolab.orchestrator.store import SAMPLE_STRATA, Store

from .codebook import Codebook

TRUE_WORDS = frozenset(RATING_TRUE)
FALSE_WORDS = frozenset(RATING_FALSE) | {""}


def export_sample(store: Store, codebook: Codebook, path: Path, *, n: int, stratify: str = "series",
                  context: int = 3, seed: int = 0) -> dict[str, int]:
    """Write a stratified sample of n codable messages to `path`; returns rows per stratum."""
    if stratify not in SAMPLE_STRATA:
        raise UserError(f"unknown --stratify '{stratify}' (use one of: {', '.join(SAMPLE_STRATA)})")
    rows = store.sample_messages(n, stratify, seed)
    if not rows:
        raise UserError(f"no codable messages in {store.path}; run a scenario or import data first")
    flags = codebook.flag_names
    graded = codebook.graded
    header = ["id", "stratum", "run_id", "round", "sender", "context", "text", "coder"]
    header += flags + [f"{f}_level" for f in graded]
    try:
        with path.open("w", newline="", encoding="utf-8") as fh:
            writer = csv.writer(fh)
            writer.writerow(header)
            for row in rows:
                ctx = context_before(store, row.message_id, context)
                writer.writerow([row.message_id, row.stratum, row.run_id, row.round, row.sender_name, ctx,
                                 row.content, ""] + [""] * (len(flags) + len(graded)))
    except OSError as exc:  # a full disk or a refused write: the sample is not there, say so in one line
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    counts: dict[str, int] = {}
    for row in rows:
        counts[row.stratum] = counts.get(row.stratum, 0) + 1
    return counts


def context_before(store: Store, message_id: str, k: int) -> str:
    """The k messages before this one, as `[Name]: text` lines, oldest first."""
    if k <= 0:
        return ""
    return "\n".join(f"[{name}]: {text}" for name, text in store.messages_before(message_id, k))


@dataclass
class ImportResult:
    coders: dict[str, int]
    codes: int


MAX_FIELD = 16 * 1024 * 1024  # a message's text with its context; the csv module's default is 128 KiB


def import_codes(store: Store, codebook: Codebook, path: Path, *, coder: str | None = None) -> ImportResult:
    """Read a coded sample CSV into human_codes; every problem names the file and line."""
    regular_file(path, "CSV file")
    csv.field_size_limit(max(csv.field_size_limit(), MAX_FIELD))
    rows: list[HumanCodeRow] = []
    coders: dict[str, int] = {}
    first_seen: dict[tuple[str, str], int] = {}
    with path.open(newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        try:
            flags = [f for f in codebook.flag_names if f in (reader.fieldnames or [])]
            if not reader.fieldnames or "id" not in reader.fieldnames or not flags:
                raise UserError(f"expected an 'id' column and flag columns ({', '.join(codebook.flag_names)})",
                                file=path, line=1)
            known = store.message_ids()
            line = reader.line_num + 1  # a record may span lines (texts hold newlines): cite where it starts
            for row in reader:
                who = (row.get("coder") or "").strip() or coder
                if not who:
                    raise UserError("no coder: fill the 'coder' column or pass --coder NAME", file=path, line=line)
                if row["id"] not in known:
                    raise UserError(f"message id '{row['id']}' is not in {store.path}", file=path, line=line)
                earlier = first_seen.setdefault((row["id"], who), line)
                if earlier != line:
                    raise UserError(f"message id '{row['id']}' is coded twice by {who} (first on line {earlier}); "
                                    "keep one row", file=path, line=line)
                rows += coded_row(row, who, flags, codebook, path, line)
                coders[who] = coders.get(who, 0) + 1
                line = reader.line_num + 1
        except UnicodeDecodeError:
            raise UserError("not UTF-8 text; save the CSV as UTF-8", file=path, line=reader.line_num + 1) from None
        except csv.Error as exc:  # a NUL byte, a field past the size bound, ...
            raise UserError(f"not a readable CSV: {exc}", file=path, line=reader.line_num + 1) from None
    if not rows:
        raise UserError("no coded rows: the CSV has its header but no record; fill the flag columns of the "
                        "exported sample and import it again", file=path, line=2)
    store.replace_human_codes(rows)
    return ImportResult(coders, len(rows))


def coded_row(row: dict[str, str], who: str, flags: list[str], codebook: Codebook, path: Path,
              line: int) -> list[HumanCodeRow]:
    """One human code per flag column of a CSV record."""
    out = []
    for flag in flags:
        value = parse_cell(row.get(flag), path, line, flag)
        level = (row.get(f"{flag}_level") or "").strip() or None
        if level and level not in codebook.graded.get(flag, []):
            raise UserError(f"column {flag}_level: '{level}' is not one of "
                            f"{codebook.graded.get(flag) or 'no levels'}", file=path, line=line)
        out.append(HumanCodeRow(message_id=row["id"], coder=who, flag=flag, value=value,
                                level=level if value else None, source=str(path)))
    return out


def parse_cell(value: str | None, path: Path, line: int, flag: str) -> bool:
    word = (value or "").strip().lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    raise UserError(f"column {flag}: '{value}' is not a yes/no value (use true/false, 1/0, yes/no, or leave "
                    "empty for no)", file=path, line=line)

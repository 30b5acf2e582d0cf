"""The confusion cells of the `judge_agreement` view, without its self-join of the codes.

The view joins the codes with themselves on (message, codebook, flag) to pair up two judges'
values: the join's hash table holds every coded row of the store (1.6 GB of RSS on 22M codes).
Here each message's codes become three bit masks instead (which judges coded each flag, which said
True, which said False; bit = flag slot x judge index, as `analysis.agreement` packs raters), one
hash aggregate per page of messages (`analysis.profiles.message_pages`) counts the distinct mask
patterns, and the cells per flag and judge pair are SQL over those few patterns. The counts are
the view's: a pair counts on a message and flag when both judges coded it (`status = 'coded'`);
tt/tf/ft/ff split those by the two values, so a coded row without a value counts in n only, as in
the view.
"""

from __future__ import annotations

from typing import Any, Sequence

from sociolab.base.errors import UserError

from .profiles import Page, connection, page_sql
from .ratings import sql_str
from .scratch import create_scratch, drop_scratch

MAX_JUDGES = 64       # one UBIGINT bit per judge (and flag slot)


def coded_judges_and_flags(con: Any, codebook_id: str) -> tuple[list[str], list[str]]:
    """The judges and flags with coded rows under the codebook, each sorted (the view pairs judges
    with `judge_a < judge_b`: Python's order of str is DuckDB's byte order of UTF-8)."""
    rows = connection(con).execute(
        "SELECT judge, flag FROM codes WHERE codebook_id = ? AND status = 'coded' GROUP BY ALL",
        [codebook_id]).fetchall()
    return sorted({j for j, _ in rows}), sorted({f for _, f in rows})


def flags_per_word(judges: Sequence[str], flags: Sequence[str]) -> int:
    """How many flags' judge bits share one 64-bit word."""
    return max(1, min(len(flags), MAX_JUDGES // len(judges)))


def mask_patterns_sql(codebook_id: str, judges: Sequence[str], flags: Sequence[str], page: Page) -> str:
    """Per word of flags (`chunk`), the distinct (coded, True, False) mask patterns of one page's
    messages and how many messages have each (`w`): one hash aggregate over the page's messages,
    then one over the patterns."""
    r, k = len(judges), flags_per_word(judges, flags)
    fbit = " ".join(f"WHEN {sql_str(f)} THEN {1 << (i % k) * r}::UBIGINT" for i, f in enumerate(flags))
    jbit = " ".join(f"WHEN {sql_str(j)} THEN {1 << i}::UBIGINT" for i, j in enumerate(judges))
    chunk = "CASE flag " + " ".join(f"WHEN {sql_str(f)} THEN {i // k}" for i, f in enumerate(flags)) + " END"
    zero = "0::UBIGINT"
    return f"""
        WITH bits AS (
            SELECT message_id, value, {chunk} AS chunk, (CASE flag {fbit} END) * (CASE judge {jbit} END) AS bv
            FROM codes WHERE codebook_id = {sql_str(codebook_id)} AND status = 'coded' AND {page_sql(page)}
        ), messages AS (
            SELECT chunk, bit_or(bv) AS pm, coalesce(bit_or(bv) FILTER (WHERE value), {zero}) AS tm,
                   coalesce(bit_or(bv) FILTER (WHERE NOT value), {zero}) AS fm
            FROM bits GROUP BY chunk, message_id
        )
        SELECT chunk, pm, tm, fm, count(*)::BIGINT AS w FROM messages GROUP BY ALL
    """


def cells_sql(patterns: str, judges: Sequence[str], flags: Sequence[str]) -> str:
    """(flag, judge_a, judge_b, n, tt, tf, ft, ff) for every flag and judge pair (a < b) that both
    coded on some message, from the pages' pattern rows in table `patterns`."""
    r, k = len(judges), flags_per_word(judges, flags)
    mask = f"{(1 << r) - 1}::UBIGINT"
    names = ", ".join(sql_str(f) for f in flags)
    who = ", ".join(sql_str(j) for j in judges)

    def bits(ma: str, mb: str) -> str:
        """Judge a's bit of mask ma and judge b's bit of mask mb are both set."""
        return f"((({ma} >> ia) & 1) = 1 AND (({mb} >> ib) & 1) = 1)"
    return f"""
        WITH slots AS (
            SELECT chunk * {k} + j AS fi, (pm >> (j * {r})) & {mask} AS p, (tm >> (j * {r})) & {mask} AS t,
                   (fm >> (j * {r})) & {mask} AS f, w
            FROM {patterns}, range({k}) AS s(j) WHERE chunk * {k} + j < {len(flags)}
        ), pairs AS (SELECT a.i AS ia, b.i AS ib FROM range({r}) a(i), range({r}) b(i) WHERE a.i < b.i)
        SELECT ([{names}])[fi + 1] AS flag, ([{who}])[ia + 1] AS judge_a, ([{who}])[ib + 1] AS judge_b,
               sum(w)::BIGINT AS n,
               coalesce(sum(w) FILTER (WHERE {bits('t', 't')}), 0)::BIGINT AS tt,
               coalesce(sum(w) FILTER (WHERE {bits('t', 'f')}), 0)::BIGINT AS tf,
               coalesce(sum(w) FILTER (WHERE {bits('f', 't')}), 0)::BIGINT AS ft,
               coalesce(sum(w) FILTER (WHERE {bits('f', 'f')}), 0)::BIGINT AS ff
        FROM slots, pairs WHERE {bits('p', 'p')}
        GROUP BY fi, ia, ib
    """


def judge_cells(con: Any, codebook_id: str, pages: Sequence[Page]) -> str:
    """A scratch table of the view's confusion cells for one codebook (see the module docstring),
    scanned a page of messages at a time; the caller drops it (`drop_scratch`)."""
    con = connection(con)
    judges, flags = coded_judges_and_flags(con, codebook_id)
    if len(judges) > MAX_JUDGES:
        raise UserError(f"{len(judges)} judges coded {codebook_id}; judge agreement compares at most {MAX_JUDGES}")
    if len(judges) < 2:
        return create_scratch(con, "agreement_cells", "SELECT NULL::VARCHAR AS flag, NULL::VARCHAR AS judge_a, "
                              "NULL::VARCHAR AS judge_b, 0::BIGINT AS n, 0::BIGINT AS tt, 0::BIGINT AS tf, "
                              "0::BIGINT AS ft, 0::BIGINT AS ff WHERE FALSE", "judge agreement")
    patterns = create_scratch(con, "agreement_masks", mask_patterns_sql(codebook_id, judges, flags, pages[0]),
                              "judge agreement")
    try:
        for page in pages[1:]:
            con.execute(f"INSERT INTO {patterns} {mask_patterns_sql(codebook_id, judges, flags, page)}")
        return create_scratch(con, "agreement_cells", cells_sql(patterns, judges, flags), "judge agreement")
    finally:
        drop_scratch(con, patterns)

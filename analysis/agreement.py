"""Inter-rater agreement on binary flags, computed in DuckDB SQL.

Input is the long ratings shape of `analysis.ratings`: `(item_id, rater, flag, value)`, one row
per item x rater x flag; NULL values (uncodable) are left out. Everything rests on one scan:

1. Per item (and chunk of flags), two bit masks: which raters rated it (`pm`) and which said
   True (`tm`); bit = flag_slot * R + rater_index (up to 64 bits a word). One hash aggregate over 1M items instead of a
   self-join or a 7M-group (item, flag) aggregate.
2. The masks are counted as *patterns* per flag: `(flag, present, true, weight)`. There are at
   most 3^R of them per flag, whatever the number of items; that small table is the
   `AgreementStats` temp table.
3. Kappa, confusion counts, prevalence and Krippendorff's alpha are SQL over the patterns.

Because items are binary, a pair's items fall into four cells (tt, tf, ft, ff), so the bootstrap
over items is a multinomial draw over those four counts: exact and fast (numpy).

Definitions (docs/agreement.md has the full text):
  kappa = (po - pe) / (1 - pe), computed as sklearn does: 1 - n(tf + ft) / (a1 b0 + a0 b1),
  with a1/a0 rater a's True/False counts and b1/b0 rater b's. When pe == 1 (both raters gave one
  and the same value to every shared item) kappa is NaN, as `cohen_kappa_score` returns.
  alpha (nominal) = 1 - (n - 1) * sum_u t_u f_u / (m_u - 1) / (n_T n_F) over units with m_u >= 2
  values; NaN when there is no variation (n_T n_F == 0) or no unit with two values (where the
  `krippendorff` package raises).
"""

from __future__ import annotations

import dataclasses
import math
import re
import zlib
from dataclasses import dataclass
from typing import Any, Sequence, TypedDict

import duckdb
import numpy as np

from sociolab.base.errors import UserError
from sociolab.base.errors import first_line

from .scratch import create_scratch, drop_scratch, one_row

from .ratings import sql_str

MAX_RATERS = 64          # one UBIGINT bit per rater (and flag slot)
NAN = float("nan")
REQUIRED_COLUMNS = ("item_id", "rater", "flag", "value")


# ---- rows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgreementRow:
    """One flag x rater pair, over the items both raters rated (non-NULL)."""
    flag: str
    rater_a: str
    rater_b: str
    n: int
    tt: int                      # a True, b True
    tf: int                      # a True, b False
    ft: int                      # a False, b True
    ff: int                      # a False, b False
    percent_agreement: float     # (tt + ff) / n, as a share in [0, 1]
    prevalence_a: float          # share of True by rater a
    prevalence_b: float
    prevalence_pooled: float     # share of True over both raters' values
    kappa: float
    kappa_ci_low: float = NAN
    kappa_ci_high: float = NAN


@dataclass(frozen=True)
class AlphaRow:
    """Krippendorff's alpha (nominal) for one flag over all raters."""
    flag: str
    raters: int                  # raters with at least one value for the flag
    units: int                   # items with at least two values (pairable)
    values: int                  # pairable values
    prevalence: float            # share of True among pairable values
    alpha: float


@dataclass(frozen=True)
class MeanKappaRow:
    rater_a: str
    rater_b: str
    mean_kappa: float            # mean over flags whose kappa is defined
    flags: int                   # flags averaged
    flags_undefined: int         # flags with NaN kappa, skipped


@dataclass(frozen=True)
class PrevalenceRow:
    flag: str
    rater: str
    n: int                       # non-NULL ratings
    n_true: int
    prevalence: float
    excluded: int = 0            # NULL (uncodable) ratings, left out of everything


class AgreementSettings(TypedDict):
    ci: bool
    n_boot: int
    seed: int
    ci_level: float
    ci_method: str


class AgreementReport(TypedDict):
    """What `agreement_report` returns (`to_json` makes it plain data)."""
    raters: list[str]
    flags: list[str]
    pairs: list[AgreementRow]
    mean_kappa: list[MeanKappaRow]
    alpha: list[AlphaRow]
    prevalence: list[PrevalenceRow]          # with NULL/uncodable counts
    settings: AgreementSettings


@dataclass(frozen=True)
class AgreementStats:
    """The pattern table of one scan, reusable by agreement_table, alpha_table, prevalence_table."""
    table: str
    raters: tuple[str, ...]
    flags: tuple[str, ...]
    source: str

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DROP TABLE IF EXISTS {self.table}")


# ---- the scan -------------------------------------------------------------------------------

def source_relation(con: duckdb.DuckDBPyConnection, source: str) -> str:
    """`source` as something to put after FROM: a table/view name as is, a query in parentheses.

    Also checks the ratings columns are there, so a wrong source fails with one clear line.
    """
    text = source.strip().rstrip(";")
    rel = text if re.fullmatch(r"[A-Za-z_][\w.]*", text) else f"({text})"
    try:
        cols = {r[0] for r in con.execute(f"DESCRIBE SELECT * FROM {rel} AS src").fetchall()}
    except duckdb.Error as exc:
        raise UserError(f"cannot read the ratings: {first_line(exc)}") from None
    missing = [c for c in REQUIRED_COLUMNS if c not in cols]
    if missing:
        raise UserError(f"the ratings source lacks column(s) {', '.join(missing)}; it needs "
                        "item_id, rater, flag, value (see analysis.ratings)")
    return rel


def agreement_stats(con: duckdb.DuckDBPyConnection, source: str, *, raters: Sequence[str] | None = None,
                    flags: Sequence[str] | None = None) -> AgreementStats:
    """Scan the ratings once and keep the per-flag pattern counts in a small temp table.

    `raters`/`flags` select and order what is compared (pairs are (raters[i], raters[j]), i < j);
    by default every rater and flag with a non-NULL value, in alphabetical order.
    """
    rel = source_relation(con, source)
    if raters is None or flags is None:
        found = con.execute(f"SELECT flag, rater FROM {rel} AS src WHERE value IS NOT NULL "
                            "GROUP BY ALL").fetchall()     # one extra scan; pass both lists to skip it
        raters = raters if raters is not None else sorted({r for _, r in found})
        flags = flags if flags is not None else sorted({f for f, _ in found})
    raters, flags = tuple(dict.fromkeys(raters)), tuple(dict.fromkeys(flags))
    if len(raters) > MAX_RATERS:
        raise UserError(f"{len(raters)} raters; agreement compares at most {MAX_RATERS} at once: "
                        "choose some with --raters")
    table = create_scratch(con, "agreement_patterns", _patterns_sql(rel, raters, flags), "agreement")
    if one_row(con, f"SELECT coalesce(sum(dup), 0) FROM {table}")[0]:
        drop_scratch(con, table)
        raise _duplicates_error(con, rel)
    return AgreementStats(table, raters, flags, source)


def _patterns_sql(rel: str, raters: Sequence[str], flags: Sequence[str]) -> str:
    """SQL for (fi, p, t, w, dup): per flag index, rater-presence and True bit patterns, counted.

    Each row's bit is a product of two CASE lookups (flag slot x rater), so the 14M-row pass does
    two cheap string lookups and one hash aggregate; ratings of other raters/flags get a NULL bit
    and drop out without a filter. Flags are packed K to a 64-bit word (K = 64 // R): whenever
    flags x raters <= 64 there is exactly one group per item.
    """
    if not raters or not flags:
        return "SELECT 0 AS fi, 0::UBIGINT AS p, 0::UBIGINT AS t, 0::BIGINT AS w, 0::BIGINT AS dup WHERE FALSE"
    r, k = len(raters), max(1, min(len(flags), MAX_RATERS // len(raters)))
    fbit = " ".join(f"WHEN {sql_str(f)} THEN {1 << (i % k) * r}::UBIGINT" for i, f in enumerate(flags))
    rbit = " ".join(f"WHEN {sql_str(x)} THEN {1 << i}::UBIGINT" for i, x in enumerate(raters))
    chunks = len(flags) > k
    chunk = ("CASE flag " + " ".join(f"WHEN {sql_str(f)} THEN {i // k}" for i, f in enumerate(flags))
             + " END" if chunks else "0")
    mask = (1 << r) - 1
    return f"""
        WITH bits AS (
            SELECT item_id, value, {chunk} AS chunk, (CASE flag {fbit} END) * (CASE rater {rbit} END) AS bv
            FROM {rel} AS src WHERE value IS NOT NULL
        ), items AS (
            SELECT {"chunk" if chunks else "0 AS chunk"}, bit_or(bv) AS pm,
                   coalesce(bit_or(bv) FILTER (WHERE value), 0::UBIGINT) AS tm, count(bv) AS m
            FROM bits GROUP BY {"chunk, " if chunks else ""}item_id
        ), pat AS (
            SELECT chunk, pm, tm, count(*) AS w, count_if(m <> bit_count(pm)) AS dup
            FROM items WHERE pm IS NOT NULL GROUP BY chunk, pm, tm
        )
        SELECT chunk * {k} + j AS fi, (pm >> (j * {r})) & {mask}::UBIGINT AS p,
               (tm >> (j * {r})) & {mask}::UBIGINT AS t, sum(w)::BIGINT AS w, sum(dup)::BIGINT AS dup
        FROM pat, range({k}) AS slots(j)
        WHERE chunk * {k} + j < {len(flags)}
        GROUP BY ALL HAVING p <> 0
    """


def _duplicates_error(con: duckdb.DuckDBPyConnection, rel: str) -> UserError:
    """Two values from one rater for one item and flag make every statistic ambiguous: refuse."""
    rows = con.execute(f"SELECT item_id, rater, flag, count(*) FROM {rel} AS src WHERE value IS NOT NULL "
                       "GROUP BY ALL HAVING count(*) > 1 ORDER BY ALL LIMIT 3").fetchall()
    example = "; ".join(f"item {i} / rater {r} / flag {f}: {c} values" for i, r, f, c in rows)
    return UserError("some items are rated twice by the same rater for the same flag "
                     f"({example}); keep one rating each, e.g. choose one codebook with --codebook")


def _stats(con: duckdb.DuckDBPyConnection, source: "str | AgreementStats", raters, flags) -> tuple[AgreementStats, bool]:
    """Reuse given stats, or scan the source (and say so, so the caller drops the temp table)."""
    if isinstance(source, AgreementStats):
        return source, False
    return agreement_stats(con, source, raters=raters, flags=flags), True


# ---- statistics over the patterns -----------------------------------------------------------

def pair_counts_sql(stats: AgreementStats) -> str:
    """Confusion counts per flag and rater pair, then kappa, agreement and prevalence, in SQL."""
    r = len(stats.raters)
    return f"""
        WITH pairs AS (SELECT a.i AS ia, b.i AS ib FROM range({r}) a(i), range({r}) b(i) WHERE a.i < b.i),
        cells AS (
            SELECT fi, ia, ib, w, ((t >> ia) & 1) = 1 AS va, ((t >> ib) & 1) = 1 AS vb
            FROM {stats.table}, pairs WHERE ((p >> ia) & 1) = 1 AND ((p >> ib) & 1) = 1
        ), counts AS (
            SELECT fi, ia, ib,
                   coalesce(sum(w) FILTER (WHERE va AND vb), 0)::BIGINT AS tt,
                   coalesce(sum(w) FILTER (WHERE va AND NOT vb), 0)::BIGINT AS tf,
                   coalesce(sum(w) FILTER (WHERE NOT va AND vb), 0)::BIGINT AS ft,
                   coalesce(sum(w) FILTER (WHERE NOT va AND NOT vb), 0)::BIGINT AS ff
            FROM cells GROUP BY fi, ia, ib
        ), stats AS (
            SELECT *, tt + tf + ft + ff AS n,
                   (tt + tf)::DOUBLE AS a1, (ft + ff)::DOUBLE AS a0,
                   (tt + ft)::DOUBLE AS b1, (tf + ff)::DOUBLE AS b0
            FROM counts
        )
        SELECT (?::VARCHAR[])[fi + 1] AS flag, (?::VARCHAR[])[ia + 1] AS rater_a, (?::VARCHAR[])[ib + 1] AS rater_b,
               n, tt, tf, ft, ff,
               (tt + ff) / n AS percent_agreement, a1 / n AS prevalence_a, b1 / n AS prevalence_b,
               (a1 + b1) / (2 * n) AS prevalence_pooled,
               CASE WHEN a1 * b0 + a0 * b1 = 0 THEN 'NaN'::DOUBLE
                    ELSE 1 - n * (tf + ft)::DOUBLE / (a1 * b0 + a0 * b1) END AS kappa
        FROM stats WHERE n > 0 ORDER BY fi, ia, ib
    """


def agreement_table(con: duckdb.DuckDBPyConnection, source_sql_or_table: "str | AgreementStats", *,
                    raters: Sequence[str] | None = None, flags: Sequence[str] | None = None,
                    ci: bool = True, n_boot: int = 1000, seed: int = 0) -> list[AgreementRow]:
    """Cohen's kappa and its ingredients for every flag and rater pair (pairs with n > 0)."""
    stats, own = _stats(con, source_sql_or_table, raters, flags)
    try:
        names = [list(stats.flags), list(stats.raters), list(stats.raters)]
        rows = [AgreementRow(*r) for r in con.execute(pair_counts_sql(stats), names).fetchall()]
    finally:
        if own:
            stats.drop(con)
    if ci:
        rows = [with_bootstrap_ci(row, n_boot=n_boot, seed=seed) for row in rows]
    return rows


def alpha_sql(stats: AgreementStats) -> str:
    """Krippendorff's alpha (nominal) per flag from the coincidence matrix, in SQL.

    For binary values the coincidence matrix has one off-diagonal cell:
    o_TF = sum_u t_u f_u / (m_u - 1) over units with m_u >= 2 values, n_T and n_F are the pairable
    True/False totals, n = n_T + n_F, and alpha = 1 - (n - 1) o_TF / (n_T n_F).
    """
    return f"""
        WITH u AS (SELECT fi, w, bit_count(t) AS tu, bit_count(p) AS mu, p FROM {stats.table}),
        agg AS (
            SELECT fi, bit_count(bit_or(p)) AS raters,
                   coalesce(sum(w) FILTER (WHERE mu >= 2), 0)::BIGINT AS units,
                   coalesce(sum(w * tu) FILTER (WHERE mu >= 2), 0)::BIGINT AS n_true,
                   coalesce(sum(w * (mu - tu)) FILTER (WHERE mu >= 2), 0)::BIGINT AS n_false,
                   coalesce(sum(w * tu * (mu - tu) / (mu - 1)::DOUBLE) FILTER (WHERE mu >= 2), 0) AS o_tf
            FROM u GROUP BY fi
        )
        SELECT (?::VARCHAR[])[fi + 1] AS flag, raters, units, n_true + n_false AS values,
               CASE WHEN n_true + n_false = 0 THEN 'NaN'::DOUBLE ELSE n_true / (n_true + n_false) END,
               CASE WHEN n_true * n_false = 0 THEN 'NaN'::DOUBLE
                    ELSE 1 - (n_true + n_false - 1) * o_tf / (n_true::DOUBLE * n_false) END AS alpha
        FROM agg ORDER BY fi
    """


def alpha_table(con: duckdb.DuckDBPyConnection, source_sql_or_table: "str | AgreementStats", *,
                raters: Sequence[str] | None = None, flags: Sequence[str] | None = None) -> list[AlphaRow]:
    """Krippendorff's alpha per flag over all (selected) raters; missing ratings allowed."""
    stats, own = _stats(con, source_sql_or_table, raters, flags)
    try:
        return [AlphaRow(*r) for r in con.execute(alpha_sql(stats), [list(stats.flags)]).fetchall()]
    finally:
        if own:
            stats.drop(con)


def prevalence_table(con: duckdb.DuckDBPyConnection, source_sql_or_table: "str | AgreementStats", *,
                     raters: Sequence[str] | None = None,
                     flags: Sequence[str] | None = None) -> list[PrevalenceRow]:
    """Share of True per flag and rater over all of that rater's non-NULL ratings."""
    stats, own = _stats(con, source_sql_or_table, raters, flags)
    r = len(stats.raters)
    sql = f"""
        SELECT (?::VARCHAR[])[fi + 1], (?::VARCHAR[])[ri + 1], sum(w)::BIGINT AS n,
               coalesce(sum(w) FILTER (WHERE ((t >> ri) & 1) = 1), 0)::BIGINT AS n_true,
               n_true / n AS prevalence
        FROM {stats.table}, range({r}) AS rs(ri) WHERE ((p >> ri) & 1) = 1
        GROUP BY fi, ri ORDER BY fi, ri
    """
    try:
        return [PrevalenceRow(*row) for row in
                con.execute(sql, [list(stats.flags), list(stats.raters)]).fetchall()]
    finally:
        if own:
            stats.drop(con)


def excluded_counts(con: duckdb.DuckDBPyConnection, source: str) -> dict[tuple[str, str], int]:
    """NULL (uncodable) ratings per (flag, rater): left out of agreement, but reported."""
    rel = source_relation(con, source)
    rows = con.execute(f"SELECT flag, rater, count(*) FROM {rel} AS src WHERE value IS NULL "
                       "GROUP BY ALL").fetchall()
    return {(f, r): c for f, r, c in rows}


def mean_kappa(rows: Sequence[AgreementRow]) -> list[MeanKappaRow]:
    """Mean kappa over flags per rater pair, skipping flags where kappa is undefined (NaN).

    A mean over flags is how the study summarises judge agreement ("mean kappa 0.78"); a NaN flag
    (no variation) says nothing about agreement, so it is skipped and counted, not averaged as 0.
    """
    groups: dict[tuple[str, str], list[float]] = {}
    for row in rows:
        groups.setdefault((row.rater_a, row.rater_b), []).append(row.kappa)
    out = []
    for (a, b), kappas in groups.items():
        defined = [k for k in kappas if not math.isnan(k)]
        mean = sum(defined) / len(defined) if defined else NAN
        out.append(MeanKappaRow(a, b, mean, len(defined), len(kappas) - len(defined)))
    return out


# ---- bootstrap ------------------------------------------------------------------------------

def kappa_from_counts(tt, tf, ft, ff):
    """Kappa from confusion counts, vectorised over numpy arrays; NaN where pe == 1."""
    tt, tf, ft, ff = (np.asarray(x, dtype=float) for x in (tt, tf, ft, ff))
    n = tt + tf + ft + ff
    denom = (tt + tf) * (tf + ff) + (ft + ff) * (tt + ft)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(denom == 0, np.nan, 1 - n * (tf + ft) / denom)


def bootstrap_kappa_ci(tt: int, tf: int, ft: int, ff: int, *, n_boot: int = 1000,
                       rng: np.random.Generator, level: float = 0.95) -> tuple[float, float]:
    """Percentile CI for kappa by resampling items with replacement.

    Items are binary pairs, so a resample of n items is a multinomial draw of n over the four
    cells with the observed proportions: identical in distribution to resampling rows, at the cost
    of B x 4 numbers. Resamples where kappa is undefined (pe == 1) are dropped; if none is left,
    or the observed kappa itself is undefined, the CI is NaN.
    """
    counts = np.array([tt, tf, ft, ff], dtype=np.int64)
    n = int(counts.sum())
    if n == 0 or math.isnan(float(kappa_from_counts(tt, tf, ft, ff))):
        return NAN, NAN
    draws = rng.multinomial(n, counts / n, size=n_boot)
    kappas = kappa_from_counts(*draws.T)
    kappas = kappas[~np.isnan(kappas)]
    if kappas.size == 0:
        return NAN, NAN
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(kappas, [tail, 100 - tail])
    return float(low), float(high)


def row_rng(seed: int, row: AgreementRow) -> np.random.Generator:
    """One generator per flag and pair, so a CI does not depend on which other rows were asked for."""
    key = zlib.crc32(f"{row.flag}\x1f{row.rater_a}\x1f{row.rater_b}".encode())
    return np.random.default_rng([seed, key])


def with_bootstrap_ci(row: AgreementRow, *, n_boot: int = 1000, seed: int = 0) -> AgreementRow:
    low, high = bootstrap_kappa_ci(row.tt, row.tf, row.ft, row.ff, n_boot=n_boot, rng=row_rng(seed, row))
    return dataclasses.replace(row, kappa_ci_low=low, kappa_ci_high=high)


# ---- report ---------------------------------------------------------------------------------

def agreement_report(con: duckdb.DuckDBPyConnection, source: str, *, raters: Sequence[str] | None = None,
                     flags: Sequence[str] | None = None, ci: bool = True, n_boot: int = 1000,
                     seed: int = 0) -> AgreementReport:
    """Everything `sociolab agreement` shows, from a single scan of the ratings.

    Keys: raters, flags, pairs (AgreementRow), mean_kappa (MeanKappaRow), alpha (AlphaRow),
    prevalence (PrevalenceRow, with NULL/uncodable counts), settings. `to_json` makes it plain.
    """
    stats = agreement_stats(con, source, raters=raters, flags=flags)
    try:
        pairs = agreement_table(con, stats, ci=ci, n_boot=n_boot, seed=seed)
        alpha = alpha_table(con, stats)
        prevalence = prevalence_table(con, stats)
    finally:
        stats.drop(con)
    excluded = excluded_counts(con, source)
    prevalence = [dataclasses.replace(p, excluded=excluded.pop((p.flag, p.rater), 0)) for p in prevalence]
    prevalence += [PrevalenceRow(f, r, 0, 0, NAN, c) for (f, r), c in sorted(excluded.items())
                   if f in stats.flags and r in stats.raters]   # raters with only NULLs for a flag
    return {"raters": list(stats.raters), "flags": list(stats.flags), "pairs": pairs,
            "mean_kappa": mean_kappa(pairs), "alpha": alpha, "prevalence": prevalence,
            "settings": {"ci": ci, "n_boot": n_boot, "seed": seed, "ci_level": 0.95,
                         "ci_method": "percentile bootstrap over items"}}


def to_json(obj: Any) -> Any:
    """Plain JSON-ready data: rows become dicts, NaN becomes None (JSON has no NaN)."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_json(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, dict):
        return {str(k): to_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_json(v) for v in obj]
    if isinstance(obj, float) and math.isnan(obj):
        return None
    if isinstance(obj, np.generic):
        return to_json(obj.item())
    return obj


def fmt(value: float, digits: int = 3) -> str:
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def render_agreement(rows_or_report: "Sequence[AgreementRow] | AgreementReport", console) -> None:
    """Rich tables: kappa per flag and pair, mean kappa per pair, alpha per flag, prevalence.
    Flag and rater names are stored text, escaped so that they never act as markup."""
    from rich.markup import escape
    from rich.table import Table

    alpha: list[AlphaRow] = []
    prevalence: list[PrevalenceRow] = []
    if isinstance(rows_or_report, dict):
        pairs = rows_or_report["pairs"]
        means = rows_or_report.get("mean_kappa") or mean_kappa(pairs)
        alpha = rows_or_report.get("alpha") or []
        prevalence = rows_or_report.get("prevalence") or []
    else:
        pairs = list(rows_or_report)
        means = mean_kappa(pairs)
    table = Table("flag", "rater a", "rater b", "n", "kappa", "95% CI", "agree %", "prev a", "prev b",
                  "tt", "tf", "ft", "ff", title="Cohen's kappa per flag and rater pair")
    for r in pairs:
        ci = "" if math.isnan(r.kappa_ci_low) else f"[{fmt(r.kappa_ci_low)}, {fmt(r.kappa_ci_high)}]"
        table.add_row(escape(r.flag), escape(r.rater_a), escape(r.rater_b), str(r.n), fmt(r.kappa), escape(ci),
                      fmt(100 * r.percent_agreement, 1), fmt(r.prevalence_a), fmt(r.prevalence_b),
                      str(r.tt), str(r.tf), str(r.ft), str(r.ff))
    console.print(table)
    table = Table("rater a", "rater b", "mean kappa", "flags", "undefined", title="Mean kappa over flags")
    for m in means:
        table.add_row(escape(m.rater_a), escape(m.rater_b), fmt(m.mean_kappa), str(m.flags), str(m.flags_undefined))
    console.print(table)
    if alpha:
        table = Table("flag", "raters", "units", "values", "prevalence", "alpha",
                      title="Krippendorff's alpha (nominal)")
        for a in alpha:
            table.add_row(escape(a.flag), str(a.raters), str(a.units), str(a.values), fmt(a.prevalence), fmt(a.alpha))
        console.print(table)
    if any(p.excluded for p in prevalence):
        skipped = ", ".join(f"{p.rater}/{p.flag}: {p.excluded}" for p in prevalence if p.excluded)
        console.print(f"Left out as uncodable (NULL): {skipped}", markup=False)

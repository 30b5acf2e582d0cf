"""A discussion study's numbers from any judged store: `analyze()` -> one JSON-ready dict,
`render()` -> rich.

    from sociolab.orchestrator.store import Store
    from sociolab.analysis.analyze import analyze, render
    with Store.open_read_only("x.duckdb") as store:
        result = analyze(store.con)               # or analyze(store)

The dict (stable keys; NaN becomes None; docs/analysis.md shows an example):

- `settings`: rule, codebook_id, flags, trait_flags, separate_flags, comparisons ([a, b] pairs),
  comparisons_source ('default' | 'given'), comparisons_note (why there are none, else None),
  n_perm, seed, comp_filter ('none' | 'broadcast'), and one-line definitions.
- `data`: runs, runs_finished, runs_coded, agents_profiled, messages (counted), judges, codebooks.
- `series`: one entry per series (natural order): series, condition (scaffolding, naming, order,
  clones: the series' value, or 'mixed'), runs, runs_coded, messages, similarity {n, mean,
  median, sd, q1, q3, iqr, min, max} over the runs' values, per_run [{run_id, similarity, agents,
  usable, messages}].
- `profiles`: flags, trait_flags, by_model [{model_label, runs, agents, messages, shares}],
  by_series_model [{series, model_label, ...}] (shares: flag -> pooled share).
- `comparisons`: [{a, b, label, n_a, n_b, mean_a, mean_b, median_a, median_b, diff_mean, u, p, r,
  p_perm, p_holm, p_perm_holm, z, r_z}] over the runs' similarity values (r_z = Z / sqrt(N), the
  study's effect size; r is the rank-biserial r). The default family is the one
  the runs were stored with (a suite's `analysis: {comparisons: ...}`, or an importer's), limited
  to the pairs whose two series have values; `comparisons=` replaces it.
- `compensation`: see analysis.compensation.compensation.
- `isolation`: see analysis.compensation.isolation_baseline.
- `agreement`: from the `judge_agreement` view for the codebook: pairs [{judge_a, judge_b,
  mean_kappa, flags, flags_undefined, n}] and by_flag [{flag, judge_a, judge_b, n, kappa,
  percent_agreement, prevalence_a, prevalence_b, tt, tf, ft, ff}] (tt..ff: the confusion counts).
- `rounds`: {series, by_round [{round, messages, rates {flag: share}}]}: flag prevalence per round
  of the baseline series (the first comparison's a, else the first series).
- `sensitivity`: [{flag, n, intersection, union}]: each flag's share of coded messages when the
  judges are combined by intersection and by union.
"""

from __future__ import annotations

import json
import math
from typing import Any, Sequence

import duckdb

from sociolab.base.errors import UserError

from .agreement import fmt, to_json
from .compensation import (CONDITION_SQL, CompFilter, check_comp_filter, compensation, isolation_baseline,
                           require_conditions)
from .profiles import (RULES, Rule, agent_counts, aggregation_sensitivity, check_rule, connection, model_profiles,
                       PAGE_MESSAGES, Page, message_pages, resolve_codebook, round_rates, series_key,
                       series_similarity, values_by_series)
from .families import SeriesPair, present_pairs
from .judge_cells import judge_cells
from .memory import within_budget
from .scratch import drop_scratch, one_row, scratch
from .stats import compare_series

CONDITION_FIELDS = ("scaffolding", "naming", "order", "clones")


def parse_comparison(text: str) -> tuple[str, str]:
    """'A:B' -> ('A', 'B')."""
    parts = [p.strip() for p in str(text).split(":")]
    if len(parts) != 2 or not all(parts):
        raise UserError(f"bad comparison {text!r}: write it as SERIES:SERIES, e.g. A:B")
    return parts[0], parts[1]


def _pairs(comparisons: Sequence[Any]) -> list[tuple[str, str]]:
    out = []
    for c in comparisons:
        if isinstance(c, str):
            out.append(parse_comparison(c))
        else:
            a, b = c
            out.append((str(a), str(b)))
    return out


def declared_family(con: Any) -> list[SeriesPair]:
    """The comparison family the store's runs were stored with (`$.analysis.comparisons` of
    runs.config, written from a suite's `analysis:` section or by an importer). Families of several
    suites are merged in suite order; a pair keeps its first label."""
    con = connection(con)
    # Each run's family first, then the distinct ones: DuckDB 2.0 ran out of a 64MB budget grouping
    # the JSON function's results directly (100x the study), not a table of them.
    with scratch(con, "families", "SELECT suite, json_extract(config, '$.analysis.comparisons')::VARCHAR AS family "
                 "FROM runs", "comparison families") as families:
        rows = con.execute(f"SELECT DISTINCT suite, family FROM {families} WHERE family IS NOT NULL "
                           "ORDER BY suite NULLS LAST, family").fetchall()
    merged: dict[tuple[str, str], SeriesPair] = {}
    for _, family in rows:
        for entry in json.loads(family):
            pair = SeriesPair.from_json(entry)
            merged.setdefault((pair.a, pair.b), pair)
    return list(merged.values())


def choose_comparisons(con: Any, comparisons: Sequence[Any] | None, fallback_family: Sequence[SeriesPair],
                       values: dict[str, list[float]], known: list[str]) -> tuple[list[SeriesPair], str, str | None]:
    """(pairs, source, note): the given pairs (each series must exist), else the declared family
    (else `fallback_family`) limited to the pairs with values on both sides."""
    family = declared_family(con) or list(fallback_family)
    if comparisons is not None:
        labels = {(p.a, p.b): p.label for p in family}
        pairs = [SeriesPair(a, b, labels.get((a, b), "")) for a, b in _pairs(comparisons)]
        missing = sorted({x for p in pairs for x in (p.a, p.b) if x not in known}, key=series_key)
        if missing:
            raise UserError(f"no series {', '.join(missing)} in the store; series: {', '.join(known) or 'none'}")
        return pairs, "given", None
    if not family:
        return [], "default", "no comparison family is declared with these runs"
    pairs = present_pairs(family, [s for s, v in values.items() if v])
    return pairs, "default", None if pairs else "none of the declared comparisons has values for both series"


def analyze(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
            comparisons: Sequence[tuple[str, str] | str] | None = None, n_perm: int = 10000,
            seed: int = 0, fallback_family: Sequence[SeriesPair] = (),
            comp_filter: CompFilter = "none") -> dict[str, Any]:
    """Profiles, similarity per run and series, series comparisons, compensation, isolation
    baseline and judge agreement, from a store's codes (read only). See the module docstring.
    `fallback_family` is the default family for runs stored without one (a caller that knows the
    study, e.g. the CLI for stores made before families were stored). `comp_filter="broadcast"`
    applies the WarRoom study's broadcast filter to compensation (analysis.compensation)."""
    con = connection(con)
    check_rule(rule)
    check_comp_filter(comp_filter)
    if n_perm < 0:
        raise UserError("n_perm must be >= 0")
    return within_budget(con, lambda: _analyze(con, rule=rule, codebook_id=codebook_id, comparisons=comparisons,
                                               n_perm=n_perm, seed=seed, fallback_family=fallback_family,
                                               comp_filter=comp_filter))


def _analyze(con: duckdb.DuckDBPyConnection, *, rule: Rule, codebook_id: str | None,
             comparisons: Sequence[tuple[str, str] | str] | None, n_perm: int, seed: int,
             fallback_family: Sequence[SeriesPair], comp_filter: CompFilter) -> dict[str, Any]:
    """`analyze` once its arguments are checked, on a connection under analysis.memory's budget."""
    require_conditions(con)
    codebook_id = resolve_codebook(con, codebook_id)
    pages = message_pages(con)      # one GROUP BY over the messages, shared by every paged scan
    # The scans with the largest DuckDB working memory first, while Python holds little (issue 12:
    # the peak RSS is what Python holds plus what DuckDB uses at that moment).
    comp = compensation(con, rule=rule, codebook_id=codebook_id, comp_filter=comp_filter, pages=pages)
    agreement = agreement_summary(con, codebook_id, pages=pages)
    store = _store_counts(con, codebook_id)
    counts = agent_counts(con, rule=rule, codebook_id=codebook_id, pages=pages)
    try:
        series = series_similarity(con, counts=counts)
        by_model = model_profiles(con, counts=counts)
        by_series_model = model_profiles(con, counts=counts, by_series=True)
        isolation = isolation_baseline(con, counts=counts)
        sensitivity = aggregation_sensitivity(con, counts)
        agents_profiled, messages = one_row(con, f"SELECT count(*), coalesce(sum(messages), 0) FROM {counts.table}")
    finally:
        counts.drop(con)

    values = values_by_series(series)
    known = sorted({s.series for s in series if s.series is not None}, key=series_key)
    pairs, source, note = choose_comparisons(con, comparisons, fallback_family, values, known)
    baseline = pairs[0].a if pairs else (known[0] if known else None)
    rounds = round_rates(con, baseline, rule=rule, codebook_id=codebook_id, pages=pages) if baseline else []
    conditions = series_conditions(con)
    compared = compare_series(values, pairs, n_perm=n_perm, seed=seed)   # imports scipy: after the scans
    result = {
        "settings": {
            "rule": rule, "codebook_id": codebook_id, "flags": list(counts.flags),
            "trait_flags": list(counts.traits), "separate_flags": list(counts.separate),
            "comparisons": [[p.a, p.b] for p in pairs], "comparisons_source": source,
            "comparisons_note": note, "n_perm": n_perm, "seed": seed, "comp_filter": comp_filter,
            "definitions": {
                "profile": "per agent and run: share of its coded, non-error messages with each flag "
                           f"(adjudicated by {rule})",
                "similarity": "per run: mean pairwise cosine of the agents' trait-flag profiles; "
                              "all-zero profiles skipped; NULL with < 2 usable agents",
                "mann_whitney": "scipy.stats.mannwhitneyu two-sided (method auto); u = U of series a",
                "r_z": "Z / sqrt(n_a + n_b), Z the Mann-Whitney normal statistic of U_a (tie-corrected, no "
                       "continuity correction): the effect size the WarRoom study reports; r_z > 0: series a "
                       "more similar",
                "r": "rank-biserial (U_a - U_b) / (n_a n_b); r > 0: series a's runs are more similar",
                "p_perm": "two-sided permutation test on mean_a - mean_b, (1 + hits) / (n_perm + 1)",
                "p_holm": "Holm step-down over the comparisons listed (p_holm from p, p_perm_holm from p_perm)",
            },
        },
        "data": _data(store, int(agents_profiled), int(messages), series),
        "series": [_series_entry(s, conditions) for s in series],
        "profiles": {"flags": list(counts.flags), "trait_flags": list(counts.traits),
                     "by_model": by_model, "by_series_model": by_series_model},
        "comparisons": compared,
        "compensation": comp,
        "isolation": isolation,
        "agreement": agreement,
        "rounds": {"series": baseline, "by_round": rounds},
        "sensitivity": sensitivity,
    }
    return to_json(result)


def _store_counts(con: duckdb.DuckDBPyConnection, codebook_id: str) -> dict[str, Any]:
    """The store's runs (all, finished), judges of the codebook, codebooks and sources: read before
    the per-run results exist, since two of them scan every code."""
    runs, finished = one_row(con, "SELECT count(*), count(*) FILTER (WHERE status <> 'running') FROM runs")
    judges = [r[0] for r in con.execute("SELECT DISTINCT judge FROM codes WHERE codebook_id = ? ORDER BY 1",
                                        [codebook_id]).fetchall()]
    codebooks = [r[0] for r in con.execute("SELECT DISTINCT codebook_id FROM codes ORDER BY 1").fetchall()]
    sources = [r[0] for r in con.execute("SELECT DISTINCT source FROM runs ORDER BY 1").fetchall()]
    return {"runs": int(runs), "runs_finished": int(finished), "judges": judges, "codebooks": codebooks,
            "sources": sources}


def _data(store: dict[str, Any], agents: int, messages: int, series) -> dict[str, Any]:
    return {"runs": store["runs"], "runs_finished": store["runs_finished"],
            "runs_coded": sum(s.runs_coded for s in series), "agents_profiled": agents, "messages": messages,
            "judges": store["judges"], "codebooks": store["codebooks"], "sources": store["sources"]}


def series_conditions(con: duckdb.DuckDBPyConnection) -> dict[Any, dict[str, set[Any]]]:
    """series -> condition field -> the set of its runs' values (None included), from
    `run_conditions`' rows read a batch at a time: a set per series and field, not a dict per run
    (20,800 of them at 100x the study)."""
    cur = con.execute(f"SELECT series, {', '.join(f'{chr(34)}{f}{chr(34)}' for f in CONDITION_FIELDS)} "
                      f"FROM ({CONDITION_SQL})")
    out: dict[Any, dict[str, set[Any]]] = {}
    while rows := cur.fetchmany(4096):
        for series, *values in rows:
            fields = out.setdefault(series, {f: set() for f in CONDITION_FIELDS})
            for f, v in zip(CONDITION_FIELDS, values):
                fields[f].add(v)
    return out


def _series_entry(s, conditions: dict[Any, dict[str, set[Any]]]) -> dict[str, Any]:
    cond: dict[str, Any] = {}
    mine = conditions.get(s.series, {})
    for f in CONDITION_FIELDS:
        vals = set(mine.get(f, ()))
        cond[f] = (vals.pop() if len(vals) == 1 else "mixed") if vals else None
    return {"series": s.series, "condition": cond, "runs": s.runs, "runs_coded": s.runs_coded,
            "messages": s.messages, "similarity": s.summary,
            "per_run": [{"run_id": r.run_id, "similarity": r.similarity, "agents": r.agents,
                         "usable": r.usable, "messages": r.messages} for r in s.values]}


# The judge_agreement view's arithmetic (orchestrator/store.py), over judge_cells' confusion cells.
AGREEMENT_SQL = """
    WITH cells AS (
        SELECT flag, judge_a, judge_b, sum(n)::DOUBLE AS n, sum(tt)::DOUBLE AS tt, sum(tf)::DOUBLE AS tf,
               sum(ft)::DOUBLE AS ft, sum(ff)::DOUBLE AS ff
          FROM {cells} GROUP BY flag, judge_a, judge_b),
    chance AS (
        SELECT *, (tt + ff) / n AS po,
               ((tt + tf) * (tt + ft) + (ff + ft) * (ff + tf)) / (n * n) AS pe
          FROM cells)
    SELECT flag, judge_a, judge_b, n::BIGINT AS n,
           CASE WHEN pe < 1 THEN (po - pe) / (1 - pe) END AS kappa, po AS percent_agreement,
           (tt + tf) / n AS prevalence_a, (tt + ft) / n AS prevalence_b,
           tt::BIGINT AS tt, tf::BIGINT AS tf, ft::BIGINT AS ft, ff::BIGINT AS ff
      FROM chance ORDER BY judge_a, judge_b, flag"""


def agreement_rows(con: Any, codebook_id: str, page_messages: int = PAGE_MESSAGES,
                   pages: Sequence[Page] | None = None) -> list[tuple]:
    """The `judge_agreement` view's rows for one codebook (flag, judge_a, judge_b, n, kappa,
    percent_agreement, prevalence_a, prevalence_b, tt, tf, ft, ff; ordered by judge pair and flag).
    The confusion cells come from `judge_cells` (mask patterns a page of messages at a time,
    `message_pages`, instead of the view's self-join of every coded row); kappa and the rest are
    then computed exactly as the view computes them. `pages`: the store's `message_pages`, if the
    caller has them (else computed here)."""
    con = connection(con)
    if pages is None:
        pages = message_pages(con, page_messages)
    table = judge_cells(con, codebook_id, pages)
    try:
        return con.execute(AGREEMENT_SQL.format(cells=table)).fetchall()
    finally:
        drop_scratch(con, table)


def agreement_summary(con: Any, codebook_id: str, pages: Sequence[Page] | None = None) -> dict[str, Any]:
    """Mean kappa per judge pair (over flags with a defined kappa), from the judge_agreement
    view's numbers (`agreement_rows`; over the given `pages`, else the store's own)."""
    con = connection(con)
    by_flag = agreement_rows(con, codebook_id, pages=pages)
    names = ("flag", "judge_a", "judge_b", "n", "kappa", "percent_agreement", "prevalence_a", "prevalence_b",
             "tt", "tf", "ft", "ff")
    rows = [dict(zip(names, r)) for r in by_flag]
    pairs: dict[tuple[str, str], list[dict]] = {}
    for r in rows:
        pairs.setdefault((r["judge_a"], r["judge_b"]), []).append(r)
    out = []
    for (a, b), rs in pairs.items():
        defined = [r["kappa"] for r in rs if r["kappa"] is not None and not math.isnan(r["kappa"])]
        out.append({"judge_a": a, "judge_b": b, "mean_kappa": sum(defined) / len(defined) if defined else math.nan,
                    "flags": len(defined), "flags_undefined": len(rs) - len(defined),
                    "n": max(r["n"] for r in rs)})
    return {"pairs": out, "by_flag": rows}


# ---- rendering ------------------------------------------------------------------------------

def _f(v: Any, digits: int = 3) -> str:
    return fmt(math.nan if v is None else float(v), digits)


def _p(v: Any) -> str:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "n/a"
    return "<0.0001" if v < 1e-4 else f"{v:.4f}"


def render(result: dict[str, Any], console) -> None:
    """Rich tables of an `analyze()` result: similarity per series, comparisons, model profiles,
    isolation baseline, compensation, judge agreement. Stored names (series, models, flags, judges)
    are escaped so that they never act as markup."""
    from rich.markup import escape
    from rich.table import Table

    def esc(value: Any) -> str:
        return escape(str(value))

    s = result["settings"]
    d = result["data"]
    console.print(f"Codebook {s['codebook_id']}, rule {s['rule']}; {d['runs_coded']} coded runs, "
                  f"{d['agents_profiled']} agent profiles, {d['messages']} messages; judges: "
                  f"{', '.join(d['judges'])}", markup=False)

    t = Table("series", "scaffolding", "naming", "order", "clones", "runs", "coded", "n", "mean", "median",
              "sd", "IQR", "messages", title="Within-run similarity (mean pairwise cosine of trait profiles)")
    for e in result["series"]:
        c, sim = e["condition"], e["similarity"]
        t.add_row(esc(e["series"]), esc(c.get("scaffolding")), esc(c.get("naming")), esc(c.get("order")),
                  esc(c.get("clones")), str(e["runs"]), str(e["runs_coded"]), str(sim["n"]), _f(sim["mean"]),
                  _f(sim["median"]), _f(sim["sd"]), _f(sim["iqr"]), str(e["messages"]))
    console.print(t)

    if result["comparisons"]:
        t = Table("a", "b", "tests", "n a", "n b", "mean a", "mean b", "U", "p", "r=Z/√N", "r rank-biserial",
                  "p perm", "p Holm",
                  title=f"Series comparisons (Mann-Whitney two-sided; r > 0: a more similar; "
                        f"{s['n_perm']} permutations; Holm over {len(result['comparisons'])})")
        for c in result["comparisons"]:
            t.add_row(esc(c["a"]), esc(c["b"]), esc(c["label"]), str(c["n_a"]), str(c["n_b"]), _f(c["mean_a"]),
                      _f(c["mean_b"]), _f(c["u"], 1), _p(c["p"]), _f(c["r_z"]), _f(c["r"]), _p(c["p_perm"]),
                      _p(c["p_holm"]))
        console.print(t)
    else:
        console.print(f"No series comparisons ({s.get('comparisons_note') or 'none requested'}; use --compare A:B).",
                      markup=False)

    flags = result["profiles"]["flags"]
    t = Table("model", "runs", "messages", *map(esc, flags),
              title="Profiles per model (share of messages with each flag)")
    for m in result["profiles"]["by_model"]:
        t.add_row(esc(m["model_label"]), str(m["runs"]), str(m["messages"]),
                  *(_f(m["shares"].get(f), 2) for f in flags))
    console.print(t)

    iso = result["isolation"]
    if iso["isolation"]["messages"]:
        t = Table("flag", "in groups", "alone", "difference", "group only",
                  title=f"Isolation baseline: groups ({', '.join(map(esc, iso['group_series']))}) vs "
                        f"alone ({', '.join(map(esc, iso['isolation_series']))})")
        for f in iso["flags"]:
            t.add_row(esc(f["flag"]), _f(f["group_rate"]), _f(f["isolation_rate"]), _f(f["difference"]),
                      "yes" if f["group_only"] else "")
        a = iso["any_flag"]
        t.add_row("any flag", _f(a["group_rate"]), _f(a["isolation_rate"]), _f(a["difference"]), "", end_section=True)
        console.print(t)
    else:
        console.print(f"Isolation baseline: {iso['note']}.", markup=False)

    comp = result["compensation"]
    if comp["post_crash_messages"]:
        lv = comp["levels"]
        console.print(f"Compensation after a crash (filter: {comp['comp_filter']}): {comp['runs_with_crash']} runs, "
                      f"{comp['comp_messages']} of "
                      f"{comp['post_crash_messages']} post-crash messages ({_f(comp['share'])}); "
                      f"L1 {lv['L1']}, L2 {lv['L2']}, L3 {lv['L3']}, unspecified {lv['unspecified']}")
        t = Table("round after crash", "runs", "messages", "comp", "share", "L1", "L2", "L3",
                  title="Compensation per round after the crash")
        for r in comp["by_round"]:
            t.add_row(str(r["round_after"]), str(r["runs"]), str(r["messages"]), str(r["comp"]), _f(r["share"]),
                      str(r["L1"]), str(r["L2"]), str(r["L3"]))
        console.print(t)
        t = Table("model", "agents", "compensating", "messages", "comp", "share", "L1", "L2", "L3",
                  title="Who compensates")
        for r in comp["by_model"]:
            t.add_row(esc(r["model_label"]), str(r["agents"]), str(r["compensating_agents"]), str(r["messages"]),
                      str(r["comp"]), _f(r["share"]), str(r["L1"]), str(r["L2"]), str(r["L3"]))
        console.print(t)
    else:
        console.print(f"Compensation: {comp['note'] or 'no coded post-crash messages'}.", markup=False)

    agr = result["agreement"]
    if agr["pairs"]:
        t = Table("judge a", "judge b", "mean kappa", "flags", "undefined", "n", title="Judge agreement")
        for p in agr["pairs"]:
            t.add_row(esc(p["judge_a"]), esc(p["judge_b"]), _f(p["mean_kappa"]), str(p["flags"]),
                      str(p["flags_undefined"]), str(p["n"]))
        console.print(t)


__all__ = ["analyze", "render", "agreement_summary", "parse_comparison", "RULES"]

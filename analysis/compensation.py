"""Conditions of runs, compensation after a crash, and the isolation baseline.

- `run_conditions`: each run's condition (scaffolding, naming, order, clones, temperature), read
  from the generic fields of `runs.config` that every source writes: `params.scaffolding`,
  `params.naming`, `params.order`, `params.temperature` and `agents.clones`. sociolab's own runs
  carry them as planned; an importer translates its study's records into them and keeps the raw
  record next to them (sociolab/studies/). Analysis never decodes a study's raw format.
- `require_conditions`: a store whose imported runs lack those fields (imported by an older
  sociolab) is refused with one line saying to re-import, rather than silently mislabelled.
- `compensation`: for runs with an errored agent, what the others do after the crash. The crash
  point of a run is its first error message from an errored agent (`agents.status = 'errored'`);
  runs with scaffolding `isolation` are left out (nobody can see the crash there, and they are
  counted in `isolation_runs_excluded`); post-crash messages are the counted agent messages (coded,
  non-error) that come after it in the conversation (`seq`), i.e. that could have seen the error.
  `round_after` = message round minus the crash round (0 = the crash round itself). A message
  compensates when the adjudicated `comp` flag is True under the rule; its level is `level_max` of
  the judges that said True (from the `adjudicated_codes` view); a True with no level is counted as
  `unspecified`. `comp_filter="broadcast"` (the study's "broadcast filter", clean_comp.py, which
  was not published) keeps a judges' comp only on messages that name a crashed agent other than
  the sender (by its name as peers saw it, or its model's name: the platform's own `mentionsDead`
  test), dropping reactions to the broadcast error notice that refer to no one.
- `isolation_baseline`: per flag, the share of counted messages with the flag in group runs (every
  run whose scaffolding is not `isolation`) and in isolation runs: the behaviours present in groups
  and absent alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import duckdb

from sociolab.base.errors import UserError

from .scratch import scratch
from .profiles import (NOT_BEHAVIOUR_FLAGS, PAGE_MESSAGES, AgentCounts, Page, Rule, _counts, check_rule,
                       codebook_flags, connection, message_pages, page_sql, resolve_codebook, series_key)
from .ratings import sql_str

LEVELS = ("L1", "L2", "L3")
COMP_FLAG = "comp"

# A run's condition, from the generic fields of its config (one SQL expression per field). The
# config is parsed once per run (one json_extract with a list of paths; each field is then read
# from its small JSON value): five json functions over the whole config parse it five times, which
# held ~100 MB per vector of 2,048 runs.
CONDITION_PATHS = ("$.params.scaffolding", "$.params.naming", "$.params.order", "$.params.temperature",
                   "$.agents.clones")
CONDITION_SQL = f"""
    SELECT run_id, source, series, kind, rounds_planned,
           json_extract_string(j[1], '$') AS scaffolding,
           json_extract_string(j[2], '$') AS naming,
           json_extract_string(j[3], '$') AS "order",
           j[5] IS NOT NULL AND json_extract_string(j[5], '$') <> 'null' AS clones,
           TRY_CAST(json_extract_string(j[4], '$') AS DOUBLE) AS temperature
    FROM (SELECT run_id, source, series, kind, rounds_planned,
                 json_extract(config, [{", ".join(f"'{p}'" for p in CONDITION_PATHS)}]) AS j
          FROM runs) AS runs
"""


def require_conditions(con: Any) -> None:
    """Refuse a store whose imported runs have no generic condition fields (`params`): they were
    imported by an older sociolab, and reading them as condition-less would mislabel isolation
    runs as group runs. Re-importing refreshes them in place, codes kept."""
    rows = connection(con).execute("""
        SELECT source, count(*) FROM runs
        WHERE source <> 'sociolab' AND config IS NOT NULL AND json_extract(config, '$.params') IS NULL
        GROUP BY source ORDER BY source""").fetchall()
    if rows:
        source, n = rows[0]
        raise UserError(f"{n} run(s) imported from '{source}' were imported by an older sociolab and lack the "
                        f"condition fields analysis reads; re-import them (sociolab import {source} DIR --db ...): "
                        "their rows and codes are kept")


def run_conditions(con: Any) -> dict[str, dict[str, Any]]:
    """run_id -> {source, series, kind, rounds_planned, scaffolding, naming, order, clones,
    temperature}; fields a config does not say are None (e.g. non-discussion kinds)."""
    con = connection(con)
    cur = con.execute(CONDITION_SQL + " ORDER BY run_id")
    names = [d[0] for d in cur.description]
    return {r[0]: dict(zip(names[1:], r[1:])) for r in cur.fetchall()}


# ---- compensation ---------------------------------------------------------------------------

CompFilter = Literal["none", "broadcast"]
COMP_FILTERS: tuple[str, ...] = ("none", "broadcast")
# Hyphen look-alikes models write inside names (Agent‑G with U+2011), read as '-'.
_HYPHENS_SQL = "translate(m.content, '\u2010\u2011\u2012', '---')"


def check_comp_filter(comp_filter: str) -> str:
    if comp_filter not in COMP_FILTERS:
        raise UserError(f"unknown compensation filter {comp_filter!r}; use one of: {', '.join(COMP_FILTERS)}")
    return comp_filter


def names_crashed_sql() -> str:
    """True when message m names a crashed agent of its run other than its sender: the agent's name
    as its peers saw it, or its model's name unless the sender runs the same model (clones), as a
    case-sensitive substring. This is the WarRoom platform's own test of a message "mentioning a
    dead agent" (war-room-lab-isolated.html, the `mentionsDead` check), and what the study's
    broadcast filter keeps (docs/analysis.md)."""
    own_model = "(SELECT s.model_label FROM agents s WHERE s.run_id = m.run_id AND s.agent_id = m.sender)"
    return f"""EXISTS (SELECT 1 FROM agents x WHERE x.run_id = m.run_id AND x.status = 'errored'
                       AND x.agent_id <> m.sender
                       AND ((coalesce(x.name, '') <> '' AND contains({_HYPHENS_SQL}, x.name))
                            OR (coalesce(x.model_label, '') <> '' AND x.model_label IS DISTINCT FROM {own_model}
                                AND contains({_HYPHENS_SQL}, x.model_label))))"""


def names_crashed_in_sql(refs: str, own_model: str) -> str:
    """`names_crashed_sql`'s test without its correlated subqueries: `refs` is the run's errored
    agents as a list of {agent_id, name, model_label} (crash_point_sql's `refs`) and `own_model` the
    sender's model label (NULL when it has no agents row). DuckDB decorrelates the EXISTS by
    grouping every post-crash message's text, which ran out of a 64MB budget at 10x the study; this
    is a per-row expression over a list of a few agents (the same decisions: tests compare them)."""
    return f"""len(list_filter({refs}, lambda x: x.agent_id <> m.sender
                  AND ((coalesce(x.name, '') <> '' AND contains({_HYPHENS_SQL}, x.name))
                       OR (coalesce(x.model_label, '') <> '' AND x.model_label IS DISTINCT FROM {own_model}
                           AND contains({_HYPHENS_SQL}, x.model_label))))) > 0"""


def crash_point_sql() -> str:
    """One row per finished or unfinished run with an errored agent (isolation runs left out): run_id,
    crashed (the errored agents, sorted), refs (each errored agent's id, name and model label, for
    `names_crashed_in_sql`), crash_round and crash_seq (the first message after which
    a message counts as post-crash). Nothing here depends on a page of messages, so `compensation`
    materialises it once and pages only the join with the adjudicated codes."""
    return f"""
        WITH cond AS ({CONDITION_SQL}),
        errored AS (
            SELECT a.run_id, a.agent_id, a.name, a.model_label, a.errored_round FROM agents a JOIN cond USING (run_id)
            WHERE a.status = 'errored' AND coalesce(cond.scaffolding, '') <> 'isolation'
        ), crash AS (
            SELECT e.run_id, min(e.errored_round) AS crash_round,
                   list(DISTINCT e.agent_id ORDER BY e.agent_id) AS crashed,
                   list(struct_pack(agent_id := e.agent_id, name := e.name, model_label := e.model_label)) AS refs,
                   (SELECT min(m.seq) FROM messages m JOIN errored e2
                       ON e2.run_id = m.run_id AND e2.agent_id = m.sender
                     WHERE m.run_id = e.run_id AND m.is_error) AS crash_seq
            FROM errored e GROUP BY e.run_id
        )
        SELECT c.run_id, c.crashed, c.refs,
               coalesce(c.crash_round, (SELECT min(m.round) FROM messages m
                                         WHERE m.run_id = c.run_id AND m.seq = c.crash_seq)) AS crash_round,
               coalesce(c.crash_seq, (SELECT min(m.seq) FROM messages m
                                       WHERE m.run_id = c.run_id AND m.round >= c.crash_round)) AS crash_seq
        FROM crash c
    """


def post_crash_sql(codebook_id: str, rule: str, comp_filter: str = "none", page: Page = (None, None),
                   crash_points: str | None = None) -> str:
    """One row per counted post-crash message of one page of messages (`message_pages`; by
    default all): run, series, sender, model label, round_after, comp (0/1) and level. With
    `comp_filter="broadcast"` a message compensates only if it also names a crashed agent
    (`names_crashed_sql`, computed as `names_crashed_in_sql`). The page's range is given to the adjudicated_codes view too, so that it
    groups only that page's codes. `crash_points`: a table holding `crash_point_sql()`'s rows (made
    once for all pages); without it they are computed in the query."""
    comp = f"ac.by_{rule}" + (f" AND {names_crashed_in_sql('cp.refs', 'a.model_label')}"
                               if comp_filter == "broadcast" else "")
    source = crash_points if crash_points is not None else f"({crash_point_sql()})"
    return f"""
        SELECT m.run_id, r.series, m.sender AS agent_id,
               coalesce(a.model_label, a.model, m.sender) AS model_label,
               m.round - cp.crash_round AS round_after, cp.crashed,
               ({comp})::INTEGER AS comp, ac.level_max AS level
        FROM {source} cp
        JOIN runs r ON r.run_id = cp.run_id AND r.status <> 'running'
        JOIN messages m ON m.run_id = cp.run_id AND m.seq > cp.crash_seq
        JOIN adjudicated_codes ac ON ac.message_id = m.message_id
             AND ac.codebook_id = {sql_str(codebook_id)} AND ac.flag = {sql_str(COMP_FLAG)}
        LEFT JOIN agents a ON a.run_id = m.run_id AND a.agent_id = m.sender
        WHERE NOT m.is_error AND m.sender NOT IN ('user', 'system') AND ac.judges_coded > 0
              AND {page_sql(page, "m.message_id")} AND {page_sql(page, "ac.message_id")}
    """


def _level_cols(prefix: str = "") -> str:
    return ", ".join([f"count(*) FILTER (WHERE {prefix}comp = 1 AND {prefix}level = '{lv}') AS {lv}" for lv in LEVELS]
                     + [f"count(*) FILTER (WHERE {prefix}comp = 1 AND ({prefix}level IS NULL OR {prefix}level "
                        f"NOT IN {tuple(LEVELS)})) AS unspecified"])


COUNTS = ("messages", "comp", *LEVELS, "unspecified")


def partial_sql(codebook_id: str, rule: str, comp_filter: str, page: Page, crash_points: str) -> str:
    """One page's post-crash messages (`post_crash_sql`) counted per (run, round_after) and per
    (run, agent) (GROUPING SETS; `by_agent` tells which): messages, comp and the level counts.
    Every figure of `compensation` is a sum or a distinct count over these rows, so the messages
    themselves (1.3M rows at 100x the study) are never kept: the two groupings hold a few rows
    per run (issue 12)."""
    return f"""
        SELECT grouping(agent_id) = 0 AS by_agent, run_id, series, round_after, agent_id,
               count(*) AS messages, sum(comp)::BIGINT AS comp, {_level_cols()}
        FROM ({post_crash_sql(codebook_id, rule, comp_filter, page, crash_points)}) AS pc
        WHERE comp IS NOT NULL
        GROUP BY GROUPING SETS ((run_id, series, round_after), (run_id, series, agent_id))
    """


def _rows(con, sql: str) -> list[dict[str, Any]]:
    cur = con.execute(sql)
    names = [d[0] for d in cur.description]
    return [dict(zip(names, r)) for r in cur.fetchall()]


def _share(comp: int, n: int) -> float:
    return comp / n if n else math.nan


def compensation(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                 comp_filter: CompFilter = "none", page_messages: int = PAGE_MESSAGES,
                 pages: Sequence[Page] | None = None) -> dict[str, Any]:
    """Compensation after a crash (see the module docstring). Keys: flag, comp_filter,
    runs_with_crash, post_crash_messages, comp_messages, share, levels, by_round, by_series,
    by_model, runs, isolation_runs_excluded, note. Isolation runs are left out: their agents cannot
    see a crash. `comp_filter="broadcast"` is the study's clean-up step: judges' comp codes on
    messages that name no crashed agent are dropped. The post-crash messages are counted a page
    of about `page_messages` messages at a time (analysis.profiles.message_pages), or over the
    given `pages`, into per-run partial counts (`partial_sql`)."""
    con = connection(con)
    check_rule(rule)
    check_comp_filter(comp_filter)
    require_conditions(con)
    codebook_id = resolve_codebook(con, codebook_id)
    out: dict[str, Any] = {"flag": COMP_FLAG, "comp_filter": comp_filter, "runs_with_crash": 0,
                           "post_crash_messages": 0, "comp_messages": 0, "share": math.nan,
                           "levels": {lv: 0 for lv in (*LEVELS, "unspecified")},
                           "by_round": [], "by_series": [], "by_model": [], "runs": [],
                           "isolation_runs_excluded": 0, "note": None}
    if COMP_FLAG not in codebook_flags(con, codebook_id):
        out["note"] = f"codebook {codebook_id} has no '{COMP_FLAG}' flag"
        return out
    crash_runs, isolated = con.execute(
        f"WITH cond AS ({CONDITION_SQL}) SELECT count(DISTINCT a.run_id) FILTER (WHERE coalesce(cond.scaffolding, '') "
        "<> 'isolation'), count(DISTINCT a.run_id) FILTER (WHERE cond.scaffolding = 'isolation') "
        "FROM agents a JOIN runs r USING (run_id) JOIN cond USING (run_id) "
        "WHERE a.status = 'errored' AND r.status <> 'running'").fetchone()
    out["runs_with_crash"] = int(crash_runs)
    out["isolation_runs_excluded"] = int(isolated)
    if not crash_runs:
        out["note"] = "no run has an errored agent"
        return out
    if pages is None:
        pages = message_pages(con, page_messages)
    with scratch(con, "crash_point", crash_point_sql(), "compensation") as points, \
         scratch(con, "post_crash", partial_sql(codebook_id, rule, comp_filter, pages[0], points),
                 "compensation") as table:
        for page in pages[1:]:
            con.execute(f"INSERT INTO {table} {partial_sql(codebook_id, rule, comp_filter, page, points)}")
        _summarise(con, table, points, out)
    return out


def _summarise(con: duckdb.DuckDBPyConnection, table: str, points: str, out: dict[str, Any]) -> None:
    """compensation's figures from the partial counts (`partial_sql`) in `table`: per round, per
    series, per model, per run and in total."""
    sums = ", ".join(f"coalesce(sum({c}), 0)::BIGINT AS {c}" for c in COUNTS)
    # per (run, round_after) and per (run, agent), over the pages (a run's messages may span two)
    rounds = (f"(SELECT run_id, any_value(series) AS series, round_after, {sums} FROM {table} "
              "WHERE NOT by_agent GROUP BY run_id, round_after)")
    agents = (f"(SELECT run_id, agent_id, {sums} FROM {table} WHERE by_agent GROUP BY run_id, agent_id)")
    total = _rows(con, f"SELECT {sums} FROM {rounds}")[0]
    out["post_crash_messages"], out["comp_messages"] = int(total["messages"]), int(total["comp"])
    out["share"] = _share(out["comp_messages"], out["post_crash_messages"])
    out["levels"] = {k: int(total[k]) for k in (*LEVELS, "unspecified")}
    per_group = f"count(DISTINCT run_id) AS runs, {sums}, count(DISTINCT run_id) FILTER (WHERE comp > 0) AS runs_with_comp"
    out["by_round"] = _rows(con, f"SELECT round_after, {per_group} FROM {rounds} GROUP BY round_after "
                                 "ORDER BY round_after")
    out["by_series"] = sorted(_rows(con, f"SELECT series, {per_group} FROM {rounds} GROUP BY series"),
                              key=lambda r: series_key(r["series"]))
    out["by_model"] = _rows(con, f"""
        SELECT coalesce(a.model_label, a.model, t.agent_id) AS model_label,
               count(DISTINCT t.run_id || '\x1f' || t.agent_id) AS agents,
               count(DISTINCT t.run_id || '\x1f' || t.agent_id) FILTER (WHERE t.comp > 0) AS compensating_agents,
               count(DISTINCT t.run_id) AS runs, {", ".join(f"coalesce(sum(t.{c}), 0)::BIGINT AS {c}" for c in COUNTS)}
        FROM {agents} t LEFT JOIN agents a ON a.run_id = t.run_id AND a.agent_id = t.agent_id
        GROUP BY ALL ORDER BY comp DESC, model_label""")
    for group in ("by_round", "by_series", "by_model"):
        for r in out[group]:
            for k, v in list(r.items()):
                if k not in ("series", "model_label", "round_after") and v is not None:
                    r[k] = int(v)
            r["share"] = _share(r["comp"], r["messages"])
    out["runs"] = _runs(con, rounds, agents, points)


def _runs(con: duckdb.DuckDBPyConnection, rounds: str, agents: str, points: str) -> list[dict[str, Any]]:
    """compensation's `runs`: per run with a counted post-crash message, its series, crashed agents,
    messages, comp, share, first round after the crash with a comp, and comp per compensating
    agent; in series then run order."""
    runs = _rows(con, f"""
        WITH per_run AS (
            SELECT run_id, any_value(series) AS series, sum(messages) AS messages, sum(comp) AS comp,
                   min(round_after) FILTER (WHERE comp > 0) AS first_comp_round_after
            FROM {rounds} GROUP BY run_id),
        comp_agents AS (
            SELECT run_id, map_from_entries(list((agent_id, comp) ORDER BY agent_id)) AS compensators
            FROM {agents} WHERE comp > 0 GROUP BY run_id)
        SELECT r.run_id, r.series, cp.crashed, r.messages, r.comp, r.first_comp_round_after, c.compensators
        FROM per_run r JOIN {points} cp USING (run_id) LEFT JOIN comp_agents c USING (run_id)""")
    for r in runs:
        r["messages"], r["comp"] = int(r["messages"]), int(r["comp"])
        r["share"] = _share(r["comp"], r["messages"])
        r["crashed"] = list(r["crashed"] or [])
        r["compensators"] = {str(k): int(v) for k, v in (r["compensators"] or {}).items()}
    runs.sort(key=lambda r: (series_key(r["series"]), r["run_id"]))
    return runs


# ---- isolation baseline ---------------------------------------------------------------------

def isolation_baseline(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                       counts: AgentCounts | None = None) -> dict[str, Any]:
    """Per flag: rate in group runs vs rate in isolation runs (scaffolding 'isolation').

    Keys: isolation_series, group_series, isolation {runs, messages}, group {runs, messages},
    flags [{flag, group_rate, isolation_rate, difference, group_true, group_n, isolation_true,
    isolation_n, group_only}], any_flag {flags, group_rate, isolation_rate, difference, group_true,
    group_n, isolation_true, isolation_n}, by_series [{series, scaffolding, runs, messages, any_flag,
    any_flag_rate, rates}], note.
    `group_only` is True when the flag occurs in groups and never in isolation.
    """
    con = connection(con)
    require_conditions(con)
    counts, own = _counts(con, counts, rule, codebook_id)
    k = len(counts.flags)
    sums = ", ".join(f"sum(n{i}) AS n{i}, sum(t{i}) AS t{i}" for i in range(k))
    try:
        rows = con.execute(f"""
            WITH cond AS ({CONDITION_SQL}),
            c AS (SELECT c.*, coalesce(cond.scaffolding = 'isolation', FALSE) AS isolated, cond.scaffolding
                  FROM {counts.table} c LEFT JOIN cond ON cond.run_id = c.run_id)
            SELECT series, isolated, any_value(scaffolding), count(DISTINCT run_id), sum(messages), sum(any_flag)
                   {', ' + sums if sums else ''}
            FROM c GROUP BY series, isolated""").fetchall()
    finally:
        if own:
            counts.drop(con)
    pooled = {True: Pool.empty(k), False: Pool.empty(k)}
    by_series: list[dict[str, Any]] = []
    iso_series: set[str | None] = set()
    grp_series: set[str | None] = set()
    for series, isolated, scaffolding, runs, messages, any_flag, *nt in rows:
        coded = [int(nt[2 * i] or 0) for i in range(k)]
        true = [int(nt[2 * i + 1] or 0) for i in range(k)]
        pooled[bool(isolated)].add(int(runs), int(messages), coded, true, int(any_flag or 0))
        (iso_series if isolated else grp_series).add(series)
        by_series.append({"series": series, "scaffolding": scaffolding, "isolation": bool(isolated),
                          "runs": int(runs), "messages": int(messages), "any_flag": int(any_flag or 0),
                          "any_flag_rate": _share(int(any_flag or 0), int(messages)),
                          "rates": {f: _share(true[i], coded[i]) for i, f in enumerate(counts.flags)}})
    by_series.sort(key=lambda r: (series_key(r["series"]), r["isolation"]))
    group, alone = pooled[False], pooled[True]
    flags = []
    for i, f in enumerate(counts.flags):
        gt, gn, it, inn = group.true[i], group.coded[i], alone.true[i], alone.coded[i]
        g, s = _share(gt, gn), _share(it, inn)
        flags.append({"flag": f, "trait": f in counts.traits, "group_rate": g, "isolation_rate": s,
                      "difference": g - s, "group_true": gt, "group_n": gn, "isolation_true": it,
                      "isolation_n": inn, "group_only": bool(gt > 0 and inn > 0 and it == 0)})
    return {"isolation_series": _in_order(iso_series), "group_series": _in_order(grp_series),
            "isolation": {"runs": alone.runs, "messages": alone.messages},
            "group": {"runs": group.runs, "messages": group.messages},
            "flags": flags, "any_flag": _any_flag(counts.flags, group, alone), "by_series": by_series,
            "note": None if alone.messages else "no isolation runs (scaffolding 'isolation') are coded"}


def _any_flag(flags: Sequence[str], group: "Pool", alone: "Pool") -> dict[str, Any]:
    """The share of counted messages with at least one behaviour flag True, in groups and alone:
    the study's "flagged" share (F 4.2% vs A 64.3%), over every flag but NOT_BEHAVIOUR_FLAGS."""
    g, s = _share(group.any_true, group.messages), _share(alone.any_true, alone.messages)
    return {"flags": [f for f in flags if f not in NOT_BEHAVIOUR_FLAGS], "group_rate": g, "isolation_rate": s,
            "difference": g - s, "group_true": group.any_true, "group_n": group.messages,
            "isolation_true": alone.any_true, "isolation_n": alone.messages}


@dataclass
class Pool:
    """Counts pooled over the series of one side (group or isolation): runs, messages, messages
    with any behaviour flag, and per flag the coded messages and those with the flag True."""
    runs: int
    messages: int
    coded: list[int]
    true: list[int]
    any_true: int = 0

    @classmethod
    def empty(cls, flags: int) -> "Pool":
        return cls(0, 0, [0] * flags, [0] * flags)

    def add(self, runs: int, messages: int, coded: list[int], true: list[int], any_true: int) -> None:
        self.runs += runs
        self.messages += messages
        self.any_true += any_true
        self.coded = [a + b for a, b in zip(self.coded, coded)]
        self.true = [a + b for a, b in zip(self.true, true)]


def _in_order(series: set[str | None]) -> list[str]:
    return sorted((x for x in series if x is not None), key=series_key)

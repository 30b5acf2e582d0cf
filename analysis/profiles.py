"""Behavioural profiles and within-run similarity, in DuckDB SQL over the store's codes.

Definitions (docs/analysis.md has the full text):

- A message counts for an agent when it is one of the agent's own messages (not the seed, not a
  platform note, not an error) in a finished run (status not 'running'), and at least one judge
  coded it (status 'coded') under the chosen codebook.
- Its value for a flag is the adjudicated one, exactly as the `adjudicated_codes` view decides it
  from the judges that coded it: `intersection` (every coding judge said True; the default),
  `union` (at least one did) or `majority` (more than half did).
- **Profile** of an agent in a run: for each flag, the share of its counted messages with the
  flag True. The trait flags (by default every flag but `comp` and `xref`; for the study's
  codebook: phatic, meta, lead, arch, agree) make the profile vector; `comp` and `xref` are
  reported next to it, never mixed into similarity.
- **Run similarity**: the mean over pairs of the run's agents of the cosine similarity of their
  trait vectors. Agents whose trait vector is all zeros are skipped (as in the study: a cosine with
  a zero vector is undefined); a run with fewer than two usable agents has no value (NULL/NaN).
  Computed in one aggregate per run: with u_i the unit vectors of the k usable agents,
  sum_{i<j} u_i.u_j = (|sum u_i|^2 - k) / 2, so the mean is (|sum u_i|^2 - k) / (k (k - 1)).

Every function reads only. `agent_counts` scans the codes once into a small temp table (one row
per agent and run with coded/True counts per flag) that the other functions reuse; pass it as
`counts=` to avoid rescanning, and `drop()` it when done (the functions that build their own drop
it themselves).
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass
from typing import Any, Literal, Sequence

import duckdb

from sociolab.base.errors import UserError, first_line


from .scratch import create_scratch, drop_scratch, scratch

from .ratings import sql_str
from .stats import NAN, Summary, describe

Rule = Literal["intersection", "union", "majority"]
RULES: tuple[str, ...] = ("intersection", "union", "majority")
SEPARATE_FLAGS: tuple[str, ...] = ("comp", "xref")   # reported, but not part of the profile vector
# Not one of the "any flag" behaviours: the study's "flagged" share (F 4.2% vs A 64.3%,
# generate_figures.py fig2) is over its six behavioural flags; naming a peer is not one of them.
NOT_BEHAVIOUR_FLAGS: tuple[str, ...] = ("xref",)
STUDY_TRAITS: tuple[str, ...] = ("phatic", "meta", "lead", "arch", "agree")


# ---- rows -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class AgentProfile:
    run_id: str
    series: str | None
    agent_id: str
    name: str | None
    model: str | None
    model_label: str | None
    messages: int                      # counted (coded, non-error) messages
    shares: dict[str, float]           # flag -> share of messages with the flag (all flags)

    def vector(self, traits: Sequence[str]) -> list[float]:
        return [self.shares.get(f, NAN) for f in traits]


@dataclass(frozen=True)
class RunSimilarity:
    run_id: str
    series: str | None
    agents: int                        # agents with at least one counted message
    usable: int                        # of those, agents with a non-zero trait vector
    messages: int
    similarity: float                  # mean pairwise cosine; NaN when usable < 2


@dataclass(frozen=True)
class SeriesSimilarity:
    series: str | None
    runs: int                          # finished runs of the series in the store
    runs_coded: int                    # runs with at least one counted message
    messages: int                      # counted messages
    summary: Summary                   # over the runs' defined similarity values (n = runs with a value)
    values: list[RunSimilarity]


@dataclass(frozen=True)
class ModelProfile:
    model_label: str
    series: str | None                 # None when pooled over every series
    runs: int
    agents: int                        # agent x run instances
    messages: int
    shares: dict[str, float]           # pooled over the model's messages: sum True / sum coded


@dataclass(frozen=True)
class AgentCounts:
    """The temp table of one scan: per (run, agent), coded (n_i) and True (t_i) counts per flag."""
    table: str
    codebook_id: str
    rule: str
    flags: tuple[str, ...]             # column i <-> flags[i]
    traits: tuple[str, ...]

    @property
    def separate(self) -> tuple[str, ...]:
        return tuple(f for f in self.flags if f not in self.traits)

    def index(self, flag: str) -> int:
        return self.flags.index(flag)

    def drop(self, con: duckdb.DuckDBPyConnection) -> None:
        con.execute(f"DROP TABLE IF EXISTS {self.table}")


# ---- codebook and flags ---------------------------------------------------------------------

def connection(con: Any) -> duckdb.DuckDBPyConnection:
    """A DuckDB connection from a connection or a `Store`."""
    return getattr(con, "con", con)


def check_rule(rule: str) -> str:
    if rule not in RULES:
        raise UserError(f"unknown adjudication rule {rule!r}; choose one of {', '.join(RULES)}")
    return rule


def resolve_codebook(con: Any, codebook_id: str | None = None) -> str:
    """The codebook to analyse: the given one (checked), else the only one with codes."""
    con = connection(con)
    low, high = con.execute("SELECT min(codebook_id), max(codebook_id) FROM codes").fetchone()
    if low is not None and low == high:           # one codebook (the usual case): no DISTINCT scan
        present = [low]
    else:
        present = codebooks_present(con)
    if not present:
        raise UserError("the store holds no judge codes yet: run `sociolab judge` on it first")
    if codebook_id is None:
        if len(present) > 1:
            raise UserError(f"codes from {len(present)} codebooks are stored ({', '.join(present)}); "
                            "choose one with --codebook")
        return present[0]
    if codebook_id not in present:
        raise UserError(f"no codes for codebook {codebook_id!r}; the store has codes for: {', '.join(present)}")
    return codebook_id


def codebooks_present(con: Any) -> list[str]:
    """Every codebook_id that has codes."""
    return [r[0] for r in connection(con).execute("SELECT DISTINCT codebook_id FROM codes ORDER BY 1").fetchall()]


def codebook_flags(con: Any, codebook_id: str) -> list[str]:
    """The codebook's flags in its own order, from `codebooks.content` (written by `sociolab
    judge`); for codes stored without a codebooks row, the flags found in the codes (sorted)."""
    con = connection(con)
    row = con.execute("SELECT content FROM codebooks WHERE codebook_id = ?", [codebook_id]).fetchone()
    if row is not None:
        try:
            order = [f["name"] for f in json.loads(row[0]).get("flags", []) if isinstance(f, dict)]
        except (ValueError, TypeError, KeyError, AttributeError):
            order = []
        if order:
            return list(dict.fromkeys(order))
    return [r[0] for r in con.execute("SELECT DISTINCT flag FROM codes WHERE codebook_id = ? ORDER BY 1",
                                      [codebook_id]).fetchall()]


def trait_flags(flags: Sequence[str]) -> list[str]:
    return [f for f in flags if f not in SEPARATE_FLAGS]


# ---- the scan -------------------------------------------------------------------------------

def decision_sql(rule: str, c: str, t: str) -> str:
    """The adjudicated value from c coding judges of which t said True (NULL when c = 0);
    the same decisions as the `adjudicated_codes` view's by_intersection/by_union/by_majority."""
    expr = {"intersection": f"{t} = {c}", "union": f"{t} > 0", "majority": f"2 * {t} > {c}"}[rule]
    return f"CASE WHEN {c} > 0 THEN ({expr})::INTEGER END"


SLOT_BITS = 8         # judges' counts are packed 8 bits per flag ...
FLAGS_PER_WORD = 7    # ... 7 flags to a signed BIGINT word (56 bits)
MAX_SLOT = (1 << SLOT_BITS) - 1


def per_message_sql(codebook_id: str, flags: Sequence[str], restrict: str = "") -> str:
    """The CTEs `packed` and `per_message`: per coded message, `rows` (its codes) and per flag i
    c_i (judges that coded it) and t_i (those who said True), the inputs of the adjudicated_codes
    view, which groups by message x flag instead. They are packed 8 bits per flag into BIGINT sums
    (`cw`, `tw`, one word per 7 flags), so the 14M-row aggregate keeps two sums instead of
    2 x flags filtered counts; `rows` bounds every c_i, which is how `agent_counts` checks that no
    8-bit slot overflowed. `restrict` is an extra SQL condition on the codes (e.g. a semi-join to
    one series' messages)."""
    k = len(flags)
    words = max(1, -(-k // FLAGS_PER_WORD))
    slots = []
    for w in range(words):
        chunk = list(enumerate(flags))[w * FLAGS_PER_WORD:(w + 1) * FLAGS_PER_WORD]
        slots.append("CASE flag " + " ".join(f"WHEN {sql_str(f)} THEN {1 << SLOT_BITS * (i % FLAGS_PER_WORD)}"
                                             for i, f in chunk) + " END::BIGINT")
    shifts = ", ".join(f"{expr} AS sh{w}" for w, expr in enumerate(slots))
    sums = ", ".join(f"sum(sh{w})::BIGINT AS cw{w}, sum(sh{w} * value::BIGINT)::BIGINT AS tw{w}"
                     for w in range(words))

    def unpack(word: str, i: int) -> str:
        return (f"((coalesce({word}{i // FLAGS_PER_WORD}, 0) >> {SLOT_BITS * (i % FLAGS_PER_WORD)}) "
                f"& {MAX_SLOT})::INTEGER")

    counts = ", ".join(f"{unpack('cw', i)} AS c{i}, {unpack('tw', i)} AS t{i}" for i in range(k))
    return f"""
        packed AS (
            SELECT message_id, count(*) AS rows, {sums}
            FROM (SELECT message_id, value, {shifts} FROM codes
                  WHERE codebook_id = {sql_str(codebook_id)} AND status = 'coded' {restrict})
            GROUP BY message_id
        ), per_message AS (
            SELECT message_id, rows, {counts} FROM packed
        )"""


def decided_sql(flags: Sequence[str], rule: str, restrict: str = "TRUE") -> str:
    """The CTE `decided`: per counted message (an agent's, not an error), its run, sender and round,
    and per flag i the decision d_i under the rule (NULL when no judge coded it), plus di_i and
    du_i, the decisions under intersection and under union (the study's sensitivity figure)."""
    decisions = ", ".join(f"{decision_sql(rule, f'c{i}', f't{i}')} AS d{i}, "
                          f"{decision_sql('intersection', f'c{i}', f't{i}')} AS di{i}, "
                          f"{decision_sql('union', f'c{i}', f't{i}')} AS du{i}" for i in range(len(flags)))
    return f"""
        decided AS (
            SELECT m.run_id, m.sender, m.round, p.rows, {decisions}
            FROM per_message p JOIN messages m ON m.message_id = p.message_id
            WHERE NOT m.is_error AND m.sender NOT IN ('user', 'system') AND {restrict}
        )"""


def any_coded_sql(flags: Sequence[str]) -> str:
    return " OR ".join(f"d{i} IS NOT NULL" for i in range(len(flags))) or "FALSE"


def any_true_sql(flags: Sequence[str]) -> str:
    """A message shows a behaviour: any flag but NOT_BEHAVIOUR_FLAGS is True under the rule."""
    return " OR ".join(f"d{i} = 1" for i, f in enumerate(flags) if f not in NOT_BEHAVIOUR_FLAGS) or "FALSE"


PAGE_MESSAGES = 20_000   # messages per page of the paged scans (about the study's 16k: one page at 1x)
MAX_PAGES = 4            # at most this many pages: each page rescans the codes' message ids, so past
                         # 4 x PAGE_MESSAGES messages the pages grow instead (time stays linear)


Page = tuple[str | None, str | None]      # [lo, hi) of message ids; None: open end


def page_sql(page: Page, column: str = "message_id") -> str:
    """The SQL condition `column` (a message id) is in the page."""
    lo, hi = page
    conds = ([f"{column} >= {sql_str(lo)}"] if lo is not None else []) + \
            ([f"{column} < {sql_str(hi)}"] if hi is not None else [])
    return " AND ".join(conds) or "TRUE"


def message_pages(con: Any, per_page: int = PAGE_MESSAGES) -> list[Page]:
    """Ranges of message ids that split the messages into pages of about
    `per_page` messages each: half-open ranges of message ids between run ids, so that a run's
    messages ('<run_id>#<seq>') usually fall in one page. The conditions partition every string
    (the first and last ranges are open), so any row lands in exactly one page, whatever its id.
    Reading the store a page at a time keeps the working memory of a scan flat in store size (up
    to MAX_PAGES pages; past that, pages hold more messages, since every page rescans the codes).
    Only the runs' message counts are fetched (one row per run)."""
    rows = connection(con).execute(
        "SELECT run_id, count(*) FROM messages GROUP BY run_id ORDER BY run_id").fetchall()
    per_page = max(per_page, -(-sum(n for _, n in rows) // MAX_PAGES))
    bounds: list[str] = []
    filled = 0
    for run_id, n in rows:
        if filled >= per_page:
            bounds.append(run_id)
            filled = 0
        filled += n
    edges: list[str | None] = [None, *bounds, None]
    return list(zip(edges, edges[1:]))


def agent_partial_sql(codebook_id: str, flags: Sequence[str], rule: str, page: Page = (None, None)) -> str:
    """Per (run, agent), over one page of messages (`message_pages`): counted messages, `any_flag`
    (messages with any behaviour flag True: every flag but those in NOT_BEHAVIOUR_FLAGS), max_rows,
    and per flag i the coded count n_i, the True count t_i under the rule, and the True counts
    under intersection (i_i) and union (u_i). Every message's codes are in one page (pages are
    ranges of message ids), so the pages' rows add up to the whole store's."""
    k = len(flags)
    per_agent = ", ".join(f"count(d{i})::INTEGER AS n{i}, coalesce(sum(d{i}), 0)::INTEGER AS t{i}, "
                          f"coalesce(sum(di{i}), 0)::INTEGER AS i{i}, coalesce(sum(du{i}), 0)::INTEGER AS u{i}"
                          for i in range(k))
    return f"""
        WITH {per_message_sql(codebook_id, flags, f"AND {page_sql(page)}")},
             {decided_sql(flags, rule, page_sql(page, "m.message_id"))}
        SELECT run_id, sender AS agent_id, count(*) FILTER (WHERE {any_coded_sql(flags)})::INTEGER AS messages,
               count(*) FILTER (WHERE {any_true_sql(flags)})::INTEGER AS any_flag, max(rows) AS max_rows,
               {per_agent}
        FROM decided GROUP BY run_id, sender
    """


def agent_counts_sql(partial: str, flags: Sequence[str], runs: Page = (None, None)) -> str:
    """The per-agent counts from the pages' partial rows (table `partial`): summed per (run,
    agent), agents with a counted message in a finished run, with series, name, model and label;
    only the runs whose id is in the range `runs` (by default all). Summed a range of runs at a
    time (`agent_counts` uses the message pages' bounds), the hash aggregate holds a page's agents,
    not the store's: 150k agents' 30 sums did not fit a 64MB budget (issue 12)."""
    k = len(flags)
    sums = ", ".join(f"sum(n{i})::INTEGER AS n{i}, sum(t{i})::INTEGER AS t{i}, "
                     f"sum(i{i})::INTEGER AS i{i}, sum(u{i})::INTEGER AS u{i}" for i in range(k))
    return f"""
        WITH per_agent AS (
            SELECT run_id, agent_id, sum(messages)::INTEGER AS messages, sum(any_flag)::INTEGER AS any_flag,
                   max(max_rows) AS max_rows{', ' + sums if sums else ''}
            FROM {partial} WHERE {page_sql(runs, "run_id")} GROUP BY run_id, agent_id
        )
        SELECT p.*, r.series, a.name, a.model, coalesce(a.model_label, a.model, p.agent_id) AS model_label
        FROM per_agent p JOIN runs r ON r.run_id = p.run_id AND r.status <> 'running'
        LEFT JOIN agents a ON a.run_id = p.run_id AND a.agent_id = p.agent_id
        WHERE p.messages > 0
    """


def round_rates_sql(codebook_id: str, flags: Sequence[str], rule: str, series: str,
                    page: Page = (None, None)) -> str:
    """Per round of one series' finished runs, over one page of messages (`message_pages`; by
    default all): counted messages and per flag n_i (coded), t_i (True under the rule): the
    study's flag prevalence by round (its temporal figure, series A), to be summed over the pages.
    Only that series' codes are read."""
    restrict = (f"AND message_id IN (SELECT m.message_id FROM messages m JOIN runs r USING (run_id) "
                f"WHERE r.series = {sql_str(series)} AND r.status <> 'running' AND {page_sql(page, 'm.message_id')}) "
                f"AND {page_sql(page)}")
    cols = ", ".join(f"count(d{i})::INTEGER AS n{i}, coalesce(sum(d{i}), 0)::INTEGER AS t{i}"
                     for i in range(len(flags)))
    return f"""
        WITH {per_message_sql(codebook_id, flags, restrict)},
             {decided_sql(flags, rule, page_sql(page, "m.message_id"))}
        SELECT round, count(*) FILTER (WHERE {any_coded_sql(flags)})::INTEGER AS messages, {cols}
        FROM decided GROUP BY round
    """


def agent_counts(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                 traits: Sequence[str] | None = None, page_messages: int = PAGE_MESSAGES,
                 pages: Sequence[Page] | None = None) -> AgentCounts:
    """Scan the codes once; keep per-agent counts in a temp table (see the module docstring).
    The scan goes a page of about `page_messages` messages at a time (`message_pages`), each
    page's per-agent sums kept in a small table and added up at the end: the same integers as one
    pass over everything, with working memory that does not grow with the store. `pages`: the
    store's `message_pages`, if the caller has them (else computed here)."""
    con = connection(con)
    check_rule(rule)
    codebook_id = resolve_codebook(con, codebook_id)
    flags = codebook_flags(con, codebook_id)
    if traits is None:
        traits = trait_flags(flags)
    else:
        unknown = [t for t in traits if t not in flags]
        if unknown:
            raise UserError(f"no codes for flag(s) {', '.join(unknown)} under {codebook_id}; "
                            f"flags: {', '.join(flags)}")
    if pages is None:
        pages = message_pages(con, page_messages)
    partial = create_scratch(con, "agent_partial", agent_partial_sql(codebook_id, flags, rule, pages[0]), "profiles")
    try:
        for page in pages[1:]:
            try:
                con.execute(f"INSERT INTO {partial} {agent_partial_sql(codebook_id, flags, rule, page)}")
            except duckdb.OutOfMemoryException:
                raise                     # analysis.memory.within_budget lifts its budget
            except duckdb.Error as exc:
                raise UserError(f"cannot compute profiles: {first_line(exc)}") from None
        table = _sum_partials(con, partial, flags, pages)
    finally:
        drop_scratch(con, partial)
    max_rows = con.execute(f"SELECT coalesce(max(max_rows), 0) FROM {table}").fetchone()[0]
    if max_rows > MAX_SLOT:       # some message has > 255 codes: check no flag has > 255 judges
        judges = con.execute("SELECT count(DISTINCT judge) FROM codes WHERE codebook_id = ?",
                             [codebook_id]).fetchone()[0]
        if judges > MAX_SLOT:
            drop_scratch(con, table)
            raise UserError(f"{judges} judges coded {codebook_id}; profiles adjudicate at most {MAX_SLOT}")
    return AgentCounts(table, codebook_id, rule, tuple(flags), tuple(traits))


def _sum_partials(con: duckdb.DuckDBPyConnection, partial: str, flags: Sequence[str], pages: Sequence[Page]) -> str:
    """The agent_counts table from the partial rows: summed a range of runs at a time (the pages'
    bounds, read as run ids: every row of a run falls in one range, whichever page it came from)."""
    table = create_scratch(con, "agent_counts", agent_counts_sql(partial, flags, pages[0]), "profiles")
    try:
        for page in pages[1:]:
            con.execute(f"INSERT INTO {table} {agent_counts_sql(partial, flags, page)}")
    except BaseException:
        drop_scratch(con, table)
        raise
    return table


def _counts(con, counts: AgentCounts | None, rule: Rule, codebook_id: str | None) -> tuple[AgentCounts, bool]:
    if counts is not None:
        return counts, False
    return agent_counts(con, rule=rule, codebook_id=codebook_id), True


def share_sql(i: int, prefix: str = "") -> str:
    return f"CASE WHEN {prefix}n{i} > 0 THEN {prefix}t{i}::DOUBLE / {prefix}n{i} END"


def _nan(v: float | None) -> float:
    return NAN if v is None else float(v)


# ---- profiles -------------------------------------------------------------------------------

def agent_profiles(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                   counts: AgentCounts | None = None) -> list[AgentProfile]:
    """Every agent's profile in every (finished, coded) run, ordered by run and roster position."""
    con = connection(con)
    counts, own = _counts(con, counts, rule, codebook_id)
    try:
        shares = ", ".join(share_sql(i, "c.") for i in range(len(counts.flags)))
        rows = con.execute(f"""
            SELECT c.run_id, c.series, c.agent_id, c.name, c.model, c.model_label, c.messages{', ' + shares if shares else ''}
            FROM {counts.table} c LEFT JOIN agents a ON a.run_id = c.run_id AND a.agent_id = c.agent_id
            ORDER BY c.run_id, a.position NULLS LAST, c.agent_id""").fetchall()
    finally:
        if own:
            counts.drop(con)
    return [AgentProfile(run_id=r[0], series=r[1], agent_id=r[2], name=r[3], model=r[4], model_label=r[5],
                         messages=r[6], shares={f: _nan(v) for f, v in zip(counts.flags, r[7:])}) for r in rows]


def model_profiles(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                   by_series: bool = False, counts: AgentCounts | None = None) -> list[ModelProfile]:
    """Profiles per model label (pooled over its messages across runs), optionally per series."""
    con = connection(con)
    counts, own = _counts(con, counts, rule, codebook_id)
    k = len(counts.flags)
    sums = ", ".join(f"sum(n{i}) AS n{i}, sum(t{i}) AS t{i}" for i in range(k))
    shares = ", ".join(share_sql(i) for i in range(k))
    group = "model_label, series" if by_series else "model_label"
    try:
        rows = con.execute(f"""
            WITH g AS (
                SELECT {group}, count(DISTINCT run_id) AS runs, count(*) AS agents,
                       sum(messages) AS messages{', ' + sums if sums else ''}
                FROM {counts.table} GROUP BY {group})
            SELECT model_label, {"series" if by_series else "NULL::VARCHAR"}, runs, agents, messages
                   {', ' + shares if shares else ''}
            FROM g ORDER BY {"series, " if by_series else ""}model_label""").fetchall()
    finally:
        if own:
            counts.drop(con)
    out = [ModelProfile(r[0], r[1], r[2], r[3], int(r[4]), {f: _nan(v) for f, v in zip(counts.flags, r[5:])})
           for r in rows]
    if by_series:
        out.sort(key=lambda m: (series_key(m.series), m.model_label))
    return out


def aggregation_sensitivity(con: Any, counts: AgentCounts) -> list[dict[str, Any]]:
    """Per flag, the share of coded messages that are True under intersection and under union of
    the judges (the study's label-aggregation figure), from the counts of one scan."""
    k = len(counts.flags)
    if not k:
        return []
    sums = ", ".join(f"sum(n{i}), sum(i{i}), sum(u{i})" for i in range(k))
    row = connection(con).execute(f"SELECT {sums} FROM {counts.table}").fetchall()[0]
    out = []
    for i, flag in enumerate(counts.flags):
        n, inter, union = (int(v or 0) for v in row[3 * i:3 * i + 3])
        out.append({"flag": flag, "n": n, "intersection": inter / n if n else NAN, "union": union / n if n else NAN})
    return out


def round_rates(con: Any, series: str, *, rule: Rule = "intersection", codebook_id: str | None = None,
                page_messages: int = PAGE_MESSAGES, pages: Sequence[Page] | None = None) -> list[dict[str, Any]]:
    """Per round of one series: counted messages and each flag's share of them (True under the
    rule among coded): the study's flag prevalence by round (series A in its temporal figure).
    Counted a page of about `page_messages` messages at a time (or over the given `pages`), the
    pages' counts summed."""
    con = connection(con)
    check_rule(rule)
    codebook_id = resolve_codebook(con, codebook_id)
    flags = codebook_flags(con, codebook_id)
    if pages is None:
        pages = message_pages(con, page_messages)
    cols = ", ".join(f"sum(n{i})::INTEGER, sum(t{i})::INTEGER" for i in range(len(flags)))
    with scratch(con, "round_rates", round_rates_sql(codebook_id, flags, rule, series, pages[0]), "rates") as table:
        for page in pages[1:]:
            con.execute(f"INSERT INTO {table} {round_rates_sql(codebook_id, flags, rule, series, page)}")
        rows = con.execute(f"SELECT round, sum(messages)::INTEGER{', ' + cols if cols else ''} FROM {table} "
                           "GROUP BY round HAVING sum(messages) > 0 ORDER BY round").fetchall()
    return [{"round": r[0], "messages": int(r[1]),
             "rates": {f: (r[3 + 2 * i] / r[2 + 2 * i] if r[2 + 2 * i] else NAN) for i, f in enumerate(flags)}}
            for r in rows]


# ---- similarity -----------------------------------------------------------------------------

def run_similarity_sql(counts: AgentCounts) -> str:
    """Per run: agents, usable agents (non-zero trait vector), messages, mean pairwise cosine."""
    idx = [counts.index(f) for f in counts.traits]
    if not idx:
        raise UserError("no trait flags to build profiles from (only comp/xref are coded)")
    s = [f"coalesce({share_sql(i)}, 0)" for i in idx]     # a flag no judge coded counts as 0
    norm = "sqrt(" + " + ".join(f"s{j} * s{j}" for j in range(len(idx))) + ")"
    units = ", ".join(f"CASE WHEN norm > 0 THEN s{j} / norm END AS u{j}" for j in range(len(idx)))
    sq = " + ".join(f"sum(u{j}) * sum(u{j})" for j in range(len(idx)))
    return f"""
        WITH s AS (SELECT run_id, series, messages, {', '.join(f'{x} AS s{j}' for j, x in enumerate(s))}
                   FROM {counts.table}),
        v AS (SELECT *, {norm} AS norm FROM s),
        u AS (SELECT run_id, series, messages, norm, {units} FROM v)
        SELECT run_id, any_value(series) AS series, count(*)::INTEGER AS agents,
               count(*) FILTER (WHERE norm > 0)::INTEGER AS usable, sum(messages)::BIGINT AS messages,
               CASE WHEN count(*) FILTER (WHERE norm > 0) >= 2 THEN
                    (({sq}) - count(*) FILTER (WHERE norm > 0))
                    / (count(*) FILTER (WHERE norm > 0) * (count(*) FILTER (WHERE norm > 0) - 1))::DOUBLE
               END AS similarity
        FROM u GROUP BY run_id ORDER BY run_id
    """


def run_similarity(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                   counts: AgentCounts | None = None) -> list[RunSimilarity]:
    """Mean pairwise cosine similarity of the agents' trait profiles, per coded run."""
    con = connection(con)
    counts, own = _counts(con, counts, rule, codebook_id)
    try:
        rows = con.execute(run_similarity_sql(counts)).fetchall()
    finally:
        if own:
            counts.drop(con)
    out = [RunSimilarity(r[0], r[1], r[2], r[3], int(r[4]), _clip(_nan(r[5]))) for r in rows]
    out.sort(key=lambda x: (series_key(x.series), run_key(x.run_id)))
    return out


def _clip(v: float) -> float:
    """Rounding can put a cosine a hair outside [-1, 1]; profiles are non-negative, so [0, 1]."""
    return v if math.isnan(v) else min(1.0, max(0.0, v))


def series_similarity(con: Any, *, rule: Rule = "intersection", codebook_id: str | None = None,
                      counts: AgentCounts | None = None) -> list[SeriesSimilarity]:
    """Per series: every finished run's similarity, and n, mean, median, sd, IQR over the runs."""
    con = connection(con)
    counts, own = _counts(con, counts, rule, codebook_id)
    try:
        runs = run_similarity(con, counts=counts)
        totals = dict(con.execute("SELECT series, count(*) FROM runs WHERE status <> 'running' "
                                  "GROUP BY series").fetchall())
    finally:
        if own:
            counts.drop(con)
    by: dict[str | None, list[RunSimilarity]] = {}
    for r in runs:
        by.setdefault(r.series, []).append(r)
    names = sorted(set(by) | set(totals), key=series_key)
    return [SeriesSimilarity(s, int(totals.get(s, 0)), len(by.get(s, [])), sum(r.messages for r in by.get(s, [])),
                             describe(r.similarity for r in by.get(s, [])), by.get(s, []))
            for s in names]


def values_by_series(series: Sequence[SeriesSimilarity]) -> dict[str, list[float]]:
    """series -> the runs' defined similarity values (what the comparisons test)."""
    return {s.series: [r.similarity for r in s.values if not math.isnan(r.similarity)]
            for s in series if s.series is not None}


# ---- ordering -------------------------------------------------------------------------------

def natural_key(text: str) -> tuple:
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in re.split(r"(\d+)", text) if p)


def series_key(series: str | None) -> tuple:
    """A, B, ..., K1, K2, K10 (natural order); None last."""
    return (1, ()) if series is None else (0, natural_key(series))


def run_key(run_id: str) -> tuple:
    return natural_key(run_id)

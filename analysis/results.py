"""Scenario results: outcome rates and means per model x condition, with 95% intervals, and gates.

`results(con, metrics=None, by=("model", "condition"))` reads the `outcomes` table joined with
`runs` and `agents` and summarises every metric per group. Grouping keys:

- `model` (agents.model), `agent` (the persona key), `label` (agents.model_label)
- `condition` (the run's series, or the suite name for a file without series), `series`, `suite`, `kind`
- any factor level stored in `runs.factors` by the scenario kind (e.g. `game`, `opponent`, `case`,
  `visibility`); a run without that factor groups under None.

Each metric gets one of three summaries, decided per metric over all its rows:

- `proportion`: every row carries `successes` and `n` in its detail (e.g. cooperation_rate over a
  run's moves): pooled successes / pooled n, Wilson 95% interval.
- `rate`: every value is 0 or 1 (e.g. override): successes / n, Wilson 95% interval; unless an
  outcome declares itself a quantity (`summary: "mean"` in its detail, e.g. a count of degraded
  actions that happens to be 0 or 1 in every run).
- `mean`: anything else (e.g. total_payoff): mean, sd, n and a t-based 95% interval
  (mean +- t(0.975, n-1) * sd / sqrt(n); no interval for n < 2).

Missing values (NULL) are excluded from n and counted in `missing`.

`check_gate(rows, "cooperation_rate < 0.5")` parses a failure condition (metric, an operator among
> >= < <= == !=, a number; optionally `model=...`, `condition=...` or any grouping key as filters,
and `.low`/`.high`/`.n`/`.missing` after the metric to test that column instead of the estimate)
without eval, and returns one message per group for which the condition holds. A CLI exits 1 when
the list is not empty. `validate_gate(con, expression)` first checks the gate against the store: its
metric, filter keys and filter values must all occur there, so a typo cannot make a gate pass.
"""

from __future__ import annotations

import json
import math
import operator
import re
from collections import defaultdict
from dataclasses import asdict, dataclass
from dataclasses import field as dataclass_field
from typing import Any, Iterable, Sequence

from sociolab.base.errors import UserError

Z95 = 1.959963984540054
BASE_KEYS = {"model": "a.model", "agent": "a.persona", "label": "a.model_label",
             "condition": "coalesce(r.series, r.suite)", "series": "r.series", "suite": "r.suite", "kind": "r.kind"}
CONTINUOUS_METRICS = frozenset({"total_payoff", "mean_payoff", "invalid_moves"})


@dataclass
class ResultRow:
    metric: str
    group: dict[str, Any]
    summary: str                    # proportion | rate | mean
    n: int                          # non-missing observations (pooled trials for a proportion)
    missing: int                    # rows whose value is NULL
    value: float | None             # the rate or the mean; None when n == 0
    low: float | None = None        # 95% interval
    high: float | None = None
    successes: int | None = None    # rates and proportions
    sd: float | None = None         # means
    runs: int = 0                   # distinct runs contributing
    rows: int = 0                   # outcome rows (agents x runs) contributing, missing included

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def label(self) -> str:
        where = ", ".join(f"{k}={v}" for k, v in self.group.items())
        return f"{self.metric} [{where}]" if where else self.metric


def wilson(successes: int, n: int, z: float = Z95) -> tuple[float, float]:
    """Wilson score interval for a binomial proportion (statsmodels' `proportion_confint(method='wilson')`)."""
    if n <= 0:
        raise ValueError("n must be positive")
    p = successes / n
    denom = 1 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at 0 and n successes the exact bound is 0 or 1; floating point can land a hair inside it
    low = 0.0 if successes == 0 else max(0.0, centre - half)
    high = 1.0 if successes == n else min(1.0, centre + half)
    return low, high


def newcombe(s1: int, n1: int, s0: int, n0: int) -> tuple[float, float, float]:
    """p1 - p0 and its 95% interval (Newcombe 1998, method 10: from the two Wilson intervals);
    unlike the Wald interval it stays inside [-1, 1] and is sensible at 0 or n successes, and a
    contrast never disagrees with the rates it compares."""
    p1, p0 = s1 / n1, s0 / n0
    l1, u1 = wilson(s1, n1)
    l0, u0 = wilson(s0, n0)
    d = p1 - p0
    return d, d - math.sqrt((p1 - l1) ** 2 + (u0 - p0) ** 2), d + math.sqrt((u1 - p1) ** 2 + (p0 - l0) ** 2)


def t_interval(values: Sequence[float]) -> tuple[float, float | None, float | None, float | None]:
    """(mean, sd, low, high): a t-based 95% interval; sd and interval None when n < 2."""
    n = len(values)
    mean = sum(values) / n
    if n < 2:
        return mean, None, None, None
    sd = math.sqrt(sum((v - mean) ** 2 for v in values) / (n - 1))
    from scipy.stats import t

    half = float(t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, sd, mean - half, mean + half


def _factors(raw: Any) -> dict[str, Any]:
    if raw is None:
        return {}
    if isinstance(raw, dict):
        return raw
    try:
        value = json.loads(raw)
    except (TypeError, ValueError):
        return {}
    return value if isinstance(value, dict) else {}


def _detail(raw: Any) -> dict[str, Any]:
    return _factors(raw)


def results(con, *, metrics: Iterable[str] | None = None,
            by: Sequence[str] = ("model", "condition")) -> list[ResultRow]:
    """Summaries of `outcomes` per metric and group (see the module docstring)."""
    by = tuple(by)
    base = [k for k in by if k in BASE_KEYS]
    select = ", ".join(f"{BASE_KEYS[k]} AS {k}" for k in base)
    sql = ("SELECT o.run_id, o.metric, o.value, o.detail, r.factors" + (", " + select if select else "") +
           " FROM outcomes o JOIN runs r ON r.run_id = o.run_id"
           " LEFT JOIN agents a ON a.run_id = o.run_id AND a.agent_id = o.agent_id")
    params: list[Any] = []
    wanted = list(metrics) if metrics is not None else None
    if wanted is not None:
        if not wanted:
            return []
        sql += " WHERE o.metric IN (" + ", ".join("?" for _ in wanted) + ")"
        params = wanted
    rows = con.execute(sql, params).fetchall()
    if wanted:
        present = {r[0] for r in con.execute("SELECT DISTINCT metric FROM outcomes").fetchall()}
        unknown = [m for m in wanted if m not in present]
        if unknown and present:
            raise UserError(f"no outcome '{unknown[0]}' in this store (metrics: {', '.join(sorted(present))})")
    factor_keys = [k for k in by if k not in BASE_KEYS]
    if factor_keys:
        known = set()
        for r in rows:
            known |= set(_factors(r[4]))
        unknown = [k for k in factor_keys if k not in known]
        if unknown and rows:
            raise UserError(f"unknown grouping key '{unknown[0]}': use {', '.join(sorted(BASE_KEYS))} "
                            f"or a factor of these runs ({', '.join(sorted(known)) or 'none stored'})")
    # metric -> group key -> observations
    groups: dict[str, dict[tuple, list[tuple[str, float | None, dict]]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        run_id, metric, value, detail, factors = r[:5]
        basevals = dict(zip(base, r[5:]))
        fac = _factors(factors)
        key = tuple(basevals[k] if k in BASE_KEYS else fac.get(k) for k in by)
        groups[metric][key].append((run_id, value, _detail(detail)))
    out: list[ResultRow] = []
    for metric in sorted(groups):
        obs_all = [o for g in groups[metric].values() for o in g if o[1] is not None]
        summary = summary_kind(metric, obs_all)
        for key in sorted(groups[metric], key=lambda k: tuple("" if v is None else str(v) for v in k)):
            obs = groups[metric][key]
            out.append(summarise(metric, dict(zip(by, key)), summary, obs))
    return out


def stored_metrics(con) -> list[str]:
    """The metrics present in `outcomes`, sorted."""
    return sorted(m for (m,) in con.execute("SELECT DISTINCT metric FROM outcomes").fetchall())


def stored_values(con) -> dict[str, set[str]]:
    """Grouping key -> its distinct values over the scored runs, as a gate filter compares them
    (`str`, so a run without a factor gives 'None'): the base keys and every stored factor."""
    select = ", ".join(f"{expr} AS {key}" for key, expr in BASE_KEYS.items())
    rows = con.execute(f"SELECT DISTINCT r.factors, {select} FROM outcomes o JOIN runs r ON r.run_id = o.run_id"
                       " LEFT JOIN agents a ON a.run_id = o.run_id AND a.agent_id = o.agent_id").fetchall()
    factors = [_factors(r[0]) for r in rows]
    values: dict[str, set[str]] = {key: {str(r[i + 1]) for r in rows} for i, key in enumerate(BASE_KEYS)}
    for key in {k for f in factors for k in f}:
        values[key] = {str(f.get(key)) for f in factors}
    return values


def summary_kind(metric: str, observations: list[tuple[str, float | None, dict]]) -> str:
    if observations and all("successes" in d and "n" in d for _, _, d in observations):
        return "proportion"
    declared_mean = any(d.get("summary") == "mean" for _, _, d in observations)
    if not declared_mean and metric not in CONTINUOUS_METRICS and all(v in (0.0, 1.0) for _, v, _ in observations):
        return "rate"
    return "mean"


def summarise(metric: str, group: dict[str, Any], summary: str,
              obs: list[tuple[str, float | None, dict]]) -> ResultRow:
    present = [(run, v, d) for run, v, d in obs if v is not None]
    missing = len(obs) - len(present)
    runs = len({run for run, _, _ in obs})
    row = ResultRow(metric, group, summary, 0, missing, None, runs=runs, rows=len(obs))
    if summary == "proportion":
        row.successes = int(sum(d["successes"] for _, _, d in present))
        row.n = int(sum(d["n"] for _, _, d in present))
    elif summary == "rate":
        row.successes = int(sum(v for _, v, _ in present))
        row.n = len(present)
    else:
        values = [float(v) for _, v, _ in present]
        row.n = len(values)
        if values:
            row.value, row.sd, row.low, row.high = t_interval(values)
        return row
    if row.n > 0:
        row.value = row.successes / row.n
        row.low, row.high = wilson(row.successes, row.n)
    return row


# ----------------------------------------------------------------------------------------------
# Gates
# ----------------------------------------------------------------------------------------------

OPS = {">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
       "==": operator.eq, "!=": operator.ne}
FIELDS = {"": "value", "value": "value", "low": "low", "high": "high", "n": "n", "missing": "missing",
          "rate": "value", "mean": "value"}
_GATE = re.compile(r"^\s*(?P<metric>[A-Za-z_][A-Za-z0-9_]*)(?:\.(?P<field>[A-Za-z]+))?\s*"
                   r"(?P<op>>=|<=|==|!=|>|<)\s*(?P<num>[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)"
                   r"(?P<filters>(?:\s*,?\s*[A-Za-z_][A-Za-z0-9_]*\s*=\s*[^\s,=]+)*)\s*$")
_FILTER = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)\s*=\s*([^\s,=]+)")


@dataclass
class Gate:
    metric: str
    field: str
    op: str
    threshold: float
    filters: dict[str, str] = dataclass_field(default_factory=dict)

    def __str__(self) -> str:
        name = self.metric + ("" if self.field == "value" else f".{self.field}")
        extra = "".join(f" {k}={v}" for k, v in self.filters.items())
        return f"{name} {self.op} {self.threshold:g}{extra}"


def parse_gate(expression: str) -> Gate:
    """`metric[.field] OP number [key=value ...]`; raises UserError on anything else."""
    m = _GATE.match(expression or "")
    if not m:
        raise UserError(f"cannot read the gate '{expression}': write it as 'METRIC OP NUMBER' with OP one of "
                        "> >= < <= == !=, e.g. 'cooperation_rate < 0.5' (optionally 'model=NAME')")
    fld = (m.group("field") or "").lower()
    if fld not in FIELDS:
        raise UserError(f"gate '{expression}': unknown field '.{fld}' (use .low, .high, .n or .missing)")
    filters = dict(_FILTER.findall(m.group("filters") or ""))
    return Gate(m.group("metric"), FIELDS[fld], m.group("op"), float(m.group("num")), filters)


def _plural(key: str) -> str:
    return key if key.endswith("s") else key[:-1] + "ies" if key.endswith("y") else key + "s"


def validate_gate(con, expression: str) -> Gate:
    """Parse the gate `expression` and check it against the store: its metric, every filter key and
    every filter value must occur among the scored runs. Otherwise a one-line UserError naming the
    valid ones, so a misspelt name cannot make a CI gate pass by matching nothing."""
    gate = parse_gate(expression)
    where = f'--fail-if "{expression}"'
    metrics = stored_metrics(con)
    if gate.metric not in metrics:
        raise UserError(f"{where}: no metric '{gate.metric}' in the results; metrics: {', '.join(metrics) or 'none'}")
    values = stored_values(con)
    for key, value in gate.filters.items():
        if key not in values:
            raise UserError(f"{where}: no key '{key}' in the results; keys: {', '.join(sorted(values))}")
        if value not in values[key]:
            raise UserError(f"{where}: no {key} '{value}' in the results; "
                            f"{_plural(key)}: {', '.join(sorted(values[key]))}")
    return gate


def check_gate(rows: Sequence[ResultRow], expression: str) -> list[str]:
    """The groups for which the failure condition `expression` holds, one message each.

    A gate on a metric with no results, filtered on a key the rows are not grouped by, or whose
    filters match no group, is a UserError (a typo must not pass silently). Groups with no
    observations are skipped.
    """
    gate = parse_gate(expression)
    mine = [r for r in rows if r.metric == gate.metric]
    if not mine:
        known = sorted({r.metric for r in rows})
        raise UserError(f"gate '{expression}': no results for metric '{gate.metric}'"
                        f" (available: {', '.join(known) or 'none'})")
    for key in gate.filters:
        if key not in mine[0].group:
            raise UserError(f"gate '{expression}': results are not grouped by '{key}' "
                            f"(grouped by: {', '.join(mine[0].group) or 'nothing'})")
    mine = [r for r in mine if all(str(r.group.get(k)) == v for k, v in gate.filters.items())]
    if not mine:
        raise UserError(f"gate '{expression}': no group of '{gate.metric}' has "
                        + " ".join(f"{k}={v}" for k, v in gate.filters.items()))
    compare = OPS[gate.op]
    violations = []
    for r in mine:
        actual = getattr(r, gate.field)
        if actual is None:
            continue
        if compare(actual, gate.threshold):
            shown = f"{actual:.4g}" if isinstance(actual, float) else str(actual)
            violations.append(f"{r.label()}: {gate.field} {shown} {gate.op} {gate.threshold:g}")
    return violations


# ----------------------------------------------------------------------------------------------
# Rendering
# ----------------------------------------------------------------------------------------------

def _fmt(x: float | None, digits: int = 3) -> str:
    return "" if x is None else f"{x:.{digits}f}"


def render_results(rows: Sequence[ResultRow], console) -> None:
    """One rich table per metric: group keys, n, missing, estimate and its 95% interval. Stored
    names (metrics, group keys and values) are escaped so that they never act as markup."""
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        console.print("No outcomes in this store (run a scenario kind that scores outcomes).")
        return
    by_metric: dict[str, list[ResultRow]] = defaultdict(list)
    for r in rows:
        by_metric[r.metric].append(r)
    for metric, group_rows in by_metric.items():
        summary = group_rows[0].summary
        table = Table(title=f"{escape(metric)} ({'mean, t 95% CI' if summary == 'mean' else 'rate, Wilson 95% CI'})",
                      title_justify="left")
        keys = list(group_rows[0].group)
        for k in keys:
            table.add_column(escape(k))
        table.add_column("n", justify="right")
        if summary != "mean":
            table.add_column("successes", justify="right")
        table.add_column("missing", justify="right")
        table.add_column("rate" if summary != "mean" else "mean", justify="right")
        if summary == "mean":
            table.add_column("sd", justify="right")
        table.add_column("95% CI", justify="right")
        for r in group_rows:
            ci = f"[{_fmt(r.low)}, {_fmt(r.high)}]" if r.low is not None else ""
            cells = ["" if r.group[k] is None else escape(str(r.group[k])) for k in keys]
            cells += [str(r.n)]
            if summary != "mean":
                cells.append(str(r.successes))
            cells += [str(r.missing), _fmt(r.value)]
            if summary == "mean":
                cells.append(_fmt(r.sd))
            cells.append(escape(ci))
            table.add_row(*cells)
        console.print(table)

"""Population measures after "Molt Dynamics", over the `actions` table (read-only; docs/population.md).

Per population run:
- network: the interaction network (an edge a -> b for every reply, react, follow, repost or
  contribution of a to b): nodes, distinct edges, reciprocity, the largest in-degree;
- roles: per-agent features (the share of each action kind among its actions), clustered by k-means (k = 6 as the study, or chosen by silhouette); the
  silhouette of the clustering (on a sample) and the periphery share (the largest cluster's);
- cascades: each post's size (1 + its reposts), the size distribution, a discrete power-law fit
  (alpha by maximum likelihood, xmin by the smallest KS distance, Clauset et al. 2009) with its
  KS distance and a parametric bootstrap p (fitted law, same tail size, refitted each time);
- adoption by exposures: for each agent and post, k = the agent's followees who shared it (posted
  or reposted) no later than the agent reposted it (any time, if it did not); P(repost | k), with
  Wilson intervals (over a sample of at most 20,000 following agents);
- tasks: posted, resolved by a group (a quorum of contributors), and the single-agent baseline's
  successes, both with Wilson intervals, and their difference.

Aggregation is DuckDB SQL over the table; fits and clustering are numpy/scipy on the aggregates.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import duckdb
import numpy as np

from .results import wilson

KIND_CODES = {"post": 0, "reply": 1, "react": 2, "follow": 3, "repost": 4, "task": 5, "contribute": 6,
              "resolve": 7, "solo_ok": 8, "solo_fail": 9, "invalid": 10}
FEATURE_KINDS = ("post", "reply", "react", "follow", "repost", "task", "contribute")
EDGE_KINDS = (1, 2, 3, 4, 6)


@dataclass
class PowerLawFit:
    alpha: float
    xmin: int
    n_tail: int
    ks: float
    p_value: float | None
    bootstrap: int


@dataclass
class PopulationReport:
    run_id: str
    actions: int
    agents_active: int
    by_kind: dict[str, int]
    network: dict[str, Any]
    roles: dict[str, Any]
    cascades: dict[str, Any]
    adoption: list[dict[str, Any]]
    tasks: dict[str, Any]
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def population_runs(con: duckdb.DuckDBPyConnection) -> list[str]:
    return [r[0] for r in con.execute("SELECT DISTINCT run_id FROM actions ORDER BY run_id").fetchall()]


def analyse(con: duckdb.DuckDBPyConnection, run_id: str, *, k: int | None = 6, bootstrap: int = 50,
            seed: int = 0) -> PopulationReport:
    """Every measure of one run (module docstring). k=None: k by silhouette over 2..8."""
    rng = np.random.default_rng(seed)
    by_kind = {name: n for name, n in con.execute(
        "SELECT k.name, count(*) FROM actions a JOIN action_kinds k ON k.code = a.kind WHERE a.run_id = ? "
        "GROUP BY 1 ORDER BY 1", [run_id]).fetchall()}
    total = sum(by_kind.values())
    notes: list[str] = []
    feats, agents = agent_features(con, run_id)
    roles = cluster_roles(feats, k, rng)
    sizes = cascade_sizes(con, run_id)
    fit = fit_power_law(sizes, bootstrap=bootstrap, rng=rng) if sizes.size >= 10 else None
    if fit is None:
        notes.append("fewer than 10 posts: no power-law fit")
    values, counts = np.unique(sizes, return_counts=True)
    cascades = {"posts": int(sizes.size), "reposts": int(sizes.sum() - sizes.size),
                "largest": int(sizes.max()) if sizes.size else 0,
                "distribution": [[int(v), int(c)] for v, c in zip(values, counts)],
                "fit": asdict(fit) if fit else None}
    return PopulationReport(run_id, total, int(agents.size), by_kind, network(con, run_id), roles, cascades,
                            adoption_by_exposures(con, run_id), tasks(con, run_id), notes)


# ---- network and roles -------------------------------------------------------------------------

def network(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    con.execute("CREATE OR REPLACE TEMP TABLE _pop_edges AS SELECT DISTINCT agent AS a, target AS b FROM actions "
                f"WHERE run_id = ? AND kind IN {EDGE_KINDS} AND target IS NOT NULL AND target <> agent", [run_id])
    edges, nodes, recip, top = fetch_one(con, """
        SELECT (SELECT count(*) FROM _pop_edges),
               (SELECT count(*) FROM (SELECT a FROM _pop_edges UNION SELECT b FROM _pop_edges)),
               (SELECT count(*) FROM _pop_edges e JOIN _pop_edges r ON r.a = e.b AND r.b = e.a),
               (SELECT max(n) FROM (SELECT count(*) AS n FROM _pop_edges GROUP BY b))""")
    con.execute("DROP TABLE _pop_edges")
    return {"nodes": nodes, "edges": edges, "reciprocity": recip / edges if edges else None,
            "mean_degree": edges / nodes if nodes else None, "max_in_degree": top or 0}


def fetch_one(con: duckdb.DuckDBPyConnection, sql: str, params: list[Any] | None = None) -> tuple[Any, ...]:
    row = con.execute(sql, params or []).fetchone()
    assert row is not None  # aggregates always return a row
    return row


SMOOTHING = 1.0  # pseudo-actions of the population's mix added to each agent's counts (agent_features)


def agent_features(con: duckdb.DuckDBPyConnection, run_id: str) -> tuple[np.ndarray, np.ndarray]:
    """(features, agent ids) of every agent with at least one action: the share of each kind in
    FEATURE_KINDS among its actions (what it does), smoothed toward the population's mix by
    SMOOTHING pseudo-actions. An agent seen twice (a react and a repost) is not a pure type: raw
    shares put such agents half-way between kinds, and k-means then splits the low-activity
    periphery into look-alike clusters instead of finding the small active roles; the smoothing
    leaves an agent of many actions as it is."""
    counts = ", ".join(f"count(*) FILTER (WHERE kind = {KIND_CODES[k]})::DOUBLE" for k in FEATURE_KINDS)
    rows = con.execute(f"""
        SELECT agent, {counts} FROM actions
        WHERE run_id = ? AND kind IN {tuple(KIND_CODES[k] for k in FEATURE_KINDS)} GROUP BY agent ORDER BY agent""",
                       [run_id]).fetchnumpy()
    cols = list(rows)
    agents = np.asarray(rows[cols[0]], dtype=np.int64)
    if agents.size == 0:
        return np.empty((0, len(FEATURE_KINDS))), agents
    kinds = np.column_stack([np.asarray(rows[c], dtype=np.float64) for c in cols[1:]])
    mix = kinds.sum(0) / kinds.sum()
    return (kinds + SMOOTHING * mix) / (kinds.sum(1) + SMOOTHING)[:, None], agents


def kmeans(x: np.ndarray, k: int, rng: np.random.Generator, *, iters: int = 60, restarts: int = 3
           ) -> tuple[np.ndarray, np.ndarray, float]:
    """Lloyd's k-means with k-means++ starts; the best of `restarts` by inertia: (labels, centres, inertia)."""
    best: tuple[np.ndarray, np.ndarray, float] | None = None
    for _ in range(restarts):
        centres = x[[int(rng.integers(len(x)))]]
        for _ in range(1, k):
            d = ((x[:, None, :] - centres[None]) ** 2).sum(-1).min(1)
            centres = np.vstack([centres, x[rng.choice(len(x), p=d / d.sum()) if d.sum() > 0 else 0]])
        labels = np.zeros(len(x), np.int64)
        for _ in range(iters):
            d = ((x[:, None, :] - centres[None]) ** 2).sum(-1)
            new = d.argmin(1)
            if _ and np.array_equal(new, labels):
                break
            labels = new
            for j in range(k):
                members = x[labels == j]
                if len(members):
                    centres[j] = members.mean(0)
        inertia = float(((x - centres[labels]) ** 2).sum())
        if best is None or inertia < best[2]:
            best = (labels, centres.copy(), inertia)
    assert best is not None
    return best


def silhouette(x: np.ndarray, labels: np.ndarray, rng: np.random.Generator, sample: int = 2000) -> float | None:
    """Mean silhouette over a random sample of points (exact when n <= sample)."""
    if len(set(labels.tolist())) < 2:
        return None
    idx = rng.choice(len(x), min(sample, len(x)), replace=False)
    xs, ls = x[idx], labels[idx]
    d = np.sqrt(((xs[:, None, :] - xs[None]) ** 2).sum(-1))
    present = np.unique(ls)
    mean_to = np.stack([d[:, ls == c].sum(1) / np.maximum(1, (ls == c).sum() - (ls == c)) for c in present], 1)
    own = np.searchsorted(present, ls)
    a = mean_to[np.arange(len(ls)), own]
    mean_to[np.arange(len(ls)), own] = np.inf
    b = mean_to.min(1)
    s = np.where((ls[:, None] == present[None]).sum(1) > 0, (b - a) / np.maximum(a, b), 0.0)
    singletons = np.array([(ls == c).sum() == 1 for c in ls])
    s[singletons] = 0.0
    return float(np.nan_to_num(s).mean())


def cluster_roles(feats: np.ndarray, k: int | None, rng: np.random.Generator) -> dict[str, Any]:
    """Structural roles: k-means on the features (agent_features); clusters by size, largest = periphery."""
    if len(feats) < 3:
        return {"k": 0, "silhouette": None, "periphery_share": None, "clusters": []}
    z = feats  # shares share one scale; z-scoring would blow up rare kinds and split the periphery
    fit_on = z if len(z) <= 20_000 else z[rng.choice(len(z), 20_000, replace=False)]
    if k is None:
        scored = []
        for kk in range(2, 9):
            labels, _, _ = kmeans(fit_on, kk, rng)
            scored.append((silhouette(fit_on, labels, rng) or -1.0, kk))
        k = max(scored)[1]
    k = min(k, len(fit_on))
    _, centres, _ = kmeans(fit_on, k, rng)
    labels = ((z[:, None, :] - centres[None]) ** 2).sum(-1).argmin(1)
    sizes = np.bincount(labels, minlength=k)
    order = np.argsort(-sizes)
    names = [f"share_{k}" for k in FEATURE_KINDS]
    clusters = []
    for rank, j in enumerate(order):
        mean = feats[labels == j].mean(0) if sizes[j] else np.zeros(len(names))
        top = FEATURE_KINDS[int(np.argmax(mean[:len(FEATURE_KINDS)]))]
        clusters.append({"cluster": rank, "label": "periphery" if rank == 0 else f"{top}-heavy",
                         "agents": int(sizes[j]), "share": float(sizes[j] / len(feats)),
                         "mean_features": {n: round(float(v), 4) for n, v in zip(names, mean)}})
    return {"k": int(k), "silhouette": silhouette(z, labels, rng), "periphery_share": clusters[0]["share"],
            "agents": int(len(feats)), "clusters": clusters}


# ---- cascades ----------------------------------------------------------------------------------

def cascade_sizes(con: duckdb.DuckDBPyConnection, run_id: str) -> np.ndarray:
    """1 + reposts of every post of the run."""
    got = con.execute("""
        SELECT 1 + coalesce(r.n, 0) FROM (SELECT item FROM actions WHERE run_id = ? AND kind = 0) p
        LEFT JOIN (SELECT item, count(*) AS n FROM actions WHERE run_id = ? AND kind = 4 GROUP BY item) r
        USING (item)""", [run_id, run_id]).fetchnumpy()
    return np.asarray(next(iter(got.values())), dtype=np.int64) if got else np.empty(0, np.int64)


def _tail_stats(values: np.ndarray, counts: np.ndarray, xmin: int) -> tuple[int, float]:
    keep = values >= xmin
    return int(counts[keep].sum()), float((counts[keep] * np.log(values[keep])).sum())


def mle_alpha(values: np.ndarray, counts: np.ndarray, xmin: int) -> float:
    """Discrete power-law exponent by maximum likelihood: maximise -n log zeta(a, xmin) - a sum log x."""
    from scipy.optimize import minimize_scalar
    from scipy.special import zeta

    n, slog = _tail_stats(values, counts, xmin)
    res = minimize_scalar(lambda a: n * math.log(zeta(a, xmin)) + a * slog, bounds=(1.0001, 8.0),
                          method="bounded", options={"xatol": 1e-6})
    return float(res.x)


def ks_distance(values: np.ndarray, counts: np.ndarray, xmin: int, alpha: float) -> float:
    """max |empirical CDF - fitted CDF| over the tail x >= xmin."""
    from scipy.special import zeta

    keep = values >= xmin
    v, c = values[keep], counts[keep]
    emp = np.cumsum(c) / c.sum()
    model = 1.0 - zeta(alpha, v + 1.0) / zeta(alpha, xmin)
    return float(np.abs(emp - model).max())


def fit_power_law(sizes: np.ndarray, *, xmin: int | None = None, bootstrap: int = 50,
                  rng: np.random.Generator | None = None, max_xmin: int = 20, min_tail: int = 50) -> PowerLawFit:
    """Discrete power-law fit (module docstring). xmin None: the candidate (<= max_xmin, tail of
    at least min_tail) with the smallest KS distance. The bootstrap p is the share of samples from
    the fitted law (same tail size, xmin held) whose refitted KS distance is at least the data's."""
    rng = rng or np.random.default_rng(0)
    values, counts = np.unique(np.asarray(sizes, dtype=np.int64), return_counts=True)
    if xmin is None:
        candidates = [int(v) for v in values if v <= max_xmin and counts[values >= v].sum() >= min_tail] or [1]
        scored = []
        for x in candidates:
            a = mle_alpha(values, counts, x)
            scored.append((ks_distance(values, counts, x, a), x, a))
        ks, xmin, alpha = min(scored)
    else:
        alpha = mle_alpha(values, counts, xmin)
        ks = ks_distance(values, counts, xmin, alpha)
    n_tail = int(counts[values >= xmin].sum())
    hits = 0
    for _ in range(bootstrap):
        sv, sc = sample_power_law_counts(rng, n_tail, alpha, xmin)
        a = mle_alpha(sv, sc, xmin)
        hits += ks_distance(sv, sc, xmin, a) >= ks
    return PowerLawFit(alpha, int(xmin), n_tail, ks, hits / bootstrap if bootstrap else None, bootstrap)


def sample_power_law_counts(rng: np.random.Generator, n: int, alpha: float, xmin: int,
                            table: int = 20_000) -> tuple[np.ndarray, np.ndarray]:
    """n draws of the discrete power law from xmin as (values, counts): a multinomial over a table
    of the first `table` values, the rest by the continuous approximation of the tail."""
    from scipy.special import zeta

    x = np.arange(xmin, xmin + table, dtype=np.float64)
    pmf = x ** -alpha / zeta(alpha, xmin)
    beyond = max(0.0, 1.0 - pmf.sum())
    c = rng.multinomial(n, np.append(pmf, beyond) / (pmf.sum() + beyond))
    values, counts = x[c[:-1] > 0].astype(np.int64), c[:-1][c[:-1] > 0]
    if c[-1]:
        u = rng.random(c[-1])
        tail = np.floor((xmin + table - 0.5) * (1 - u) ** (-1 / (alpha - 1)) + 0.5).astype(np.int64)
        tv, tc = np.unique(tail, return_counts=True)
        values, counts = np.concatenate([values, tv]), np.concatenate([counts, tc])
        order = np.argsort(values, kind="stable")
        values, counts = values[order], counts[order]
    return values, counts


# ---- adoption and tasks ------------------------------------------------------------------------

def adoption_by_exposures(con: duckdb.DuckDBPyConnection, run_id: str, max_k: int = 10,
                          max_followers: int = 20_000, max_pairs: int = 5_000_000) -> list[dict[str, Any]]:
    """P(repost | k exposures), k = followees who shared the post no later than the agent reposted
    it (module docstring); k above max_k pooled as max_k. Over at most `max_followers` following
    agents (every stride-th agent id) and, if their exposures would still exceed `max_pairs`, over
    every item_stride-th post: the (agent, post) pairs grow as followers x their followees' shares,
    tens of GB at 10M actions; a sample of agents and posts keeps each rate unbiased."""
    followers = fetch_one(con, "SELECT count(DISTINCT agent) FROM actions WHERE run_id = ? AND kind = 3", [run_id])[0]
    stride = max(1, math.ceil(followers / max_followers))
    pairs = fetch_one(con, f"""
        WITH f AS (SELECT target AS followee, count(DISTINCT agent) AS nf FROM actions
                   WHERE run_id = $1 AND kind = 3 AND target IS NOT NULL AND agent % {stride} = 0 GROUP BY 1),
             s AS (SELECT agent, count(*) AS ns FROM actions WHERE run_id = $1 AND kind IN (0, 4) GROUP BY 1)
        SELECT coalesce(sum(nf * ns), 0) FROM f JOIN s ON s.agent = f.followee""", [run_id])[0]
    item_stride = max(1, math.ceil(pairs / max_pairs))
    rows = con.execute(f"""
        WITH f AS (SELECT DISTINCT agent AS follower, target AS followee FROM actions
                   WHERE run_id = $1 AND kind = 3 AND target IS NOT NULL AND target <> agent
                     AND agent % {stride} = 0),
             sh AS (SELECT agent, item, min(tick) AS tick FROM actions
                    WHERE run_id = $1 AND kind IN (0, 4) AND item IS NOT NULL AND item % {item_stride} = 0
                    GROUP BY ALL),
             ad AS (SELECT agent, item, min(tick) AS tick FROM actions WHERE run_id = $1 AND kind = 4 GROUP BY ALL),
             au AS (SELECT item, agent FROM actions WHERE run_id = $1 AND kind = 0),
             ex AS (SELECT f.follower AS agent, sh.item, count(*) AS k, any_value(ad.tick IS NOT NULL) AS adopted
                    FROM f JOIN sh ON sh.agent = f.followee
                    LEFT JOIN ad ON ad.agent = f.follower AND ad.item = sh.item
                    WHERE ad.tick IS NULL OR sh.tick <= ad.tick
                    GROUP BY ALL)
        SELECT least(k, {max_k}) AS k, count(*) AS pairs, count(*) FILTER (WHERE adopted) AS adopters
        FROM ex ANTI JOIN au ON au.item = ex.item AND au.agent = ex.agent
        GROUP BY 1 ORDER BY 1""", [run_id]).fetchall()
    out = []
    for k, pairs, adopters in rows:
        lo, hi = wilson(adopters, pairs)
        out.append({"exposures": int(k), "pairs": int(pairs), "adopters": int(adopters),
                    "p": adopters / pairs if pairs else None, "low": lo, "high": hi, "agent_stride": stride,
                    "item_stride": item_stride})
    return out


def tasks(con: duckdb.DuckDBPyConnection, run_id: str) -> dict[str, Any]:
    posted, resolved, solo_ok, solo_fail = fetch_one(con, """
        SELECT count(*) FILTER (WHERE kind = 5), count(DISTINCT item) FILTER (WHERE kind = 7),
               count(*) FILTER (WHERE kind = 8), count(*) FILTER (WHERE kind = 9)
        FROM actions WHERE run_id = ? AND kind IN (5, 7, 8, 9)""", [run_id])
    group = rate(resolved, posted)
    solo_n = solo_ok + solo_fail
    solo = rate(solo_ok, solo_n) if solo_n else None
    diff = (group["p"] - solo["p"]) if solo and group["p"] is not None and solo["p"] is not None else None
    return {"posted": posted, "group": group, "solo": solo, "difference": diff}


def rate(successes: int, n: int) -> dict[str, Any]:
    lo, hi = wilson(successes, n) if n else (None, None)
    return {"successes": successes, "n": n, "p": successes / n if n else None, "low": lo, "high": hi}


def render_text(report: PopulationReport) -> str:
    """The report as plain text lines (the CLI's table-free view)."""
    r = report
    lines = [f"run {r.run_id}: {r.actions:,} actions by {r.agents_active:,} active agents",
             "  by kind: " + ", ".join(f"{k} {v:,}" for k, v in sorted(r.by_kind.items(), key=lambda kv: -kv[1]))]
    n = r.network
    lines.append(f"  network: {n['nodes']:,} nodes, {n['edges']:,} edges, reciprocity "
                 f"{_f(n['reciprocity'])}, max in-degree {n['max_in_degree']}")
    ro = r.roles
    lines.append(f"  roles: k={ro['k']}, silhouette {_f(ro['silhouette'])}, periphery share {_f(ro['periphery_share'])}")
    for c in ro["clusters"]:
        lines.append(f"    {c['label']:<20} {c['agents']:>8,} agents  {c['share']:.3f}")
    c = r.cascades
    fit = c["fit"]
    lines.append(f"  cascades: {c['posts']:,} posts, {c['reposts']:,} reposts, largest {c['largest']:,}")
    if fit:
        lines.append(f"    power law: alpha {fit['alpha']:.3f} (xmin {fit['xmin']}, tail {fit['n_tail']:,}), KS "
                     f"{fit['ks']:.4f}, bootstrap p {_f(fit['p_value'])} ({fit['bootstrap']} samples)")
    lines.append("  adoption by exposures: " + ", ".join(
        f"k={a['exposures']}: {_f(a['p'])} (n={a['pairs']:,})" for a in r.adoption) if r.adoption else
        "  adoption by exposures: no exposures (no follows or no shares)")
    t = r.tasks
    solo = t["solo"]
    lines.append(f"  tasks: {t['posted']:,} posted; group resolved {_rate(t['group'])}; single agent "
                 f"{_rate(solo) if solo else 'not measured in this mode'}"
                 + (f"; difference {t['difference']:+.3f}" if t["difference"] is not None else ""))
    lines += [f"  note: {x}" for x in r.notes]
    return "\n".join(lines)


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _rate(r: dict[str, Any]) -> str:
    if r["p"] is None:
        return "n/a (n=0)"
    return f"{r['p']:.3f} [{r['low']:.3f}, {r['high']:.3f}] ({r['successes']}/{r['n']})"


def plot_reports(reports: list[PopulationReport], path: Any) -> None:
    """Cascade size distribution (log-log, with the fitted law), role shares and P(adopt | k)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    for r in reports:
        dist = np.array(r.cascades["distribution"], dtype=np.float64).reshape(-1, 2)
        if len(dist):
            ccdf = np.cumsum(dist[::-1, 1])[::-1] / dist[:, 1].sum()
            axes[0].loglog(dist[:, 0], ccdf, ".", label=r.run_id)
            fit = r.cascades["fit"]
            if fit:
                axes[0].loglog(dist[:, 0], ccdf[0] * (dist[:, 0] / dist[0, 0]) ** (1 - fit["alpha"]), "-",
                               label=f"alpha {fit['alpha']:.2f}")
        shares = [c["share"] for c in r.roles["clusters"]]
        axes[1].bar([c["label"] + f"\n{i}" for i, c in enumerate(r.roles["clusters"])], shares)
        if r.adoption:
            axes[2].errorbar([a["exposures"] for a in r.adoption], [a["p"] for a in r.adoption],
                             yerr=[[a["p"] - a["low"] for a in r.adoption], [a["high"] - a["p"] for a in r.adoption]],
                             fmt="o-", label=r.run_id)
    axes[0].set(title="cascade sizes (CCDF)", xlabel="size", ylabel="P(S >= s)")
    axes[0].legend(fontsize=7)
    axes[1].set(title="structural roles", ylabel="share of active agents")
    axes[1].tick_params(axis="x", labelsize=6)
    axes[2].set(title="adoption by exposures", xlabel="exposures k", ylabel="P(repost | k)")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)

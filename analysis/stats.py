"""Statistics for comparing series of runs: cosine similarity, Mann-Whitney U, rank-biserial r,
a permutation test on the difference of means, and Holm's step-down correction.

Conventions (docs/analysis.md has the full text):

- `mann_whitney(x, y)`: scipy's two-sided test (`method="auto"`: exact for small samples without
  ties, otherwise the normal approximation with continuity correction). `U` is U1, the statistic
  of the **first** group: the number of pairs (x_i, y_j) with x_i > y_j, ties counting 1/2.
- rank-biserial `r = (U1 - U2) / (n1 n2) = 2 U1 / (n1 n2) - 1 = 1 - 2 U2 / (n1 n2)`, i.e.
  P(x > y) - P(x < y). **r > 0 means the first group's values tend to be larger.**
- `mann_whitney_z(x, y)`: the test's standard normal statistic, `Z = (U1 - n1 n2 / 2) / sigma`,
  sigma with the tie correction and no continuity correction; `r_z = Z / sqrt(n1 + n2)` is the
  effect size the WarRoom study reports (Rosenthal's r), signed like the rank-biserial r.
- `permutation_test(x, y)`: two-sided, statistic mean(x) - mean(y); the labels are reshuffled
  `n_perm` times (numpy, seeded) and `p = (1 + #{|d*| >= |d_obs|}) / (n_perm + 1)` (the +1 counts
  the observed labelling, so p is never 0 and the test is exact in level).
- `holm(pvalues)`: Holm-Bonferroni step-down adjusted p-values; NaN p-values are not part of the
  family (m counts the others) and stay NaN.
- `compare_series(values, family)`: the tests above for each `SeriesPair` of a family, Holm over
  the family. Which pairs make a study's family is the study's business: a suite declares it
  (`analysis: {comparisons: ...}`, sociolab/config.py) and analysis reads it from the store.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from typing import Iterable, Mapping, Sequence

import numpy as np
import numpy.typing as npt

from .families import SeriesPair

NAN = float("nan")

Values = Sequence[float] | npt.NDArray[np.float64]


# ---- similarity -----------------------------------------------------------------------------

def cosine(a: Values, b: Values) -> float:
    """Cosine similarity of two vectors; NaN when either is all zeros."""
    u, v = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    nu, nv = float(np.linalg.norm(u)), float(np.linalg.norm(v))
    if nu == 0 or nv == 0:
        return NAN
    return float(np.dot(u, v) / (nu * nv))


def mean_pairwise_cosine(vectors: Sequence[Values]) -> float:
    """Mean cosine similarity over all pairs of the non-zero vectors (all-zero ones are skipped,
    as in the study); NaN when fewer than two are left."""
    usable = [np.asarray(v, dtype=float) for v in vectors if np.linalg.norm(np.asarray(v, dtype=float)) > 0]
    if len(usable) < 2:
        return NAN
    sims = [cosine(usable[i], usable[j]) for i in range(len(usable)) for j in range(i + 1, len(usable))]
    return float(np.mean(sims))


# ---- descriptive ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Summary:
    """n, mean, median, sample sd (ddof=1), quartiles (linear interpolation, numpy's default)."""
    n: int
    mean: float
    median: float
    sd: float
    q1: float
    q3: float
    iqr: float
    min: float
    max: float


def describe(values: Iterable[float]) -> Summary:
    """Summary of the finite values (NaN/None left out)."""
    v = clean(values)
    if v.size == 0:
        return Summary(0, NAN, NAN, NAN, NAN, NAN, NAN, NAN, NAN)
    q1, med, q3 = (float(x) for x in np.percentile(v, [25, 50, 75]))
    sd = float(np.std(v, ddof=1)) if v.size > 1 else NAN
    return Summary(int(v.size), float(v.mean()), med, sd, q1, q3, q3 - q1, float(v.min()), float(v.max()))


def clean(values: Iterable[float | None]) -> npt.NDArray[np.float64]:
    """The finite values as a float array (None and NaN dropped)."""
    arr = np.asarray([np.nan if x is None else x for x in values], dtype=float)
    return arr[np.isfinite(arr)]


# ---- tests ----------------------------------------------------------------------------------

def mann_whitney(x: Values, y: Values) -> tuple[float, float]:
    """(U1, two-sided p) of scipy.stats.mannwhitneyu(x, y); U1 is the first group's statistic.
    NaN, NaN when a group is empty."""
    from scipy.stats import mannwhitneyu

    a, b = clean(x), clean(y)
    if a.size == 0 or b.size == 0:
        return NAN, NAN
    res = mannwhitneyu(a, b, alternative="two-sided")
    return float(res.statistic), float(res.pvalue)


def mann_whitney_z(x: Values, y: Values, u1: float | None = None) -> float:
    """Z of the Mann-Whitney test for U1 (normal approximation, tie-corrected variance, no
    continuity correction): the statistic behind the study's effect size r = Z / sqrt(N). NaN
    when a group is empty or every value is tied (no variance). `u1`: U1 of the same x and y if
    the caller has it (`mann_whitney(x, y)[0]`), so only the tie term and sigma are computed."""
    return _z_from_u(clean(x), clean(y), u1)


def _z_from_u(a: npt.NDArray[np.float64], b: npt.NDArray[np.float64], u1: float | None) -> float:
    """`mann_whitney_z` of cleaned samples a and b; U1 ranked here when not given."""
    n1, n2 = a.size, b.size
    if n1 == 0 or n2 == 0:
        return NAN
    pooled = np.concatenate([a, b])
    if u1 is None:
        from scipy.stats import rankdata

        u1 = float(rankdata(pooled)[:n1].sum()) - n1 * (n1 + 1) / 2
    n = n1 + n2
    _, ties = np.unique(pooled, return_counts=True)
    tie_term = float((ties ** 3 - ties).sum()) / (n * (n - 1)) if n > 1 else 0.0
    variance = n1 * n2 / 12.0 * ((n + 1) - tie_term)
    return (u1 - n1 * n2 / 2.0) / math.sqrt(variance) if variance > 0 else NAN


def r_from_z(z: float, n1: int, n2: int) -> float:
    """r = Z / sqrt(N), N = n1 + n2: the effect size the WarRoom study reports."""
    return z / math.sqrt(n1 + n2) if n1 + n2 > 0 and not math.isnan(z) else NAN


def rank_biserial(u1: float, n1: int, n2: int) -> float:
    """r = (U1 - U2) / (n1 n2) = 2 U1 / (n1 n2) - 1: positive when the first group tends larger."""
    if n1 == 0 or n2 == 0 or math.isnan(u1):
        return NAN
    return 2.0 * u1 / (n1 * n2) - 1.0


# Keys per chunk of permutations: 4 MB of float32 keys (and as much for their partition and mask).
CHUNK_CELLS = 1 << 20


def permutation_test(x: Values, y: Values, *, n_perm: int = 10000,
                     seed: int | Sequence[int] = 0, chunk: int = 2000) -> tuple[float, float]:
    """(mean(x) - mean(y), two-sided Monte Carlo permutation p with the +1 correction).

    Each permutation draws a uniformly random split of the pooled values into groups of the
    original sizes (numpy `default_rng(seed)`); p = (1 + #{|d*| >= |d_obs|}) / (n_perm + 1).
    Differences equal to |d_obs| up to rounding (1e-10 of the values' spread) count as at least
    as extreme. NaN p when a group is empty or n_perm < 1.
    """
    a, b = clean(x), clean(y)
    if a.size == 0 or b.size == 0 or n_perm < 1:
        return (float(a.mean() - b.mean()) if a.size and b.size else NAN), NAN
    observed = float(a.mean() - b.mean())
    hits = permutation_hits([(a, b)], n_perm=n_perm, rng=np.random.default_rng(seed), chunk=chunk)[0]
    return observed, (hits + 1) / (n_perm + 1)


def permutation_hits(pairs: Sequence[tuple[np.ndarray, np.ndarray]], *, n_perm: int,
                     rng: np.random.Generator, chunk: int = 2000, chunk_cells: int = CHUNK_CELLS) -> list[int]:
    """For pairs of samples that all have the same sizes (n1, n2): how many of n_perm random splits
    give |mean difference| >= the observed one, each pair judged on the same random splits.

    How (so that 10,000 permutations of thousands of runs take a fraction of a second): with a
    pair's pooled values centred (sum 0), d = S (1/n1 + 1/n2) where S is the first group's sum, so
    only S is needed. A split is the n1 smallest of n float32 random keys (one partition per
    row); the split sums of a chunk, for every pair at once, are one float32 matrix product.
    Rows where a sum is within its worst-case float32 rounding bound of the observed |S|, or
    whose keys tie at the cut, are recomputed in float64 (error ~1e-13 of the spread, far below
    the 1e-10 tie tolerance), so every hit is decided as a float64 loop would decide it.
    A chunk is at most `chunk` splits and `chunk_cells` keys (issue 12: 2,000 splits of 5,000 runs
    held ~130 MB of key, mask and product matrices at once); the keys are one stream drawn a chunk
    at a time, so the splits, and the hits, do not depend on the chunk size.
    """
    n1, n2 = pairs[0][0].size, pairs[0][1].size
    n = n1 + n2
    chunk = max(1, min(chunk, chunk_cells // n))
    if any(x.size != n1 or y.size != n2 for x, y in pairs):
        raise ValueError("permutation_hits needs pairs of equal sizes")
    centred = np.stack([np.concatenate([x, y]) - np.concatenate([x, y]).mean() for x, y in pairs], axis=1)
    spread = np.abs(centred).sum(axis=0)                               # per pair
    s_obs = np.abs(centred[:n1].sum(axis=0))
    tol = 1e-10 * spread
    band = (n1 + 1) * 1.2e-7 * spread * 4 + tol                         # >= float32 rounding of a split sum
    design = np.concatenate([centred.astype(np.float32), np.ones((n, 1), dtype=np.float32)], axis=1)
    hits = np.zeros(len(pairs), dtype=np.int64)
    done = 0
    while done < n_perm:
        k = min(chunk, n_perm - done)
        keys = rng.random((k, n), dtype=np.float32)
        cut = np.partition(keys, n1 - 1, axis=1)[:, n1 - 1:n1]
        mask = keys <= cut
        out = mask.astype(np.float32) @ design
        sums = np.abs(out[:, :-1].astype(np.float64))                   # k x pairs
        tied = out[:, -1] != n1
        redo = (np.abs(sums - s_obs) <= band) | tied[:, None]
        rows = np.flatnonzero(redo.any(axis=1))
        if rows.size:
            for i in np.flatnonzero(tied):                             # rare: take exactly n1
                mask[i] = False
                mask[i, np.argpartition(keys[i], n1 - 1)[:n1]] = True
            sums[rows] = np.abs(mask[rows].astype(np.float64) @ centred)
        hits += np.count_nonzero(sums >= s_obs - tol, axis=0)
        done += k
    return [int(h) if sp > 0 else n_perm for h, sp in zip(hits, spread)]   # all values equal: all tie


def exact_permutation_p(x: Values, y: Values) -> float:
    """The exact two-sided permutation p of mean(x) - mean(y), enumerating every split (small n)."""
    from itertools import combinations

    a, b = clean(x), clean(y)
    pooled = np.concatenate([a, b])
    n, n1 = pooled.size, a.size
    observed = abs(a.mean() - b.mean())
    threshold = observed - 1e-9 * max(1e-300, float(np.abs(pooled - pooled.mean()).mean()))
    total = pooled.sum()
    hits = count = 0
    for idx in combinations(range(n), n1):
        s1 = pooled[list(idx)].sum()
        d = s1 / n1 - (total - s1) / (n - n1)
        hits += abs(d) >= threshold
        count += 1
    return hits / count


def holm(pvalues: Sequence[float]) -> list[float]:
    """Holm-Bonferroni adjusted p-values, in the input order.

    Sort the m defined p-values ascending, p_(1) <= ... <= p_(m); adjusted
    p~_(i) = min(1, max_{j <= i} (m - j + 1) p_(j)). NaN inputs stay NaN and do not count in m.
    """
    p = [NAN if v is None else float(v) for v in pvalues]
    defined = sorted((v, i) for i, v in enumerate(p) if not math.isnan(v))
    m = len(defined)
    out = [NAN] * len(p)
    running = 0.0
    for rank, (v, i) in enumerate(defined):
        running = max(running, min(1.0, (m - rank) * v))
        out[i] = running
    return out


# ---- series comparisons ---------------------------------------------------------------------

@dataclass(frozen=True)
class Comparison:
    """One series-vs-series comparison of per-run values (e.g. mean pairwise cosine similarity)."""
    a: str                       # first series (r > 0: a's values tend to be larger)
    b: str
    label: str
    n_a: int
    n_b: int
    mean_a: float
    mean_b: float
    median_a: float
    median_b: float
    diff_mean: float             # mean_a - mean_b
    u: float                     # Mann-Whitney U1 (of a)
    p: float                     # Mann-Whitney two-sided p
    r: float                     # rank-biserial (U1 - U2) / (n_a n_b)
    p_perm: float                # permutation test on diff_mean, two-sided, +1 corrected
    p_holm: float = NAN          # Holm over the family, applied to p (Mann-Whitney)
    p_perm_holm: float = NAN     # Holm over the family, applied to p_perm
    z: float = NAN               # Mann-Whitney Z of U1 (normal approximation, tie-corrected)
    r_z: float = NAN             # Z / sqrt(n_a + n_b): the study's effect size, signed like r


def compare_series(values_by_series: Mapping[str, Values],
                   comparisons: Sequence[SeriesPair | tuple[str, str]], n_perm: int = 10000,
                   seed: int = 0) -> list[Comparison]:
    """Compare the per-run values of pairs of series; Holm across the given family.

    A pair naming an absent series, or with an empty side, gets NaN statistics and stays out of the
    Holm family. Permutations: the pairs with the same sizes (n_a, n_b) are judged on the same
    random splits, drawn from `default_rng([seed, n_a, n_b])`; so a pair's p_perm equals
    `permutation_test(x, y, seed=[seed, n_a, n_b])` and does not depend on the other pairs (and
    a family of balanced series costs one set of draws, not one per pair).
    """
    pairs = [c if isinstance(c, SeriesPair) else SeriesPair(*c) for c in comparisons]
    data = [(p, clean(values_by_series.get(p.a, [])), clean(values_by_series.get(p.b, []))) for p in pairs]
    p_perm = permutation_pvalues([(x, y) for _, x, y in data], n_perm=n_perm, seed=seed)
    rows: list[Comparison] = []
    for (pair, x, y), pp in zip(data, p_perm):
        u, p = mann_whitney(x, y)
        z = _z_from_u(x, y, u)          # x, y already clean; U1 from scipy, not ranked again
        sa, sb = describe(x), describe(y)
        rows.append(Comparison(pair.a, pair.b, pair.title(), int(x.size), int(y.size), sa.mean, sb.mean,
                               sa.median, sb.median, sa.mean - sb.mean, u, p, rank_biserial(u, x.size, y.size), pp,
                               z=z, r_z=r_from_z(z, x.size, y.size)))
    adj, adj_perm = holm([c.p for c in rows]), holm([c.p_perm for c in rows])
    return [replace(c, p_holm=h, p_perm_holm=hp) for c, h, hp in zip(rows, adj, adj_perm)]


def permutation_pvalues(samples: Sequence[tuple[npt.NDArray[np.float64], npt.NDArray[np.float64]]], *,
                        n_perm: int, seed: int) -> list[float]:
    """The permutation p of each pair of samples; pairs of the same sizes share their random splits
    (`default_rng([seed, n_a, n_b])`). NaN for a pair with an empty side, or when n_perm < 1."""
    out = [NAN] * len(samples)
    shapes: dict[tuple[int, int], list[int]] = {}
    for j, (x, y) in enumerate(samples):
        if x.size and y.size and n_perm >= 1:
            shapes.setdefault((x.size, y.size), []).append(j)
    for (n1, n2), idx in shapes.items():
        hits = permutation_hits([samples[j] for j in idx], n_perm=n_perm, rng=np.random.default_rng([seed, n1, n2]))
        for j, h in zip(idx, hits):
            out[j] = (h + 1) / (n_perm + 1)
    return out

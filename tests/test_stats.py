"""Statistics equal independent computations: cosine, Mann-Whitney U and p, rank-biserial r,
Holm, and the permutation test against exact enumeration."""

from __future__ import annotations

import math
from itertools import combinations

import numpy as np
import pytest
from scipy.stats import mannwhitneyu

from sociolab.analysis.families import SeriesPair, present_pairs
from sociolab.analysis.stats import (compare_series, cosine, describe, exact_permutation_p, holm,
                                     mann_whitney, mean_pairwise_cosine, permutation_hits, permutation_test,
                                     rank_biserial)

X = [0.61, 0.72, 0.55, 0.80, 0.72, 0.66, 0.59]
Y = [0.90, 0.72, 0.88, 0.93, 0.85, 0.79]


def test_cosine_and_mean_pairwise_cosine_match_hand_computation():
    a, b, c, zero = [1, 0, 2], [2, 1, 0], [0.5, 0.5, 0.5], [0, 0, 0]
    assert cosine(a, b) == pytest.approx(2 / (math.sqrt(5) * math.sqrt(5)))
    assert cosine(a, a) == pytest.approx(1.0)
    assert math.isnan(cosine(a, zero))
    pairs = [cosine(a, b), cosine(a, c), cosine(b, c)]
    assert mean_pairwise_cosine([a, zero, b, c]) == pytest.approx(sum(pairs) / 3)   # the zero one skipped
    assert math.isnan(mean_pairwise_cosine([a, zero]))                            # < 2 usable
    # numpy reference: normalised rows, upper triangle of the Gram matrix
    m = np.array([a, b, c], dtype=float)
    u = m / np.linalg.norm(m, axis=1, keepdims=True)
    g = u @ u.T
    assert mean_pairwise_cosine([a, b, c]) == pytest.approx(g[np.triu_indices(3, 1)].mean())


def test_mann_whitney_u_p_and_r_match_hand_computation():
    u, p = mann_whitney(X, Y)
    greater = sum(x > y for x in X for y in Y)
    ties = sum(x == y for x in X for y in Y)
    less = sum(x < y for x in X for y in Y)
    assert u == greater + 0.5 * ties                      # U of the first group
    # ties present -> scipy uses the normal approximation with tie and continuity corrections
    n1, n2 = len(X), len(Y)
    values = X + Y
    counts = [values.count(v) for v in set(values)]
    n = n1 + n2
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - sum(t ** 3 - t for t in counts) / (n * (n - 1))))
    z = (abs(u - n1 * n2 / 2) - 0.5) / sigma
    assert p == pytest.approx(math.erfc(z / math.sqrt(2)), rel=1e-9)
    assert p == pytest.approx(mannwhitneyu(X, Y, alternative="two-sided").pvalue)
    r = rank_biserial(u, n1, n2)
    assert r == pytest.approx((greater - less) / (n1 * n2))
    assert r < 0                                           # X's values are smaller: r negative
    assert r == pytest.approx(1 - 2 * (n1 * n2 - u) / (n1 * n2))   # 1 - 2 U2 / (n1 n2)
    u_rev, p_rev = mann_whitney(Y, X)
    assert rank_biserial(u_rev, n2, n1) == pytest.approx(-r) and p_rev == pytest.approx(p)


def test_mann_whitney_exact_small_sample_without_ties():
    x, y = [1.1, 2.3, 3.7], [4.2, 5.9, 6.4, 7.5]
    u, p = mann_whitney(x, y)
    assert u == 0
    # exact: U = 0 is the most extreme of C(7, 3) = 35 equally likely rank sets, two-sided
    assert p == pytest.approx(2 / 35)


def test_holm_matches_an_explicit_hand_reference():
    p = [0.01, 0.04, 0.03, 0.005]
    # sorted: 0.005*4 = 0.02; 0.01*3 = 0.03; 0.03*2 = 0.06; 0.04*1 = 0.04 -> max(0.06, 0.04) = 0.06
    assert holm(p) == pytest.approx([0.03, 0.06, 0.06, 0.02])
    # capped at 1, NaN stays NaN and is not in the family (m = 2 here)
    out = holm([0.6, float("nan"), 0.2])
    assert out[0] == pytest.approx(min(1, max(0.2 * 2, 0.6 * 1)))
    assert math.isnan(out[1]) and out[2] == pytest.approx(0.4)
    assert holm([0.7, 0.8]) == pytest.approx([1.0, 1.0])
    assert holm([]) == []


def test_permutation_p_is_close_to_the_exact_one():
    x, y = [1.0, 2.0, 3.0, 4.0, 5.5], [3.0, 4.0, 5.0, 6.0, 7.0, 8.0]
    exact = exact_permutation_p(x, y)
    # the exact value by a second, independent enumeration
    pooled, obs, hits, total = x + y, abs(np.mean(x) - np.mean(y)), 0, 0
    for idx in combinations(range(11), 5):
        a = [pooled[i] for i in idx]
        b = [pooled[i] for i in range(11) if i not in idx]
        hits += abs(np.mean(a) - np.mean(b)) >= obs - 1e-12
        total += 1
    assert total == 462 and exact == pytest.approx(hits / total)
    diff, p = permutation_test(x, y, n_perm=20000, seed=3)
    assert diff == pytest.approx(np.mean(x) - np.mean(y))
    assert abs(p - exact) < 0.01                          # 3 sd of the Monte Carlo error ~ 0.005
    # integer data: many exact ties with the observed difference
    xi, yi = [0, 1, 1, 2, 2, 2], [1, 2, 2, 3, 3, 1, 2]
    _, pi = permutation_test(xi, yi, n_perm=20000, seed=4)
    assert abs(pi - exact_permutation_p(xi, yi)) < 0.015


def test_permutation_p_has_the_plus_one_correction_and_is_seeded():
    x, y = list(range(20)), list(range(100, 120))
    _, p = permutation_test(x, y, n_perm=999, seed=0)
    assert p == pytest.approx(1 / 1000)                   # nothing as extreme, yet never 0
    assert permutation_test(X, Y, seed=5) == permutation_test(X, Y, seed=5)
    assert permutation_test([1, 1, 1], [1, 1])[1] == 1.0  # all equal: every split ties


def test_fast_permutation_hits_equal_a_float64_loop_over_the_same_splits():
    rng = np.random.default_rng(11)
    x = rng.integers(0, 4, 150).astype(float) / 7     # many near-ties with the observed sum
    y = rng.integers(0, 4, 120).astype(float) / 7
    n_perm, n1, n = 3000, x.size, x.size + y.size
    hits = permutation_hits([(x, y)], n_perm=n_perm, rng=np.random.default_rng(9), chunk=1000)[0]
    ref_rng = np.random.default_rng(9)
    pooled = np.concatenate([x, y])
    centred = pooled - pooled.mean()
    s_obs, tol = abs(centred[:n1].sum()), 1e-10 * np.abs(centred).sum()
    ref = 0
    for _ in range(3):
        keys = ref_rng.random((1000, n), dtype=np.float32)
        for row in keys:
            idx = np.argpartition(row, n1 - 1)[:n1]
            ref += abs(sum(float(centred[i]) for i in sorted(idx))) >= s_obs - tol
    assert hits == ref


FAMILY = (SeriesPair("A", "B", "heterogeneous vs homogeneous"), SeriesPair("A", "C"), SeriesPair("A", "K1"),
          SeriesPair("A", "G", "French vs English"))


def test_compare_series_over_a_family_holm_and_reproducibility():
    rng = np.random.default_rng(0)
    values = {"A": list(rng.normal(0.7, 0.05, 15)), "B": list(rng.normal(0.9, 0.05, 15)),
              "C": list(rng.normal(0.7, 0.05, 15)), "G": list(rng.normal(0.72, 0.05, 14)), "Z": [0.1, 0.2]}
    family = present_pairs(FAMILY, values)
    assert family == [FAMILY[0], FAMILY[1], FAMILY[3]]          # K1 has no values: left out
    rows = compare_series(values, family, n_perm=2000, seed=1)
    assert [(c.a, c.b, c.label) for c in rows] == [("A", "B", "heterogeneous vs homogeneous"),
                                                   ("A", "C", "A vs C"), ("A", "G", "French vs English")]
    ab = rows[0]
    assert ab.p < 1e-4 and ab.r < -0.9 and ab.diff_mean < 0
    assert [c.p_holm for c in rows] == pytest.approx(holm([c.p for c in rows]))
    assert [c.p_perm_holm for c in rows] == pytest.approx(holm([c.p_perm for c in rows]))
    for c in rows:   # a pair's p_perm = permutation_test with seed [seed, n_a, n_b], whatever the family
        assert c.p_perm == permutation_test(values[c.a], values[c.b], n_perm=2000, seed=[1, c.n_a, c.n_b])[1]
        u, p = mannwhitneyu(values[c.a], values[c.b], alternative="two-sided")
        assert c.u == u and c.p == pytest.approx(p)
    alone = compare_series(values, [("A", "G")], n_perm=2000, seed=1)[0]
    assert alone.p_perm == rows[2].p_perm and alone.p_holm == pytest.approx(alone.p)
    missing = compare_series(values, [("A", "B"), ("A", "Q")], n_perm=100)
    assert missing[1].n_b == 0 and math.isnan(missing[1].p) and math.isnan(missing[1].p_holm)
    assert missing[0].p_holm == pytest.approx(missing[0].p)   # the NaN pair is not in the family


def test_series_pairs_round_trip_through_their_stored_form():
    for pair in FAMILY:
        assert SeriesPair.from_json(pair.to_json()) == pair
    assert SeriesPair("A", "C").to_json() == {"a": "A", "b": "C"}       # no label: none stored
    assert SeriesPair("A", "C").title() == "A vs C"


def test_describe_uses_sample_sd_and_linear_quartiles():
    s = describe([1.0, 2.0, 4.0, float("nan"), 8.0, None])
    assert s.n == 4 and s.mean == pytest.approx(3.75) and s.median == pytest.approx(3.0)
    assert s.sd == pytest.approx(np.std([1, 2, 4, 8], ddof=1))
    assert (s.q1, s.q3) == pytest.approx((1.75, 5.0)) and s.iqr == pytest.approx(3.25)
    assert describe([]).n == 0 and math.isnan(describe([]).mean)

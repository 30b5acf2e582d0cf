"""Agreement in DuckDB SQL: equal to scikit-learn's kappa and the krippendorff package, edge cases
defined the same way, the study's human validation file reproduced, and bad CSVs refused clearly."""

from __future__ import annotations

import json
import math
import warnings
from pathlib import Path

import duckdb
import krippendorff
import numpy as np
import pytest
from rich.console import Console
from sklearn.metrics import cohen_kappa_score

from sociolab.analysis.agreement import (AgreementRow, agreement_report, agreement_stats, agreement_table,
                                alpha_table, bootstrap_kappa_ci, mean_kappa, prevalence_table,
                                render_agreement, to_json)
from sociolab.analysis.ratings import load_wide_csv, ratings_view_sql
from sociolab.base.errors import UserError
from sociolab.orchestrator.rows import CodeRow, HumanCodeRow
from sociolab.orchestrator.store import Batch, Store

FIXTURE = Path(__file__).parent / "fixtures" / "coding" / "human_coding_results.csv"
STUDY_FLAGS = ["phatic", "meta", "lead", "arch", "agree", "comp"]


# ---- helpers --------------------------------------------------------------------------------

def ratings_table(con, rows, name="r"):
    """Long ratings table from (item, rater, flag, value) tuples; value None = NULL."""
    con.execute(f"CREATE OR REPLACE TABLE {name} (item_id VARCHAR, rater VARCHAR, flag VARCHAR, value BOOLEAN)")
    if rows:
        cols = list(zip(*rows))
        con.execute(f"INSERT INTO {name} SELECT unnest(?), unnest(?), unnest(?), unnest(?)",
                    [list(c) for c in cols])
    return name


def matrix_rows(data, flag="f", raters=None):
    """Rows from a (raters x items) array of 1/0/nan."""
    raters = raters or [f"r{i}" for i in range(len(data))]
    return [(f"i{j}", raters[i], flag, None if np.isnan(v) else bool(v))
            for i, row in enumerate(data) for j, v in enumerate(row)]


def sk_kappa(a, b):
    """scikit-learn's kappa, with its 'undefined' warning silenced (NaN is the expected answer)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return cohen_kappa_score(a, b)


def same(x, y, tol=1e-9):
    return (math.isnan(x) and math.isnan(y)) or abs(x - y) <= tol


def random_ratings(rng, n_raters, n_items, prevalence, missing=0.0, noise=0.15):
    """Raters who see a shared truth and flip it with some noise; some cells missing."""
    truth = rng.random(n_items) < prevalence
    data = np.array([np.where(rng.random(n_items) < noise, ~truth, truth) for _ in range(n_raters)], float)
    data[rng.random(data.shape) < missing] = np.nan
    return data


# ---- kappa against scikit-learn -------------------------------------------------------------

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("prevalence", [0.03, 0.2, 0.5, 0.85])
def test_kappa_and_counts_equal_sklearn_on_random_data(seed, prevalence):
    rng = np.random.default_rng(seed)
    con = duckdb.connect()
    flags = {"f1": random_ratings(rng, 3, int(rng.integers(20, 400)), prevalence, missing=0.1),
             "f2": random_ratings(rng, 3, int(rng.integers(20, 400)), prevalence, noise=0.4)}
    rows = [r for flag, data in flags.items() for r in matrix_rows(data, flag)]
    rows = agreement_table(con, ratings_table(con, rows), ci=False)
    assert len(rows) == 6
    for row in rows:
        data = flags[row.flag]
        a, b = data[int(row.rater_a[1])], data[int(row.rater_b[1])]
        both = ~np.isnan(a) & ~np.isnan(b)
        a, b = a[both].astype(bool), b[both].astype(bool)
        assert row.n == both.sum()
        assert (row.tt, row.tf, row.ft, row.ff) == (int(np.sum(a & b)), int(np.sum(a & ~b)),
                                                    int(np.sum(~a & b)), int(np.sum(~a & ~b)))
        assert same(row.kappa, sk_kappa(a, b))
        assert row.percent_agreement == pytest.approx(np.mean(a == b), abs=1e-12)
        assert row.prevalence_a == pytest.approx(a.mean(), abs=1e-12)
        assert row.prevalence_b == pytest.approx(b.mean(), abs=1e-12)
        assert row.prevalence_pooled == pytest.approx((a.mean() + b.mean()) / 2, abs=1e-12)


def test_many_raters_and_flags_pack_into_chunks_correctly():
    """10 raters x 15 flags do not fit one 64-bit word: flags are packed 6 per word."""
    rng = np.random.default_rng(7)
    con = duckdb.connect()
    data = {f"f{k:02d}": random_ratings(rng, 10, 60, rng.uniform(0.05, 0.6), missing=0.2) for k in range(15)}
    rows = [r for flag, d in data.items() for r in matrix_rows(d, flag)]
    table = ratings_table(con, rows)
    result = agreement_table(con, table, ci=False)
    assert {r.flag for r in result} == set(data)
    assert len(result) == 15 * 45
    for row in result:
        a, b = data[row.flag][int(row.rater_a[1:])], data[row.flag][int(row.rater_b[1:])]
        both = ~np.isnan(a) & ~np.isnan(b)
        assert same(row.kappa, sk_kappa(a[both], b[both]))
    for row in alpha_table(con, table):
        assert same(row.alpha, krippendorff.alpha(data[row.flag], level_of_measurement="nominal"))


# ---- alpha against the krippendorff package -------------------------------------------------

@pytest.mark.parametrize("seed", range(8))
def test_alpha_equals_krippendorff_package_with_missing_values(seed):
    rng = np.random.default_rng(100 + seed)
    con = duckdb.connect()
    n_raters = int(rng.integers(2, 7))
    data = random_ratings(rng, n_raters, int(rng.integers(10, 300)), rng.uniform(0.02, 0.9),
                          missing=rng.uniform(0, 0.5), noise=rng.uniform(0.02, 0.45))
    data[:, 0] = [1.0] + [np.nan] * (n_raters - 1)          # a unit with a single value: unpairable
    (row,) = alpha_table(con, ratings_table(con, matrix_rows(data)))
    expected = krippendorff.alpha(reliability_data=data, level_of_measurement="nominal")
    assert abs(row.alpha - expected) <= 1e-9
    pairable = data[:, (~np.isnan(data)).sum(axis=0) >= 2]
    assert row.units == pairable.shape[1]
    assert row.values == int((~np.isnan(pairable)).sum())
    assert row.prevalence == pytest.approx(np.nanmean(pairable), abs=1e-12)


# ---- edge cases -----------------------------------------------------------------------------

EDGE_CASES = {
    # name: (rater a, rater b, expected kappa)
    "both all False (pe = 1)": ([0] * 8, [0] * 8, math.nan),
    "both all True (pe = 1)": ([1] * 8, [1] * 8, math.nan),
    "a all True, b all False": ([1] * 8, [0] * 8, 0.0),
    "one rater constant, other varies": ([1] * 8, [1, 1, 1, 0, 1, 0, 1, 1], 0.0),
    "perfect agreement": ([1, 0, 1, 0, 0, 1], [1, 0, 1, 0, 0, 1], 1.0),
    "perfect disagreement, balanced": ([1, 0, 1, 0], [0, 1, 0, 1], -1.0),
    "perfect disagreement, unbalanced": ([1, 0, 0], [0, 1, 1], -0.8),
    "a single item, agreeing": ([1], [1], math.nan),
    "a single item, disagreeing": ([1], [0], 0.0),
}


@pytest.mark.parametrize("name", list(EDGE_CASES))
def test_degenerate_kappa_is_defined_like_sklearn(name):
    a, b, expected = EDGE_CASES[name]
    con = duckdb.connect()
    (row,) = agreement_table(con, ratings_table(con, matrix_rows(np.array([a, b], float))),
                             n_boot=200)
    assert same(row.kappa, expected)
    assert same(row.kappa, sk_kappa(a, b))
    if math.isnan(expected):
        assert math.isnan(row.kappa_ci_low) and math.isnan(row.kappa_ci_high)
    else:
        assert row.kappa_ci_low <= row.kappa + 1e-12 and row.kappa - 1e-12 <= row.kappa_ci_high


def test_degenerate_alpha_is_nan_where_the_package_refuses_or_divides_by_zero():
    con = duckdb.connect()
    constant = np.array([[1, 1, 1, 1], [1, 1, 1, np.nan]], float)
    (row,) = alpha_table(con, ratings_table(con, matrix_rows(constant)))
    assert math.isnan(row.alpha) and row.units == 3
    with pytest.raises(ValueError):          # the package: "more than one value in the domain"
        krippendorff.alpha(constant, level_of_measurement="nominal")
    with np.errstate(divide="ignore", invalid="ignore"):   # with the domain given: 0/0
        assert math.isnan(krippendorff.alpha(constant, value_domain=[0, 1], level_of_measurement="nominal"))
    unpairable = np.array([[1, np.nan, 0], [np.nan, 0, np.nan]], float)
    (row,) = alpha_table(con, ratings_table(con, matrix_rows(unpairable)))
    assert math.isnan(row.alpha) and row.units == 0
    perfect = np.array([[1, 0, 1, 0], [1, 0, 1, 0], [1, 0, np.nan, 0]], float)
    (row,) = alpha_table(con, ratings_table(con, matrix_rows(perfect)))
    assert row.alpha == 1.0 == krippendorff.alpha(perfect, level_of_measurement="nominal")


def test_hand_checked_two_by_two():
    # tt=20, tf=5, ft=10, ff=15, n=50
    # po = (20 + 15) / 50 = 0.70; pa = (20 + 5) / 50 = 0.50; pb = (20 + 10) / 50 = 0.60
    # pe = 0.50 * 0.60 + 0.50 * 0.40 = 0.30 + 0.20 = 0.50
    # kappa = (0.70 - 0.50) / (1 - 0.50) = 0.40
    # alpha: n = 100 values, n_T = 25 + 30 = 55, n_F = 45; the 15 disagreeing units each add
    # t*f/(m-1) = 1, so o_TF = 15 and alpha = 1 - (100 - 1) * 15 / (55 * 45) = 1 - 1485/2475 = 0.40
    cells = [(1, 1)] * 20 + [(1, 0)] * 5 + [(0, 1)] * 10 + [(0, 0)] * 15
    data = np.array(cells, float).T
    con = duckdb.connect()
    table = ratings_table(con, matrix_rows(data, raters=["a", "b"]))
    (row,) = agreement_table(con, table, ci=False)
    assert (row.n, row.tt, row.tf, row.ft, row.ff) == (50, 20, 5, 10, 15)
    assert row.percent_agreement == pytest.approx(0.70)
    assert (row.prevalence_a, row.prevalence_b, row.prevalence_pooled) == pytest.approx((0.5, 0.6, 0.55))
    assert row.kappa == pytest.approx(0.40, abs=1e-12)
    (alpha,) = alpha_table(con, table)
    assert alpha.alpha == pytest.approx(0.40, abs=1e-12)


def test_null_values_are_left_out_and_counted():
    con = duckdb.connect()
    rows = [("1", "a", "f", True), ("1", "b", "f", True), ("2", "a", "f", False), ("2", "b", "f", None),
            ("3", "a", "f", False), ("3", "b", "f", False), ("4", "a", "f", None), ("4", "b", "f", True)]
    report = agreement_report(con, ratings_table(con, rows), ci=False)
    (pair,) = report["pairs"]
    assert (pair.n, pair.tt, pair.ff) == (2, 1, 1) and pair.kappa == 1.0
    prevalence = {p.rater: p for p in report["prevalence"]}
    assert (prevalence["a"].n, prevalence["a"].n_true, prevalence["a"].excluded) == (3, 1, 1)
    assert (prevalence["b"].n, prevalence["b"].n_true, prevalence["b"].excluded) == (3, 2, 1)


def test_duplicate_ratings_are_refused():
    con = duckdb.connect()
    rows = [("1", "a", "f", True), ("1", "a", "f", False), ("1", "b", "f", True)]
    with pytest.raises(UserError, match="rated twice.*item 1 / rater a / flag f"):
        agreement_table(con, ratings_table(con, rows))


def test_source_without_rating_columns_is_a_user_error():
    con = duckdb.connect()
    with pytest.raises(UserError, match="lacks column"):
        agreement_table(con, "SELECT 1 AS item_id, 'a' AS rater")
    with pytest.raises(UserError, match="cannot read the ratings"):
        agreement_table(con, "no_such_table")
    rows = [(str(i), f"r{k}", "f", True) for i in range(2) for k in range(65)]
    with pytest.raises(UserError, match="at most 64"):
        agreement_table(con, ratings_table(con, rows))


def test_raters_and_flags_select_and_order_the_pairs():
    rng = np.random.default_rng(3)
    con = duckdb.connect()
    rows = [r for flag in ("x", "y") for r in matrix_rows(random_ratings(rng, 3, 50, 0.4), flag, ["h", "g", "s"])]
    table = ratings_table(con, rows)
    result = agreement_table(con, table, raters=["s", "h"], flags=["y"], ci=False)
    assert [(r.flag, r.rater_a, r.rater_b) for r in result] == [("y", "s", "h")]
    default = agreement_table(con, table, ci=False)
    assert [(r.rater_a, r.rater_b) for r in default[:3]] == [("g", "h"), ("g", "s"), ("h", "s")]


def test_mean_kappa_skips_undefined_flags():
    row = lambda flag, k: AgreementRow(flag, "a", "b", 10, 0, 0, 0, 0, 1, 0, 0, 0, k)   # noqa: E731
    (m,) = mean_kappa([row("x", 0.5), row("y", math.nan), row("z", 0.9)])
    assert (m.mean_kappa, m.flags, m.flags_undefined) == (pytest.approx(0.7), 2, 1)
    (m,) = mean_kappa([row("x", math.nan)])
    assert math.isnan(m.mean_kappa) and m.flags == 0


# ---- bootstrap ------------------------------------------------------------------------------

def test_multinomial_bootstrap_matches_resampling_items():
    """Drawing 4 cell counts is the same distribution as resampling the items themselves."""
    cells = np.array([0] * 40 + [1] * 12 + [2] * 8 + [3] * 140)     # tt, tf, ft, ff codes
    a, b = np.isin(cells, [0, 1]), np.isin(cells, [0, 2])
    rng = np.random.default_rng(1)
    brute = []
    for _ in range(4000):
        idx = rng.integers(0, len(cells), len(cells))
        brute.append(sk_kappa(a[idx], b[idx]))
    low, high = bootstrap_kappa_ci(40, 12, 8, 140, n_boot=4000, rng=np.random.default_rng(2))
    assert low == pytest.approx(np.percentile(brute, 2.5), abs=0.02)
    assert high == pytest.approx(np.percentile(brute, 97.5), abs=0.02)


def test_bootstrap_is_seeded_and_independent_of_other_rows():
    rng = np.random.default_rng(5)
    con = duckdb.connect()
    rows = [r for flag in ("x", "y") for r in matrix_rows(random_ratings(rng, 2, 80, 0.3), flag)]
    table = ratings_table(con, rows)
    both = agreement_table(con, table, n_boot=300, seed=11)
    again = agreement_table(con, table, n_boot=300, seed=11)
    only_y = agreement_table(con, table, flags=["y"], n_boot=300, seed=11)
    other = agreement_table(con, table, n_boot=300, seed=12)
    assert both == again
    assert only_y[0] == both[1]
    assert (other[0].kappa_ci_low, other[0].kappa_ci_high) != (both[0].kappa_ci_low, both[0].kappa_ci_high)
    for row in both:
        assert row.kappa_ci_low < row.kappa < row.kappa_ci_high


# ---- the study's file -----------------------------------------------------------------------

# What tests/fixtures/coding/human_coding_results.csv gives (kappa per flag and rater pair).
STUDY_KAPPA = {
    ("phatic", "human", "gemini"): 0.9307770999886333,
    ("phatic", "human", "sonnet"): 0.9276922468041319,
    ("phatic", "gemini", "sonnet"): 0.9506842659324641,
    ("meta", "human", "gemini"): 0.5587182621297401,
    ("meta", "human", "sonnet"): 0.4821857199828441,
    ("meta", "gemini", "sonnet"): 0.7723514666432121,
    ("lead", "human", "gemini"): 0.8005857634025213,
    ("lead", "human", "sonnet"): 0.6500105864916367,
    ("lead", "gemini", "sonnet"): 0.6714016715668462,
    ("arch", "human", "gemini"): 0.7924077069998214,
    ("arch", "human", "sonnet"): 0.6862918399548863,
    ("arch", "gemini", "sonnet"): 0.7076599538254051,
    ("agree", "human", "gemini"): 0.6931672846125028,
    ("agree", "human", "sonnet"): 0.8451098265895953,
    ("agree", "gemini", "sonnet"): 0.6503871518783517,
    ("comp", "human", "gemini"): 0.6258885476086002,
    ("comp", "human", "sonnet"): 0.6619170984455959,
    ("comp", "gemini", "sonnet"): 0.9325058184639256,
}
STUDY_ALPHA = {"phatic": 0.9362263162490178, "meta": 0.5764938811683291, "lead": 0.7107536477622596,
               "arch": 0.7274330999294361, "agree": 0.7355516935868602, "comp": 0.7270319907743561}


def study_columns():
    """The fixture read with the csv module, independently of DuckDB: column -> list of bools."""
    import csv
    with open(FIXTURE, newline="", encoding="utf-8") as handle:
        rows = list(csv.DictReader(handle))
    return {col: np.array([r[col].strip().lower() in ("true", "1") for r in rows]) for col in rows[0]}


def test_study_csv_loads_as_is_and_gives_the_published_agreement():
    con = duckdb.connect()
    table = load_wide_csv(con, FIXTURE, ["human", "gemini", "sonnet"])
    assert con.execute(f"SELECT count(*), count(DISTINCT item_id) FROM {table}").fetchone() == (609 * 18, 609)
    assert {r[0] for r in con.execute(f"SELECT DISTINCT flag FROM {table}").fetchall()} == set(STUDY_FLAGS)
    report = agreement_report(con, table, raters=["human", "gemini", "sonnet"], flags=STUDY_FLAGS, n_boot=500)
    cols = study_columns()
    assert len(report["pairs"]) == 18
    for row in report["pairs"]:
        assert row.n == 609
        expected = sk_kappa(cols[f"{row.rater_a}_{row.flag}"], cols[f"{row.rater_b}_{row.flag}"])
        assert abs(row.kappa - expected) <= 1e-9
        assert abs(row.kappa - STUDY_KAPPA[(row.flag, row.rater_a, row.rater_b)]) <= 1e-9
        assert row.kappa_ci_low < row.kappa < row.kappa_ci_high
    means = {(m.rater_a, m.rater_b): m.mean_kappa for m in report["mean_kappa"]}
    # The study reports a mean kappa of about 0.78 between its two judges.
    assert round(means[("gemini", "sonnet")], 2) == 0.78
    assert means[("human", "gemini")] == pytest.approx(0.7336, abs=1e-4)
    assert means[("human", "sonnet")] == pytest.approx(0.7089, abs=1e-4)
    for row in report["alpha"]:
        data = np.array([cols[f"{r}_{row.flag}"] for r in ("human", "gemini", "sonnet")], float)
        assert abs(row.alpha - krippendorff.alpha(data, level_of_measurement="nominal")) <= 1e-9
        assert abs(row.alpha - STUDY_ALPHA[row.flag]) <= 1e-9


def test_study_csv_defaults_find_raters_and_shared_flags():
    """Raters are inferred from the column prefixes; human_comp_level (human only) is ignored."""
    con = duckdb.connect()
    table = load_wide_csv(con, FIXTURE)
    raters = [r[0] for r in con.execute(f"SELECT DISTINCT rater FROM {table} ORDER BY rater").fetchall()]
    flags = {r[0] for r in con.execute(f"SELECT DISTINCT flag FROM {table}").fetchall()}
    assert raters == ["gemini", "human", "sonnet"] and flags == set(STUDY_FLAGS)
    human_meta = con.execute(f"SELECT count_if(value) FROM {table} WHERE rater = 'human' AND flag = 'meta'").fetchone()
    assert human_meta == (int(study_columns()["human_meta"].sum()),) == (188,)


def test_report_json_and_rendering():
    con = duckdb.connect()
    table = load_wide_csv(con, FIXTURE, ["gemini", "sonnet"], ["meta", "comp"])
    report = agreement_report(con, table, raters=["gemini", "sonnet"], n_boot=100)
    plain = json.loads(json.dumps(to_json(report), allow_nan=False))
    assert [p["flag"] for p in plain["pairs"]] == ["comp", "meta"]        # flags default to sorted
    assert plain["pairs"][1]["kappa"] == pytest.approx(0.77235, abs=1e-5)
    assert plain["mean_kappa"][0]["flags"] == 2
    assert to_json({"k": math.nan}) == {"k": None}
    console = Console(record=True, width=200)
    render_agreement(report, console)
    text = console.export_text()
    assert "0.772" in text and "gemini" in text and "Krippendorff" in text
    console = Console(record=True, width=200)
    render_agreement(report["pairs"], console)
    assert "Mean kappa" in console.export_text()


# ---- bad CSVs -------------------------------------------------------------------------------

def write(tmp_path, text, name="codes.csv"):
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_bad_value_names_file_line_and_column(tmp_path):
    path = write(tmp_path, "id,a_x,b_x\nm1,true,0\nm2,,1\nm3,maybe,1\n")
    con = duckdb.connect()
    with pytest.raises(UserError) as info:
        load_wide_csv(con, path, ["a", "b"])
    err = info.value
    assert err.file == str(path) and err.line == 4
    assert "a_x" in err.message and "'maybe'" in err.message and "true/false" in err.message
    assert str(err).startswith(f"{path}:4: ")


def test_line_numbers_count_quoted_newlines(tmp_path):
    path = write(tmp_path, 'id,note,a_x,b_x\nm1,"two\nlines",1,0\nm2,plain,yes,Nope\n')
    with pytest.raises(UserError) as info:
        load_wide_csv(duckdb.connect(), path, ["a", "b"])
    assert info.value.line == 4 and "b_x" in info.value.message


def test_values_are_read_case_insensitively_and_empty_is_false(tmp_path):
    path = write(tmp_path, "a_x,b_x\nTRUE,Yes\n,no\n 1 ,False\n0,\n")
    con = duckdb.connect()
    table = load_wide_csv(con, path, ["a", "b"])
    got = con.execute(f"SELECT item_id, rater, value FROM {table} ORDER BY item_id, rater").fetchall()
    assert got == [("1", "a", True), ("1", "b", True), ("2", "a", False), ("2", "b", False),
                   ("3", "a", True), ("3", "b", False), ("4", "a", False), ("4", "b", False)]


@pytest.mark.parametrize("text, raters, flags, match, line", [
    ("id,a_x,b_x\nm1,1,0\n", ["a", "c"], None, "no columns for rater 'c'", 1),
    ("id,a_x,b_y\nm1,1,0\n", ["a", "b"], None, "no flag has a column for every rater", 1),
    ("id,a_x,b_x\nm1,1,0\n", ["a", "b"], ["x", "y"], "missing column 'a_y'", 1),
    ("id,a_x,b_x\n", ["a", "b"], None, "no data rows", 2),
    ("id,a_x,b_x\nm1,1,0\nm1,0,0\n", ["a", "b"], None, "'m1' appears twice", 3),
    ("id,a_x,b_x\nm1,1,0\n,0,0\n", ["a", "b"], None, "every row needs an item id", 3),
    ("id,series,round\nm1,A,3\n", None, None, "no rating columns", 1),
])
def test_bad_csvs_are_user_errors(tmp_path, text, raters, flags, match, line):
    path = write(tmp_path, text)
    with pytest.raises(UserError, match=match) as info:
        load_wide_csv(duckdb.connect(), path, raters, flags)
    assert info.value.file == str(path) and info.value.line == line


def test_missing_file_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="no such CSV file") as info:
        load_wide_csv(duckdb.connect(), tmp_path / "nope.csv", ["a", "b"])
    assert info.value.file == str(tmp_path / "nope.csv")


def test_loader_leaves_no_scratch_tables(tmp_path):
    con = duckdb.connect()
    with pytest.raises(UserError):
        load_wide_csv(con, write(tmp_path, "a_x,b_x\nmaybe,1\n"), ["a", "b"])
    table = load_wide_csv(con, FIXTURE, ["gemini", "sonnet"])
    agreement_report(con, table, ci=False)
    names = [r[0] for r in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
    assert names == [table]


# ---- the store ------------------------------------------------------------------------------

def test_store_codes_and_human_codes_in_one_shape(tmp_path):
    store = Store.open(tmp_path / "s.duckdb")
    batch = Batch()
    judge_values = {"gem": [1, 1, 0, 0, 1, 0], "son": [1, 0, 0, 0, 1, None]}
    for judge, values in judge_values.items():
        for i, v in enumerate(values):
            status = "coded" if v is not None else "uncodable"
            value = None if v is None else bool(v)
            batch.add(CodeRow(message_id=f"run#{i}", run_id="run", judge=judge, codebook_id="cb@1", flag="meta",
                              value=value, status=status))
    batch.add(CodeRow(message_id="run#0", run_id="run", judge="gem", codebook_id="cb@2", flag="meta", value=False,
                      status="coded"))
    for i, v in enumerate([1, 1, 0, 1]):
        batch.add(HumanCodeRow(message_id=f"run#{i}", coder="alice", flag="meta", value=bool(v), source="x.csv"))
    store.write_now(batch)
    con = store.con

    with pytest.raises(UserError, match="rated twice"):          # two codebooks, none chosen
        agreement_table(con, ratings_view_sql(None, True, None), ci=False)

    source = ratings_view_sql(None, True, "cb@1", include_uncodable=True)
    report = agreement_report(con, source, ci=False)
    assert report["raters"] == ["gem", "human:alice", "son"]
    pairs = {(p.rater_a, p.rater_b): p for p in report["pairs"]}
    assert pairs[("gem", "son")].n == 5 and pairs[("gem", "son")].tf == 1
    assert pairs[("gem", "human:alice")].n == 4
    excluded = {p.rater: p.excluded for p in report["prevalence"]}
    assert excluded == {"gem": 0, "human:alice": 0, "son": 1}

    judges_only = ratings_view_sql(["gem", "son"], False, "cb@1")
    assert {r[0] for r in con.execute(f"SELECT DISTINCT rater FROM ({judges_only})").fetchall()} == {"gem", "son"}
    assert con.execute(f"SELECT count(*) FROM ({judges_only}) WHERE value IS NULL").fetchone() == (0,)
    assert con.execute(f"SELECT count(*) FROM ({ratings_view_sql([], True, None)})").fetchone() == (4,)
    stats = agreement_stats(con, judges_only)
    assert [p.n for p in prevalence_table(con, stats)] == [6, 5]
    stats.drop(con)
    store.close()

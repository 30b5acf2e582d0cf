"""End to end on the sim with planted effects: run -> judge (two sim judges) -> analyze.

Five sim models with known, different propensities; series `het` puts the five together, `hom`
five clones of one; `crash` loses one agent from round 2; `iso` runs each model alone. The
analysis must recover the planted ordering of each flag across models, find the heterogeneous
groups less similar than the clones (Mann-Whitney p < 0.01), see compensation only after the
crash, and find agreement/xref present in groups and absent alone.
"""

from __future__ import annotations

import asyncio
import json
import math
from io import StringIO

import pytest
from rich.console import Console

from sociolab.analysis.analyze import analyze, parse_comparison, render
from sociolab.judges.runner import JudgeConfig, judge_store
from sociolab.orchestrator.client import ClientSettings
from sociolab.config import load_plan
from sociolab.base.errors import UserError
from sociolab.runner import execute
from sociolab.orchestrator.store import Store

from tests.conftest import write_yaml

PLANTED = {   # model -> propensities (sim behaviour -> flag: greet -> phatic)
    "warm": {"greet": 0.9, "meta": 0.05, "lead": 0.1, "arch": 0.15, "agree": 0.85},
    "boss": {"greet": 0.1, "meta": 0.1, "lead": 0.9, "arch": 0.3, "agree": 0.1},
    "tech": {"greet": 0.05, "meta": 0.05, "lead": 0.15, "arch": 0.95, "agree": 0.2},
    "muse": {"greet": 0.3, "meta": 0.9, "lead": 0.05, "arch": 0.1, "agree": 0.3},
    "mid": {"greet": 0.5, "meta": 0.45, "lead": 0.5, "arch": 0.55, "agree": 0.5},
}
FLAG_OF = {"greet": "phatic", "meta": "meta", "lead": "lead", "arch": "arch", "agree": "agree"}

SCENARIO = """
name: planted
kind: discussion
seed: 11
agents:
  personas:
{personas}
params:
  seed_message: "@all We need a food delivery app for a city of 500k people, budget 50k, 3 months."
  rounds: 6
sim:
  models:
{models}
series:
  het: {{runs: 12}}
  hom: {{runs: 12, agents: {{clones: {{of: mid, n: 5}}}}}}
  crash: {{runs: 3, agents: {{crashes: [{{agent: tech, from_round: 2, mode: permanent}}]}}}}
  iso: {{runs: 3, params: {{scaffolding: isolation}}}}
"""


@pytest.fixture(scope="module")
def judged(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("planted")
    personas = "\n".join(f"    - {{key: {m}, model: sim/{m}}}" for m in PLANTED)
    models = "\n".join(f"    {m}: {{{', '.join(f'{k}: {v}' for k, v in p.items())}, notice_crash: 0.9}}"
                       for m, p in PLANTED.items())
    path = write_yaml(tmp, SCENARIO.format(personas=personas, models=models), "planted.yaml")
    db = tmp / "planted.duckdb"
    store = Store.open(db)
    try:
        asyncio.run(execute(load_plan(path), store))
        config = JudgeConfig(judges=["sim/judge-a", "sim/judge-b"], client=ClientSettings())
        asyncio.run(judge_store(store, config))
    finally:
        store.close()
    ro = Store.open_read_only(db)
    result = analyze(ro.con, comparisons=["het:hom"], n_perm=2000)
    yield ro, result
    ro.close()


def test_profiles_recover_the_planted_ordering_per_flag(judged):
    _, result = judged
    pooled = {m["model_label"]: m for m in result["profiles"]["by_model"]}
    het = {m["model_label"]: m for m in result["profiles"]["by_series_model"] if m["series"] == "het"}
    labels = {m: next(k for k in het if m in k.lower()) for m in PLANTED}    # label is the persona's label
    for behaviour, flag in FLAG_OF.items():
        planted = sorted(PLANTED, key=lambda m: PLANTED[m][behaviour])
        measured = [het[labels[m]]["shares"][flag] for m in planted]
        top, bottom = planted[-1], planted[0]
        assert measured[-1] == max(measured), (flag, planted, measured)          # the top model is top
        assert measured[0] <= sorted(measured)[1], (flag, planted, measured)     # the bottom one is at the bottom
        assert het[labels[top]]["shares"][flag] > het[labels[bottom]]["shares"][flag] + 0.4
    assert set(pooled) >= set(het)


def test_heterogeneous_groups_are_less_similar_than_clones(judged):
    _, result = judged
    series = {s["series"]: s for s in result["series"]}
    het, hom = series["het"], series["hom"]
    assert het["runs"] == het["runs_coded"] == het["similarity"]["n"] == 12
    assert het["similarity"]["mean"] < hom["similarity"]["mean"] - 0.1
    assert len(het["per_run"]) == 12 and all(r["usable"] == 5 for r in het["per_run"])
    assert hom["condition"]["clones"] is True and het["condition"]["clones"] is False
    (cmp,) = result["comparisons"]
    assert (cmp["a"], cmp["b"], cmp["n_a"], cmp["n_b"]) == ("het", "hom", 12, 12)
    assert cmp["p"] < 0.01 and cmp["p_perm"] < 0.01 and cmp["p_holm"] == pytest.approx(cmp["p"])
    assert cmp["r"] < -0.8 and cmp["u"] < 20       # r < 0: the first series (het) is less similar


def test_compensation_only_after_the_crash_and_isolation_baseline(judged):
    _, result = judged
    comp = result["compensation"]
    assert comp["runs_with_crash"] == 3 and comp["isolation_runs_excluded"] == 0
    assert comp["comp_messages"] > 0 and 0 < comp["share"] <= 1
    assert sum(comp["levels"].values()) == comp["comp_messages"]
    assert {r["series"] for r in comp["by_series"]} == {"crash"}
    assert all(r["crashed"] == ["tech"] for r in comp["runs"])
    assert "sim/tech" not in {m["model_label"] for m in comp["by_model"]}   # the crashed one has only errors
    assert all(r["round_after"] >= 0 for r in comp["by_round"])
    iso = result["isolation"]
    assert iso["isolation_series"] == ["iso"] and iso["isolation"]["messages"] == 15
    flags = {f["flag"]: f for f in iso["flags"]}
    assert flags["agree"]["group_rate"] > 0.2 and flags["agree"]["isolation_rate"] == 0
    assert flags["xref"]["group_only"]


def test_result_is_complete_json_and_renders(judged):
    ro, result = judged
    assert list(result) == ["settings", "data", "series", "profiles", "comparisons", "compensation",
                            "isolation", "agreement", "rounds", "sensitivity"]
    text = json.dumps(result, allow_nan=False)                  # NaN became None
    assert json.loads(text) == result
    s = result["settings"]
    assert s["rule"] == "intersection" and s["trait_flags"] == ["phatic", "meta", "lead", "arch", "agree"]
    assert s["separate_flags"] == ["comp", "xref"] and s["comparisons"] == [["het", "hom"]]
    assert result["data"]["judges"] == ["sim/judge-a", "sim/judge-b"]
    (pair,) = result["agreement"]["pairs"]
    assert 0.5 < pair["mean_kappa"] <= 1 and pair["flags"] + pair["flags_undefined"] == 7
    assert [x["series"] for x in result["series"]] == ["crash", "het", "hom", "iso"]
    # the suite declares no comparison family and none is given -> no comparisons, and a note why
    default = analyze(ro.con, n_perm=10)
    assert default["comparisons"] == [] and default["settings"]["comparisons_source"] == "default"
    assert default["settings"]["comparisons_note"] == "no comparison family is declared with these runs"
    shown_default = StringIO()
    render(default, Console(file=shown_default, width=200))
    assert "No series comparisons (no comparison family is declared with these runs; use --compare A:B)." \
        in shown_default.getvalue()
    union = analyze(ro.con, rule="union", comparisons=[("het", "hom")], n_perm=10)
    assert union["series"][1]["similarity"]["mean"] >= result["series"][1]["similarity"]["mean"] - 0.2
    out = StringIO()
    render(result, Console(file=out, width=200))
    shown = out.getvalue()
    for piece in ("Within-run similarity", "het", "Series comparisons", "Profiles per model",
                  "Isolation baseline", "Compensation", "Judge agreement"):
        assert piece in shown


def test_bad_requests_are_user_errors(judged):
    ro, _ = judged
    with pytest.raises(UserError, match="no series Q.*crash, het, hom, iso"):
        analyze(ro.con, comparisons=["het:Q"], n_perm=10)
    with pytest.raises(UserError, match="SERIES:SERIES"):
        parse_comparison("het-hom")
    with pytest.raises(UserError, match="unknown adjudication rule"):
        analyze(ro.con, rule="any")
    with pytest.raises(UserError, match="no codes for codebook"):
        analyze(ro.con, codebook_id="nope@1")
    assert math.isfinite(analyze(ro, comparisons=["het:hom"], n_perm=10)["comparisons"][0]["p"])   # a Store works too


def test_any_flag_share_counts_messages_with_a_behaviour_flag_as_the_view_decides(judged):
    """The study's "flagged" share (F 4.2% vs A 64.3%): messages with any of the six behaviour flags
    (xref is not one) True under the rule, recomputed here from the adjudicated_codes view."""
    ro, result = judged
    anyf = result["isolation"]["any_flag"]
    assert anyf["flags"] == ["phatic", "meta", "lead", "arch", "agree", "comp"]
    per_series = dict(ro.con.execute("""
        SELECT r.series, count(*) FILTER (WHERE hit) FROM (
            SELECT ac.message_id, bool_or(ac.by_intersection AND ac.flag <> 'xref') AS hit
            FROM adjudicated_codes ac WHERE ac.judges_coded > 0 GROUP BY ac.message_id) t
        JOIN messages m USING (message_id) JOIN runs r USING (run_id)
        WHERE NOT m.is_error AND m.sender NOT IN ('user', 'system') GROUP BY r.series""").fetchall())
    rows = {s["series"]: s for s in result["isolation"]["by_series"]}
    assert {s: r["any_flag"] for s, r in rows.items()} == per_series
    assert anyf["isolation_true"] == per_series["iso"] and anyf["isolation_n"] == 15
    assert anyf["group_true"] == sum(v for s, v in per_series.items() if s != "iso")
    assert anyf["group_rate"] == pytest.approx(anyf["group_true"] / anyf["group_n"])
    assert rows["het"]["any_flag_rate"] > 0.5          # planted propensities: most messages flag something


def test_effect_size_r_z_is_z_over_root_n_next_to_the_rank_biserial_r(judged):
    from scipy.stats import mannwhitneyu, norm

    _, result = judged
    (cmp,) = result["comparisons"]
    values = {s["series"]: [r["similarity"] for r in s["per_run"] if r["similarity"] is not None]
              for s in result["series"]}
    het, hom = values["het"], values["hom"]
    asymptotic = mannwhitneyu(het, hom, alternative="two-sided", method="asymptotic", use_continuity=False)
    assert 2 * norm.sf(abs(cmp["z"])) == pytest.approx(asymptotic.pvalue, rel=1e-9)
    assert cmp["r_z"] == pytest.approx(cmp["z"] / math.sqrt(len(het) + len(hom)))
    assert cmp["r_z"] < -0.5 and cmp["r"] < -0.8     # same sign: het is the less similar series
    out = StringIO()
    render(result, Console(file=out, width=240))
    assert "r=Z/√N" in out.getvalue() and "r rank-biserial" in out.getvalue()


def test_broadcast_filter_keeps_only_comp_messages_naming_a_crashed_agent(judged, tmp_path):
    """comp_filter="broadcast" keeps the judges' comp on post-crash messages that name the crashed
    agent. On a copy of the store, both judges are made to code comp on every post-crash message
    that names no crashed agent (the judges' false positives the study's filter removes): the
    unfiltered count grows by exactly those, the filtered one stays what it was."""
    import shutil

    ro, result = judged
    db = tmp_path / "copy.duckdb"
    shutil.copy(ro.con.execute("SELECT path FROM duckdb_databases() WHERE NOT internal").fetchone()[0], db)
    with Store.open(db) as store:
        planted = {m for (m,) in store.con.execute("""
            SELECT m.message_id FROM messages m JOIN agents a ON a.run_id = m.run_id AND a.status = 'errored'
            WHERE NOT m.is_error AND m.sender NOT IN ('user', 'system') AND NOT contains(m.content, a.name)
              AND m.seq > (SELECT min(seq) FROM messages e WHERE e.run_id = m.run_id AND e.is_error)""").fetchall()}
        store.con.execute("UPDATE codes SET value = TRUE WHERE flag = 'comp' AND status = 'coded' "
                          "AND list_contains(?, message_id)", [sorted(planted)])
    assert planted
    with Store.open_read_only(db) as copy:
        plain, filtered = (analyze(copy.con, n_perm=0, comp_filter=f)["compensation"] for f in ("none", "broadcast"))
    before = result["compensation"]["comp_messages"]
    newly = len(planted - comp_message_ids(ro))
    assert plain["comp_messages"] == before + newly and newly > 0
    assert filtered["comp_messages"] == before and filtered["comp_filter"] == "broadcast"
    assert filtered["post_crash_messages"] == plain["post_crash_messages"]
    with pytest.raises(UserError, match="unknown compensation filter 'clean'"):
        analyze(ro.con, n_perm=0, comp_filter="clean")  # type: ignore[arg-type]


def comp_message_ids(store) -> set[str]:
    return {m for (m,) in store.con.execute(
        "SELECT message_id FROM adjudicated_codes WHERE flag = 'comp' AND by_intersection").fetchall()}


def test_paged_scans_give_the_numbers_of_one_pass(judged):
    """Agent counts and judge agreement go a page of messages at a time (issue 12, memory flat in
    store size); with as many pages as allowed they equal the one-page scan and the
    judge_agreement view exactly, and the pages partition the messages."""
    from sociolab.analysis.analyze import agreement_rows
    from sociolab.analysis.compensation import compensation
    from sociolab.analysis.profiles import MAX_PAGES, agent_counts, message_pages, page_sql, round_rates

    con = judged[0].con
    total = con.execute("SELECT count(*) FROM messages").fetchone()[0]
    pages = message_pages(con, 40)
    assert len(pages) == MAX_PAGES > 1 and message_pages(con, total + 1) == [(None, None)]
    per_page = [con.execute(f"SELECT count(*) FROM messages WHERE {page_sql(p)}").fetchone()[0] for p in pages]
    assert sum(per_page) == total and all(per_page)
    for rule in ("intersection", "union", "majority"):
        tables = []
        for size in (40, total + 1):
            counts = agent_counts(con, rule=rule, page_messages=size)
            try:
                tables.append(con.execute(f"SELECT * FROM {counts.table} ORDER BY run_id, agent_id").fetchall())
            finally:
                counts.drop(con)
        assert tables[0] == tables[1] and len(tables[0]) > 50
    codebook = judged[1]["settings"]["codebook_id"]
    view = con.execute("""
        SELECT flag, judge_a, judge_b, n, kappa, percent_agreement, prevalence_a, prevalence_b, tt, tf, ft, ff
        FROM judge_agreement WHERE codebook_id = ? ORDER BY judge_a, judge_b, flag""", [codebook]).fetchall()
    assert agreement_rows(con, codebook, page_messages=40) == view == agreement_rows(con, codebook)
    assert view
    for rule in ("intersection", "union", "majority"):
        rates = [round_rates(con, "het", rule=rule, page_messages=size) for size in (40, total + 1)]
        assert json.dumps(rates[0]) == json.dumps(rates[1]) and rates[0]
        for comp_filter in ("none", "broadcast"):
            comps = [compensation(con, rule=rule, comp_filter=comp_filter, page_messages=size)
                     for size in (40, total + 1)]
            assert json.dumps(comps[0], default=str) == json.dumps(comps[1], default=str)
            assert comps[0]["post_crash_messages"] > 0


def test_analyze_pages_the_messages_once_and_given_pages_count_as_their_own(judged, monkeypatch):
    """analyze computes message_pages once and hands the pages to every paged scan; a scan given
    pages returns what it returns when it computes the same pages itself."""
    import sociolab.analysis.analyze as an
    import sociolab.analysis.compensation as comp
    import sociolab.analysis.profiles as prof
    from sociolab.analysis.stats import mann_whitney, mann_whitney_z

    con = judged[0].con
    codebook = judged[1]["settings"]["codebook_id"]
    pages = prof.message_pages(con, 40)
    assert len(pages) > 1
    assert an.agreement_rows(con, codebook, pages=pages) == an.agreement_rows(con, codebook, page_messages=40)
    assert json.dumps(prof.round_rates(con, "het", pages=pages)) == \
        json.dumps(prof.round_rates(con, "het", page_messages=40))
    assert json.dumps(comp.compensation(con, pages=pages), default=str) == \
        json.dumps(comp.compensation(con, page_messages=40), default=str)
    tables = []
    for kw in ({"pages": pages}, {"page_messages": 40}):
        counts = prof.agent_counts(con, **kw)
        try:
            tables.append(con.execute(f"SELECT * FROM {counts.table} ORDER BY run_id, agent_id").fetchall())
        finally:
            counts.drop(con)
    assert tables[0] == tables[1]

    calls = []
    real = prof.message_pages

    def counted(*args, **kwargs):
        calls.append(args)
        return real(*args, **kwargs)
    for module in (an, comp, prof):
        monkeypatch.setattr(module, "message_pages", counted)
    again = analyze(con, comparisons=["het:hom"], n_perm=2000)
    assert len(calls) == 1
    assert json.dumps(again, sort_keys=True) == json.dumps(judged[1], sort_keys=True)

    x, y = [0.1, 0.2, 0.2, None, 0.5], [0.2, 0.3, float("nan"), 0.3, 0.05]
    assert mann_whitney_z(x, y, mann_whitney(x, y)[0]) == mann_whitney_z(x, y)
    assert math.isnan(mann_whitney_z([], y, math.nan)) and math.isnan(mann_whitney_z([1.0], [1.0], 0.5))


def test_report_sample_is_the_first_coded_messages_in_hash_order(judged):
    """The report's sample reads only the sampled messages; it is what grouping every coded
    message and taking the first in hash(message_id) order gives."""
    from sociolab.analysis.report import SAMPLE_SIZE, sample_ids

    con, codebook = judged[0].con, judged[1]["settings"]["codebook_id"]
    every = [r[0] for r in con.execute("""
        SELECT m.message_id FROM messages m JOIN adjudicated_codes ac USING (message_id)
        WHERE ac.codebook_id = ? GROUP BY m.message_id ORDER BY hash(m.message_id)""", [codebook]).fetchall()]
    assert len(every) > SAMPLE_SIZE
    assert sample_ids(con, codebook) == every[:SAMPLE_SIZE]
    assert sample_ids(con, codebook, len(every) + 5) == every       # fewer than asked: all of them

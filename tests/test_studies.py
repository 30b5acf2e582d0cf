"""Study packs (sociolab/studies/) and comparison families declared in suite files.

A study's specifics live with the study: its suite declares its comparison family, sociolab stores
the family with every run (outside the config hash), the importer stores it with the imported runs,
and `analyze` uses the stored family as its default. Nothing below sociolab/studies names a study.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path

import pytest

from sociolab.analysis.analyze import analyze, declared_family
from sociolab.analysis.families import SeriesPair
from sociolab.base.errors import UserError
from sociolab.config import load_plan, load_suite_family
from sociolab.judges.runner import JudgeConfig, judge_store
from sociolab.orchestrator.client import ClientSettings
from sociolab.orchestrator.store import Store
from sociolab.studies import STUDIES, WARROOM, family_for_unlabelled_runs, known_studies, study

from tests.conftest import REPO, write_yaml

FIXTURE_TRANSCRIPTS = REPO / "tests/fixtures/warroom/transcripts"

# The study's family, as analysis/stats.py held it before it moved to scenarios/library/warroom.yaml.
STUDY_FAMILY = [
    ("A", "B", "heterogeneous vs homogeneous (clones)"),
    ("A", "C", "anonymous vs real model names"),
    ("A", "K1", "full scaffolding vs no peer list"),
    ("A", "K2", "full scaffolding vs no identity line"),
    ("A", "K3", "full scaffolding vs empty system prompt"),
    ("A", "E", "fixed vs shuffled speaking order"),
    ("A", "G", "French vs English task"),
]

SUITE = """
name: own
kind: discussion
agents:
  personas:
    - {key: a, model: sim/a}
    - {key: b, model: sim/b}
params:
  seed_message: "@all plan a picnic"
  rounds: 3
series:
  mixed: {runs: 2}
  hot: {runs: 2, params: {temperature: 1.0}}
  twins: {runs: 2, agents: {clones: {of: a, n: 2}}}
"""

FAMILY = """
analysis:
  comparisons:
    - {a: mixed, b: twins, label: two models vs two copies of one}
    - {a: mixed, b: hot}
"""


# ---- the packs ------------------------------------------------------------------------------

def test_a_study_is_found_by_name_and_an_unknown_name_lists_the_known_ones():
    assert study("warroom") is WARROOM and STUDIES == {"warroom": WARROOM}
    assert WARROOM.suite == REPO / "scenarios/library/warroom.yaml" and WARROOM.suite.is_file()
    assert WARROOM.judge_config.is_file() and WARROOM.codebook == "warroom"
    assert "CC BY 4.0" in WARROOM.citation and WARROOM.importer is not None
    with pytest.raises(UserError, match=r"unknown study 'nope'; known studies: warroom \(\"Who Am I"):
        study("nope")
    assert known_studies().startswith('warroom ("Who Am I, and Who Else Is Here?')


def test_the_warroom_family_is_declared_in_its_suite():
    assert [(p.a, p.b, p.label) for p in WARROOM.family()] == STUDY_FAMILY
    assert WARROOM.suite_name() == "warroom"
    plan = load_plan(WARROOM.suite, sim=True, only_series=["A", "F"])
    stored = plan.runs[0].config_json()["analysis"]["comparisons"]
    assert [(e["a"], e["b"], e["label"]) for e in stored] == STUDY_FAMILY   # the whole family, not just A, F


# ---- a suite's own family -------------------------------------------------------------------

def test_a_suite_declares_its_own_family_stored_with_runs_outside_the_hash(tmp_path):
    plain = load_plan(write_yaml(tmp_path, SUITE, "plain.yaml"))
    declared = load_plan(write_yaml(tmp_path, SUITE + FAMILY, "own.yaml"))
    expected = (SeriesPair("mixed", "twins", "two models vs two copies of one"), SeriesPair("mixed", "hot"))
    assert load_suite_family(tmp_path / "own.yaml") == ("own", expected)
    for before, after in zip(plain.runs, declared.runs):
        assert after.comparisons == expected
        assert after.config_json()["analysis"] == {"comparisons": [
            {"a": "mixed", "b": "twins", "label": "two models vs two copies of one"}, {"a": "mixed", "b": "hot"}]}
        assert "analysis" not in before.config_json()
        assert after.config_hash() == before.config_hash()     # declaring a family never forces a rerun


@pytest.mark.parametrize("family, line, message", [
    ("[{a: mixed, b: pairs}]", 2, r"analysis.comparisons\[0\].b: no series 'pairs' in this file "
                                  r"\(has: mixed, hot, twins\)"),
    ("\n    - {a: mixed, b: twins}\n    - {a: solo, b: twins}", 4, r"comparisons\[1\].a: no series 'solo'"),
    ("[{a: mixed, b: mixed}]", 2, r"comparisons\[0\]: compares series 'mixed' with itself"),
    ("\n    - {a: mixed, b: twins}\n    - {a: twins, b: mixed}", 4, r"comparisons\[1\]: twins:mixed repeats comparisons\[0\]"),
    ("[{a: mixed, b: twins, color: red}]", 2, r"color"),
])
def test_a_bad_family_is_refused_with_its_line(tmp_path, family, line, message):
    path = write_yaml(tmp_path, SUITE + "analysis:\n  comparisons: " + family + "\n")
    first = len(SUITE.strip().splitlines()) + 1                 # the line of `analysis:`
    with pytest.raises(UserError, match=message) as exc:
        load_plan(path)
    assert exc.value.file == str(path) and exc.value.line == first + line - 1


def test_a_family_needs_series(tmp_path):
    single = "name: one\nagents: {personas: [{key: a, model: sim/a}]}\nanalysis:\n  comparisons: [{a: x, b: y}]\n"
    with pytest.raises(UserError, match=r"no series 'x' in this file \(it has no series\)"):
        load_plan(write_yaml(tmp_path, single))


# ---- analyze's default ----------------------------------------------------------------------

@pytest.fixture(scope="module")
def judged_suite(tmp_path_factory):
    """The suite above with its family, run and judged on the sim."""
    from sociolab.runner import execute

    tmp = tmp_path_factory.mktemp("own")
    db = tmp / "own.duckdb"
    with Store.open(db) as store:
        asyncio.run(execute(load_plan(write_yaml(tmp, SUITE + FAMILY, "own.yaml")), store))
        asyncio.run(judge_store(store, JudgeConfig(judges=["sim/judge-a", "sim/judge-b"], client=ClientSettings())))
    return db


def test_analyze_defaults_to_the_family_stored_with_the_runs(judged_suite):
    with Store.open_read_only(judged_suite) as store:
        assert declared_family(store) == [SeriesPair("mixed", "twins", "two models vs two copies of one"),
                                          SeriesPair("mixed", "hot")]
        result = analyze(store, n_perm=50)
        given = analyze(store, comparisons=["twins:mixed", "mixed:twins"], n_perm=50)
    s = result["settings"]
    assert s["comparisons"] == [["mixed", "twins"], ["mixed", "hot"]] and s["comparisons_source"] == "default"
    assert s["comparisons_note"] is None
    assert [c["label"] for c in result["comparisons"]] == ["two models vs two copies of one", "mixed vs hot"]
    assert given["settings"]["comparisons_source"] == "given"   # --compare overrides; a declared pair keeps its label
    assert [c["label"] for c in given["comparisons"]] == ["twins vs mixed", "two models vs two copies of one"]


def test_without_a_declared_family_analyze_says_so(judged_suite, tmp_path):
    db = tmp_path / "bare.duckdb"
    shutil.copy(judged_suite, db)
    with Store.open(db) as store:
        store.con.execute("""UPDATE runs SET config = json_merge_patch(config, '{"analysis": null}')""")
    with Store.open_read_only(db) as store:
        assert declared_family(store) == [] and family_for_unlabelled_runs(store.con) == []   # not a study's suite
        result = analyze(store, n_perm=50)
        fallback = analyze(store, n_perm=50, fallback_family=[SeriesPair("hot", "twins")])
    assert result["comparisons"] == [] and result["settings"]["comparisons"] == []
    assert result["settings"]["comparisons_note"] == "no comparison family is declared with these runs"
    assert [(c["a"], c["b"]) for c in fallback["comparisons"]] == [("hot", "twins")]


# ---- imported data through the pack ---------------------------------------------------------

def test_imported_runs_carry_the_family_and_old_stores_fall_back_to_it(tmp_path):
    db = tmp_path / "w.duckdb"
    seen: list[str] = []
    with Store.open(db) as store:
        summary = WARROOM.import_data(store, FIXTURE_TRANSCRIPTS, on_run=seen.append)
        asyncio.run(judge_store(store, JudgeConfig(judges=["sim/judge-a"], client=ClientSettings())))
    assert summary.runs == len(seen) == 3
    with Store.open_read_only(db) as store:
        assert [(p.a, p.b, p.label) for p in declared_family(store)] == STUDY_FAMILY
        result = analyze(store, n_perm=50)
    # the fixture has series A, B and F: of the family, A vs B has values on both sides
    assert [(c["a"], c["b"], c["label"]) for c in result["comparisons"]] == [STUDY_FAMILY[0]]
    with Store.open(db) as store:   # as if stored before runs carried their family
        store.con.execute("""UPDATE runs SET config = json_merge_patch(config, '{"analysis": null}')""")
        assert family_for_unlabelled_runs(store.con) == list(WARROOM.family())


def test_a_study_without_published_data_cannot_import(tmp_path):
    from dataclasses import replace

    with Store.open(tmp_path / "x.duckdb") as store:
        with pytest.raises(UserError, match="published no data"):
            replace(WARROOM, name="designed", importer=None).import_data(store, Path(tmp_path))

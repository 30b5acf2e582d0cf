"""The study replicated end to end on the sim; the report embeds its images and the analyze numbers."""

from __future__ import annotations

import base64
import json
import re
import shutil
import subprocess

import pytest

from tests.conftest import cli


@pytest.fixture(scope="module")
def replicated(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("rep")
    db, html = tmp / "rep.duckdb", tmp / "report.html"
    out = cli("replicate", "warroom", "--sim", "--series", "A,B,F", "--db", str(db), "-o", str(html), "--quiet",
              timeout=300)
    assert out.returncode == 0, out.stderr
    return db, html, out


def test_replicate_runs_judges_and_reports(replicated):
    db, html, out = replicated
    assert "1/3 run" in out.stdout and "2/3 judge" in out.stdout and "3/3 analyze" in out.stdout
    page = html.read_text()
    assert "sim backend" in page and "not evidence about real models" in page


def test_report_embeds_its_images(replicated):
    _, html, _ = replicated
    page = html.read_text()
    images = re.findall(r"src='data:image/png;base64,([A-Za-z0-9+/=]+)'", page)
    assert len(images) >= 4
    assert all(base64.b64decode(i)[:8] == b"\x89PNG\r\n\x1a\n" for i in images)
    # nothing is loaded from elsewhere; the only http links are to `sociolab view` on loopback
    offline = re.sub(r"<a href='http://127\.0\.0\.1:\d+/[^']*'>", "", page)
    assert "http://" not in offline and "https://" not in offline.replace("https://creativecommons", "")


def test_report_numbers_equal_analyze_json(replicated):
    db, html, _ = replicated
    page = html.read_text()
    embedded = json.loads(re.search(r"<script id='analysis' type='application/json'>(.*?)</script>", page,
                                    re.S).group(1).replace("<\\/", "</"))
    analyzed = json.loads(cli("analyze", "--db", str(db), "--json").stdout)
    assert embedded == analyzed
    # and the tables show those numbers
    for series in analyzed["series"]:
        mean = series["similarity"]["mean"]
        if mean is not None:
            assert f"<td>{mean:.3f}</td>" in page
    for comparison in analyzed["comparisons"]:
        assert f"<td>{comparison['u']:.1f}</td>" in page
    heterogeneous_vs_clones = next(c for c in analyzed["comparisons"] if (c["a"], c["b"]) == ("A", "B"))
    assert heterogeneous_vs_clones["p"] < 0.01 and heterogeneous_vs_clones["mean_a"] < heterogeneous_vs_clones["mean_b"]


@pytest.mark.skipif(shutil.which("chromium") is None, reason="headless Chromium is not installed")
def test_report_renders_in_headless_chromium(replicated, tmp_path):
    _, html, _ = replicated
    shot = tmp_path / "report.png"
    subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                    "--disable-background-networking", "--disable-component-update", "--disable-sync",
                    f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1100,3000",
                    f"--screenshot={shot}", f"file://{html}"], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 50_000  # a page with content and plots, not a blank one
    dom = subprocess.run(["chromium", "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                          "--no-first-run", "--disable-background-networking", "--disable-component-update",
                          "--disable-sync", f"--user-data-dir={tmp_path / 'profile2'}", "--dump-dom",
                          f"file://{html}"], capture_output=True, text=True, timeout=120).stdout
    assert dom.count("<img") >= 4 and "Series comparisons" in dom


def test_imported_data_is_credited_as_its_importer_recorded_it(tmp_path):
    from sociolab.analysis.report import provenance_notes
    from sociolab.orchestrator.store import Store
    from sociolab.studies import WARROOM
    from tests.conftest import REPO

    with Store.open(tmp_path / "w.duckdb") as store:
        WARROOM.import_data(store, REPO / "tests/fixtures/warroom/transcripts")
        assert provenance_notes(store.con) == [f"Includes 3 runs imported from 'warroom'. {WARROOM.citation}"]
        store.con.execute("""UPDATE runs SET source = 'elsewhere', config = json_merge_patch(config, '{"imported": null}')
                             WHERE run_id = 'warroom/F/run08'""")
        assert provenance_notes(store.con) == ["Includes 1 run imported from 'elsewhere'.",
                                               f"Includes 2 runs imported from 'warroom'. {WARROOM.citation}"]


def test_every_figure_of_the_study_has_its_counterpart(replicated):
    """Each of generate_figures.py's eleven figures is named in the report next to what stands for
    it; those whose data series A, B and F hold (all but the real-names contrast) are drawn."""
    from sociolab.analysis.study_figures import ORIGINALS

    _, html, _ = replicated
    page = html.read_text()
    assert len(ORIGINALS) == 11
    for name in ORIGINALS:
        assert f"Counterpart of the study's <code>{name}</code>" in page, name
    drawn = {alt for alt in re.findall(r"<img alt='([^']*)'", page)}
    missing = {n for n, what in ORIGINALS.items() if what.replace("'", "&#x27;") not in drawn}
    assert missing == {"fig0_pipeline.png", "fig4_name_bias.png", "fig7_confusion.png"}  # text, no C, a table
    assert "No compared series differ in naming." in page
    assert re.search(r"<td>any of phatic, meta, lead, arch, agree, comp</td>", page)
    assert "r = Z/√N" in page and "r (rank-biserial)" in page


def test_a_store_without_series_and_with_a_crash_gets_every_section(tmp_path):
    """Runs stored without a series (a single run file) still get the study's figures: the
    compensation per series labels the unnamed series '-' instead of failing."""
    from tests.conftest import write_yaml

    path = write_yaml(tmp_path, """
name: solo
kind: discussion
seed: 5
agents:
  personas: [{key: a, model: sim/a}, {key: b, model: sim/b}, {key: c, model: sim/c}]
  crashes: [{agent: c, from_round: 1, mode: permanent}]
params: {seed_message: "@all Plan a festival for 5000 people.", rounds: 3}
sim: {models: {a: {notice_crash: 0.9}, b: {notice_crash: 0.9}}}
""")
    db, html = tmp_path / "s.duckdb", tmp_path / "s.html"
    for args in (("run", str(path), "--db", str(db), "-q"), ("judge", "--db", str(db), "--sim"),
                 ("report", "--db", str(db), "-o", str(html))):
        done = cli(*args)
        assert done.returncode == 0, done.stderr
    page = html.read_text()
    assert "Counterpart of the study's <code>fig9_comp_series.png</code>" in page
    assert "Compensating messages per crashed run, per series" in page      # drawn, not skipped

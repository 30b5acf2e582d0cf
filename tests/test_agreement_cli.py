"""`sociolab agreement`, `validate export/import` end to end in subprocesses."""

from __future__ import annotations

import csv
import json

from tests.conftest import REPO, cli

STUDY_CSV = REPO / "tests/fixtures/coding/human_coding_results.csv"


def mean_kappa(report: dict, a: str, b: str) -> float:
    row = next(r for r in report["mean_kappa"] if {r["rater_a"], r["rater_b"]} == {a, b})
    return row["mean_kappa"]


def test_study_csv_gives_the_published_agreement():
    out = cli("agreement", "--csv", str(STUDY_CSV), "--raters", "human,gemini,sonnet", "--json", "--no-ci")
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    assert report["flags"] == ["agree", "arch", "comp", "lead", "meta", "phatic"]
    assert round(mean_kappa(report, "gemini", "sonnet"), 2) == 0.78  # the study reports 0.78
    assert all(r["n"] == 609 for r in report["pairs"])


def test_run_judge_agree_validate_end_to_end(tmp_path):
    db = str(tmp_path / "e.duckdb")
    assert cli("run", str(REPO / "scenarios/library/quickstart.yaml"), "--db", db, "--quiet").returncode == 0
    judged = cli("judge", "--db", db, "--sim", "--quiet")
    assert judged.returncode == 0, judged.stderr
    report = json.loads(cli("agreement", "--db", db, "--json", "--n-boot", "200").stdout)
    judges = report["raters"]
    assert len(judges) == 2 and all(j.startswith("sim/judge-") for j in judges)
    k = mean_kappa(report, *judges)
    assert 0.5 < k < 1.0
    assert all(r["kappa_ci_low"] is None or r["kappa_ci_low"] <= r["kappa"] <= r["kappa_ci_high"]
               for r in report["pairs"] if r["kappa"] is not None)

    sample = tmp_path / "sample.csv"
    exported = cli("validate", "export", "--db", db, "--n", "20", "--stratify", "agent", "-o", str(sample))
    assert exported.returncode == 0, exported.stderr
    rows = list(csv.DictReader(sample.open()))
    assert len(rows) == 20 and len({r["stratum"] for r in rows}) >= 5
    assert "sim/judge" not in sample.read_text()  # judges' labels are never shown to coders
    # a "human" who agrees with one judge exactly
    judge = judges[0]
    for row in rows:
        codes = cli("sql", f"SELECT flag, value FROM codes WHERE message_id = '{row['id']}' AND judge = '{judge}'",
                    "--db", db, "-f", "json")
        for c in json.loads(codes.stdout):
            row[c["flag"]] = "true" if c["value"] else ""
        row["coder"] = "ana"
    with sample.open("w", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    imported = cli("validate", "import", str(sample), "--db", db)
    assert imported.returncode == 0, imported.stderr
    assert "ana: 20 messages" in imported.stdout
    again = cli("validate", "import", str(sample), "--db", db)  # re-import replaces, never duplicates
    assert again.returncode == 0
    report = json.loads(cli("agreement", "--db", db, "--json", "--no-ci").stdout)
    assert "human:ana" in report["raters"]
    human_vs_judge = [r for r in report["pairs"] if {r["rater_a"], r["rater_b"]} == {"human:ana", judge}]
    assert human_vs_judge and all(r["n"] == 20 and r["tf"] == 0 and r["ft"] == 0 for r in human_vs_judge)


def test_validate_import_bad_values_name_the_line(tmp_path):
    db = str(tmp_path / "e.duckdb")
    cli("run", str(REPO / "scenarios/library/quickstart.yaml"), "--db", db, "--quiet")
    msg = json.loads(cli("sql", "SELECT message_id FROM messages WHERE round = 0 LIMIT 1", "--db", db,
                         "-f", "json").stdout)[0]["message_id"]
    bad = tmp_path / "bad.csv"
    bad.write_text(f"id,coder,phatic,meta\n{msg},ana,true,\n{msg},bob,maybe,\n")
    out = cli("validate", "import", str(bad), "--db", db)
    assert out.returncode == 2 and "bad.csv:3:" in out.stderr and "maybe" in out.stderr
    unknown = tmp_path / "unknown.csv"
    unknown.write_text("id,coder,phatic\nnot-a-message,ana,true\n")
    out = cli("validate", "import", str(unknown), "--db", db)
    assert out.returncode == 2 and "unknown.csv:2:" in out.stderr
    assert cli("sql", "SELECT count(*) FROM human_codes", "--db", db, "-f", "csv").stdout.splitlines()[1] == "0"
    out = cli("agreement", "--db", db)
    assert out.returncode == 2 and "sociolab judge" in out.stderr
    out = cli("agreement", "--csv", str(tmp_path / "none.csv"))
    assert out.returncode == 2 and "Traceback" not in out.stderr
    twice = tmp_path / "twice.csv"
    twice.write_text(f'id,coder,text,phatic\n{msg},ana,"two\nlines",true\n{msg},ana,"again\nand\nagain",no\n')
    out = cli("validate", "import", str(twice), "--db", db)
    assert out.returncode == 2 and "twice.csv:4: message id" in out.stderr and "(first on line 2)" in out.stderr
    multiline = tmp_path / "multiline.csv"
    multiline.write_text(f'id,coder,text,phatic\n{msg},ana,"one\ntwo\nthree",perhaps\n')
    out = cli("validate", "import", str(multiline), "--db", db)
    assert out.returncode == 2 and "multiline.csv:2: column phatic" in out.stderr  # where the record starts
    latin = tmp_path / "latin.csv"
    latin.write_bytes(f"id,coder,phatic\n{msg},Jos\xe9,true\n".encode("latin-1"))
    out = cli("validate", "import", str(latin), "--db", db)
    assert out.returncode == 2 and "not UTF-8 text" in out.stderr and "Traceback" not in out.stderr
    assert cli("sql", "SELECT count(*) FROM human_codes", "--db", db, "-f", "csv").stdout.splitlines()[1] == "0"

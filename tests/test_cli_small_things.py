"""Small things users reported, through the CLI in real subprocesses: --version, flags shown as
flags in --help, counts in the singular, Ctrl-C naming the command that resumes, the "Try:" hint
in one piece (and `results` after a scored run), why `validate export` wrote fewer than --n, and
docs/serve-sim.md agreeing with `sociolab serve-sim`'s options.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time

import typer

from sociolab import __version__
from sociolab.cli import app, interrupted_text, show_flags_as_flags
from tests.conftest import REPO, TINY_DISCUSSION, cli, cli_batch, write_yaml


def commands() -> list[list[str]]:
    """Every command and subcommand of the app, as argv prefixes."""
    show_flags_as_flags(app)
    root = typer.main.get_command(app)
    out: list[list[str]] = [[]]
    for name, command in root.commands.items():  # type: ignore[attr-defined]
        subcommands = getattr(command, "commands", None)
        out += [[name, sub] for sub in subcommands] if subcommands else [[name]]
    return out


def test_version():
    done = cli("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"sociolab {__version__}", done


def test_no_help_shows_a_type_after_a_flag(tmp_path):
    every = commands()
    assert ["run"] in every and ["validate", "export"] in every and ["list"] in every
    helps = cli_batch([(argv + ["--help"], tmp_path) for argv in every])
    for argv, done in zip(every, helps):
        assert done.returncode == 0, (argv, done.stderr)
        assert "<bool>" not in done.stdout, (argv, done.stdout)
    run_help = helps[every.index(["run"])].stdout
    assert re.search(r"--sim +replace every model", run_help) and re.search(r"--fresh +redo runs", run_help)
    assert re.search(r"--model +-m +<list\[str\]>", run_help)


def test_counts_are_singular_for_one(tmp_path):
    path = write_yaml(tmp_path, TINY_DISCUSSION.replace("only: [llama, kimi]", "only: [llama]"), "one.yaml")
    db = tmp_path / "one.duckdb"
    dry = cli("run", str(path), "--db", str(db), "--dry-run", "-P", "rounds=1")
    assert "Dry run: 1 run of" in dry.stdout and "Total: 1 call," in dry.stdout, dry.stdout
    done = cli("run", str(path), "--db", str(db), "-q", "-P", "rounds=1")
    assert done.returncode == 0, done.stderr
    assert re.search(r"holds 1 run, 1 agent, 1 agent message \(0 errors\), 1 LLM call, [\d,]+ tokens", done.stdout), \
        done.stdout


def test_the_try_hint_is_one_line_and_never_cut_inside_the_command(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name-" * 4) / "and-another-one-to-pass-two-hundred-columns"
    deep.mkdir(parents=True)
    db = deep / "long.duckdb"
    done = cli("run", str(write_yaml(tmp_path, TINY_DISCUSSION)), "--db", str(db), "-q")
    assert done.returncode == 0, done.stderr
    (hint,) = [line for line in done.stdout.splitlines() if line.startswith("Try:")]
    assert hint.startswith("Try: sociolab sql \"SELECT sender_name") and hint.endswith(f"--db {db}"), done.stdout


def test_after_a_scored_run_the_hint_is_results(tmp_path):
    db = tmp_path / "g.duckdb"
    done = cli("run", "repeated_games", "--series", "pd_llm_vs_llm", "--db", str(db), "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert f"Try: sociolab results --db {db}" in done.stdout.splitlines()
    results = cli("results", "--db", str(db))
    assert results.returncode == 0 and "cooperation_rate" in results.stdout


def test_interrupted_text_names_the_command_that_resumes():
    assert interrupted_text(["--log-file", "x.log", "run", "a b.yaml", "--db", "x.duckdb"]) == (
        "interrupted; what was stored is kept. To resume, rerun: sociolab --log-file x.log run 'a b.yaml' --db x.duckdb")
    assert interrupted_text(["judge", "--sim"]).endswith("To resume, rerun: sociolab judge --sim")
    assert interrupted_text(["run", "w.yaml", "--fresh"]).endswith(
        "sociolab run w.yaml --fresh (without --fresh, so the runs it completed are not redone again)")
    assert interrupted_text(["sql", "SELECT 1"]) == "interrupted"


def test_ctrl_c_during_a_run_says_how_to_resume(tmp_path):
    db = tmp_path / "w.duckdb"
    argv = ["run", "warroom", "--sim", "--db", str(db)]
    proc = subprocess.Popen([sys.executable, "-m", "sociolab", *argv], cwd=tmp_path, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=cli_env())
    try:
        deadline = time.monotonic() + 60
        while not db.exists() and time.monotonic() < deadline:
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, (proc.returncode, out[-2000:], err[-2000:])
    assert err.strip().splitlines()[-1] == (f"interrupted; what was stored is kept. To resume, rerun: "
                                            f"sociolab run warroom --sim --db {db}"), err
    resumed = cli("run", "warroom", "--sim", "--db", str(db), "--series", "A", "-q", cwd=tmp_path)
    assert resumed.returncode == 0, resumed.stderr


def cli_env() -> dict:
    import os

    return {**os.environ, "COLUMNS": "200"}


def test_validate_export_says_why_it_wrote_fewer_than_n(tmp_path):
    db = tmp_path / "q.duckdb"
    assert cli("run", "quickstart", "--db", str(db), "-q").returncode == 0
    few, rounded, exact = cli_batch([
        (["validate", "export", "--db", str(db), "--n", "600", "-o", "a.csv"], tmp_path),
        (["validate", "export", "--db", str(db), "--n", "35", "--stratify", "agent", "-o", "b.csv"], tmp_path),
        (["validate", "export", "--db", str(db), "--n", "20", "-o", "c.csv"], tmp_path)])
    assert re.search(r"Wrote 40 messages \(1 stratum by series\) to a\.csv\. That is fewer than --n 600: the store "
                     r"has only 40 codable messages\.", few.stdout), few.stdout
    assert re.search(r"Wrote 34 messages \(7 strata by agent\) to b\.csv\. That is 1 fewer than --n 35: each of the 7 "
                     r"strata gets round\(35 x its share of the 40 codable messages\), at least 1, and these rounded "
                     r"shares add up to 34\.", rounded.stdout), rounded.stdout
    assert "Wrote 20 messages" in exact.stdout and "fewer" not in exact.stdout
    assert all("sociolab validate import" in line for line in (few.stdout, rounded.stdout, exact.stdout))
    assert len(few.stdout.strip().splitlines()) == 1


def test_serve_sim_docs_list_every_option_with_its_default():
    """docs/serve-sim.md's table of `sociolab serve-sim` options is the command's, default by default."""
    show_flags_as_flags(app)
    command = typer.main.get_command(app).commands["serve-sim"]  # type: ignore[attr-defined]
    actual = {param.opts[0]: param.default for param in command.params}
    text = (REPO / "docs/serve-sim.md").read_text()
    documented = dict(re.findall(r"^\| `(--[a-z-]+)` \| ([^|]+?) \|", text, flags=re.M))
    assert set(documented) == set(actual)
    for option, default in actual.items():
        shown = {None: "none", False: "off"}.get(default, str(default)) if not isinstance(default, (int, float)) \
            or isinstance(default, bool) else str(default)
        assert documented[option] == shown, (option, documented[option], default)
    assert "sociolab serve-sim [--port 8765]" in (REPO / "docs/cli.md").read_text()
    assert "`--seed N` (fault draws)" in (REPO / "docs/cli.md").read_text()


def test_serve_sim_help_matches_the_docs_table(tmp_path):
    done = cli("serve-sim", "--help")
    text = (REPO / "docs/serve-sim.md").read_text()
    for option in re.findall(r"^\| `(--[a-z-]+)` \|", text, flags=re.M):
        assert option in done.stdout, option
    assert "[default: 8765]" in done.stdout


def test_a_path_in_the_repository_is_not_needed(tmp_path):
    """The library name works where no scenarios/ folder is near (the installed case is in
    tests/test_packaging.py)."""
    assert not (tmp_path / "scenarios").exists()
    done = cli("run", "quickstart", "--dry-run", cwd=tmp_path)
    assert done.returncode == 0 and "Dry run: 1 run of quickstart" in done.stdout, done.stderr


def test_help_of_the_module_entry_point_matches(tmp_path):
    """`python -m sociolab.cli` (what the serve-sim tests start) renders flags the same way."""
    done = subprocess.run([sys.executable, "-m", "sociolab.cli", "run", "--help"], cwd=tmp_path, capture_output=True,
                          text=True, env=cli_env(), timeout=120)
    assert done.returncode == 0 and "<bool>" not in done.stdout, done.stdout

"""Logging: a bug in a run is one line on screen, a traceback in the log file and in `events`;
--verbose shows INFO; the default log file appears only when something went wrong; keys never
reach the screen, the log or the store."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import subprocess
import sys
from pathlib import Path

import duckdb
import pytest

from sociolab.orchestrator import logs
from sociolab.cli import main
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.base.errors import ProviderError
from sociolab.orchestrator.provider import ProviderDefaults, ProviderReply
from sociolab.orchestrator.redact import register_secrets

from tests.conftest import TINY_DISCUSSION, REPO, cli, write_yaml

TINY = TINY_DISCUSSION

# A bug planted in the discussion scenario, in a real `sociolab` process.
DRIVER = """
import sys
import sociolab.scenarios.discussion as discussion

def buggy_crash_fault(self, agent, round_index):
    raise KeyError("x")

discussion.Discussion.crash_fault = buggy_crash_fault
from sociolab.cli import main
main(sys.argv[1:])
"""

PLANTED_KEY = "sk-proj-PLANTED0123456789abcdefXYZ"
PLANTED_SECRET = "hunter2-registered-secret-42"  # not key-shaped: masked because it is registered


@pytest.fixture(autouse=True)
def clean_logging():
    yield
    logs.reset_logging()


def events(db: Path, kind: str = "internal_error") -> list[tuple[str, dict]]:
    con = duckdb.connect(str(db), read_only=True)
    try:
        rows = con.execute("SELECT run_id, detail FROM events WHERE kind = ? ORDER BY run_id", [kind]).fetchall()
    finally:
        con.close()
    return [(run_id, json.loads(detail)) for run_id, detail in rows]


def run_in_process(capsys, *args: str) -> tuple[int, str, str]:
    """`sociolab ARGS` through the CLI's own entry point, in this process: (exit code, stdout, stderr)."""
    code = 0
    try:
        main(list(args))
    except SystemExit as exc:
        code = exc.code or 0
    finally:
        logs.reset_logging()  # close the log file before the test reads it
    out = capsys.readouterr()
    return code, out.out, out.err


def test_a_bug_in_a_run_is_one_line_on_screen_and_a_traceback_in_the_log_and_events(tmp_path):
    scenario = write_yaml(tmp_path, TINY)
    driver = tmp_path / "buggy_sociolab.py"
    driver.write_text(DRIVER)
    db = tmp_path / "t.duckdb"
    out = subprocess.run([sys.executable, str(driver), "run", str(scenario), "--db", str(db), "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=120,
                         env={**os.environ, "COLUMNS": "200"})
    assert out.returncode == 1, out.stdout + out.stderr
    log_file = tmp_path / "t.log"  # the default: next to --db, named after it
    assert out.stderr.splitlines() == [f"run t/001 failed: KeyError: 'x' (traceback in {log_file})"]
    assert "Traceback" not in out.stdout + out.stderr

    text = log_file.read_text()
    assert "ERROR   sociolab.runner" in text and "run t/001 failed: KeyError: 'x'" in text
    assert "Traceback (most recent call last)" in text and "buggy_crash_fault" in text
    assert "run t/001 started" in text  # the INFO records that led up to it are kept

    assert "redoing it from scratch (attempt 2 of 2)" in text  # a bug is retried a set number of times
    [(run_id, detail)] = events(db)
    assert run_id == "t/001" and detail["error"] == "KeyError: 'x'" and detail["type"] == "KeyError"
    assert detail["attempts"] == 2
    with duckdb.connect(str(db), read_only=True) as con:
        assert con.execute("SELECT status, stop_reason FROM runs").fetchall() == [
            ("failed", "internal error: KeyError: 'x'")]
    assert detail["traceback"].startswith("Traceback (most recent call last)")
    assert "buggy_crash_fault" in detail["traceback"] and detail["traceback"].rstrip().endswith("KeyError: 'x'")

    fixed = cli("run", str(scenario), "--db", str(db), "--quiet")  # the bug fixed: a rerun redoes the run
    assert fixed.returncode == 0, fixed.stderr
    assert events(db) == []  # the failed attempt's rows went with it


def test_verbose_shows_info_and_a_clean_run_leaves_no_log_file(tmp_path, capsys):
    scenario = write_yaml(tmp_path, TINY)
    db = tmp_path / "v.duckdb"
    code, _, err = run_in_process(capsys, "run", str(scenario), "--db", str(db), "--quiet")
    assert code == 0 and err == ""
    assert not (tmp_path / "v.log").exists()

    code, _, err = run_in_process(capsys, "--verbose", "run", str(scenario), "--db", str(db), "--quiet", "--fresh")
    assert code == 0
    lines = err.splitlines()
    assert "info sociolab.runner: run t/001 started" in lines
    assert any(line.startswith("info sociolab.runner: run t/001 completed after") for line in lines)
    assert all(line.startswith("info ") for line in lines), lines  # one line each, nothing else
    assert not (tmp_path / "v.log").exists()


def test_log_file_option_writes_from_the_start_and_verbose_adds_debug(tmp_path, capsys):
    scenario = write_yaml(tmp_path, TINY)
    db, log_file = tmp_path / "f.duckdb", tmp_path / "chosen.log"
    code, _, err = run_in_process(capsys, "--log-file", str(log_file), "run", str(scenario), "--db", str(db), "-q")
    assert code == 0 and err == ""
    text = log_file.read_text()
    assert "INFO    sociolab.runner" in text and "run t/001 completed" in text
    assert "schema migration v0 -> v1 applied" in text and "DEBUG" not in text
    assert not (tmp_path / "f.log").exists()

    code, _, _ = run_in_process(capsys, "-v", "--log-file", str(log_file), "run", str(scenario), "--db", str(db),
                                "-q", "--fresh")
    assert code == 0
    again = log_file.read_text()
    assert again.startswith(text)  # appended, never truncated
    assert "DEBUG   sociolab.orchestrator.client" in again and "ok after 1 attempt(s)" in again

    bad = run_in_process(capsys, "--log-file", str(tmp_path / "no/such/dir.log"), "sql", "SELECT 1", "--db", str(db))
    assert bad[0] == 2 and bad[2].startswith("error: --log-file") and "cannot write it" in bad[2]


def test_the_default_log_file_is_created_only_by_a_warning(tmp_path):
    logs.setup_logging(False, None)
    logs.log_beside(tmp_path / "x.duckdb")
    assert logs.log_file_path() == tmp_path / "x.log"
    log = logging.getLogger("sociolab.runner")
    log.info("nothing wrong yet")
    log.debug("not kept without --verbose")
    assert not (tmp_path / "x.log").exists() and logs.written_log_file() is None
    log.warning("now something is wrong")
    assert logs.written_log_file() == tmp_path / "x.log"
    text = (tmp_path / "x.log").read_text()
    assert "nothing wrong yet" in text and "now something is wrong" in text and "not kept" not in text
    assert "traceback in " + str(tmp_path / "x.log") == logs.traceback_note()
    logs.setup_logging(False, None)  # a second setup replaces the first: one pair of handlers
    ours = [h for h in logging.getLogger().handlers if isinstance(h, (logs.LogFile, logs.ScreenHandler))]
    assert len(ours) == 2


def test_a_planted_key_never_reaches_the_screen_the_log_or_the_store(tmp_path, capsys, monkeypatch):
    import sociolab.scenarios.discussion as discussion

    register_secrets([PLANTED_SECRET])

    def leaky(self, agent, round_index):
        raise RuntimeError(f"Incorrect API key provided: {PLANTED_KEY} (also {PLANTED_SECRET})\nsecond line")

    monkeypatch.setattr(discussion.Discussion, "crash_fault", leaky)
    scenario = write_yaml(tmp_path, TINY)
    db, log_file = tmp_path / "k.duckdb", tmp_path / "k.log"
    code, out, err = run_in_process(capsys, "--verbose", "run", str(scenario), "--db", str(db), "--quiet")
    assert code == 1
    [line] = [line for line in err.splitlines() if not line.startswith("info ")]
    assert line == f"run t/001 failed: RuntimeError: Incorrect API key provided: [redacted] (also [redacted]) " \
                   f"(traceback in {log_file})"
    text = log_file.read_text()
    assert "Traceback (most recent call last)" in text and "[redacted]" in text
    [(_, detail)] = events(db)
    for where in (out, err, text, json.dumps(detail)):
        assert PLANTED_KEY not in where and PLANTED_SECRET not in where
        assert "sk-proj-PLANTED" not in where  # not even a cut-off piece of it


class FailingProvider(ProviderDefaults):
    """A provider whose every attempt fails with its key echoed back, as some providers do."""

    name = "failing"

    def key_hint(self, model, endpoint):
        return "check FAILING_API_KEY"

    def secrets(self, model, endpoint):
        return [PLANTED_SECRET]

    async def complete(self, request) -> ProviderReply:
        raise ProviderError(f"503 overloaded for key {PLANTED_SECRET} / api_key={PLANTED_KEY}", transient=True,
                            status_code=503)


def test_client_logs_retries_at_info_and_final_failures_as_one_redacted_warning(tmp_path, capsys):
    log_file = tmp_path / "client.log"
    logs.setup_logging(False, log_file)
    client = ModelClient(ClientSettings(max_attempts=3, initial_wait_s=0, max_wait_s=0),
                         providers=[FailingProvider()])

    async def no_sleep(seconds):
        pass

    done = asyncio.run(client.complete("failing/model", [{"role": "user", "content": "hi"}], sleep=no_sleep))
    assert not done.ok and done.attempts == 3
    logs.reset_logging()
    err = capsys.readouterr().err
    assert err.splitlines() == ["warning: failing/model failed at the provider after 3 attempt(s): ProviderError: "
                                "503 overloaded for key [redacted] / [redacted]"]
    text = log_file.read_text()
    assert text.count("INFO    sociolab.orchestrator.client") == 2 and "retrying in 0.0 s after ProviderError" in text
    assert "WARNING sociolab.orchestrator.client" in text
    assert PLANTED_KEY not in text + err and PLANTED_SECRET not in text + err


def test_a_bug_outside_a_run_is_one_line_and_a_logged_traceback(tmp_path, capsys, monkeypatch):
    from sociolab import orchestrator
    import sociolab.orchestrator.query  # noqa: F401 - loaded for the patch below

    scenario = write_yaml(tmp_path, TINY)
    db = tmp_path / "s.duckdb"
    assert run_in_process(capsys, "run", str(scenario), "--db", str(db), "-q")[0] == 0

    def broken(*args, **kwargs):
        raise ValueError("no such thing\nmore detail")

    monkeypatch.setattr(orchestrator.query, "run_query", broken)
    code, _, err = run_in_process(capsys, "sql", "SELECT 1", "--db", str(db))
    assert code == 1
    assert err.splitlines() == [f"error: unexpected ValueError: no such thing (a bug in sociolab; traceback in "
                                f"{tmp_path / 's.log'})"]
    text = (tmp_path / "s.log").read_text()
    assert "CRITICAL sociolab.cli" in text and "Traceback (most recent call last)" in text
    assert "more detail" in text

""".env loading for API keys, through the CLI in real subprocesses against `sociolab serve-sim
--api-key` (real HTTP through litellm, offline): ./.env and --env-file give the key, a variable
already set wins, and the key's value never reaches the screen, the log or the store.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import REPO, cli, write_yaml

KEY = "sk-local-dotenv-0123456789abcdef"
WRONG = "sk-wrong-dotenv-fedcba9876543210"


@pytest.fixture(scope="module")
def server_url():
    server = subprocess.Popen([sys.executable, "-m", "sociolab.cli", "serve-sim", "--port", "0", "--api-key", KEY],
                              cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = server.stdout.readline()
        yield re.search(r"(http://127\.0\.0\.1:\d+/v1)", line).group(1)
    finally:
        server.terminate()
        server.wait(timeout=30)


def keyed_file(folder: Path, url: str) -> Path:
    return write_yaml(folder, f"""
        name: keyed
        agents:
          personas:
            - {{key: a, model: openai/sim-a, api_base: "{url}", api_key_env: SOCIOLAB_TEST_KEY}}
            - {{key: b, model: openai/sim-b, api_base: "{url}", api_key_env: SOCIOLAB_TEST_KEY}}
        params: {{seed_message: "@all hello team", rounds: 2, stagger_ms: 10}}
        client: {{max_attempts: 1}}
        """, "keyed.yaml")


def run_in(folder: Path, url: str, *extra: str, env: dict | None = None) -> subprocess.CompletedProcess:
    return cli(*extra, "run", str(keyed_file(folder, url)), "--db", str(folder / "k.duckdb"), "-q", cwd=folder,
               env=env, unset=() if env and "SOCIOLAB_TEST_KEY" in env else ("SOCIOLAB_TEST_KEY",))


def stored_text(folder: Path) -> str:
    """Everything the store and the log hold, as text."""
    import duckdb

    texts = []
    if (folder / "k.duckdb").exists():
        with duckdb.connect(str(folder / "k.duckdb"), read_only=True) as con:
            for table in ("runs", "llm_calls", "messages", "events", "agents"):
                texts += [str(row) for row in con.execute(f"SELECT * FROM {table}").fetchall()]
    for log in folder.glob("*.log"):
        texts.append(log.read_text())
    return "\n".join(texts)


def test_without_a_key_the_variable_is_named(tmp_path, server_url):
    done = run_in(tmp_path, server_url)
    assert done.returncode == 2 and "SOCIOLAB_TEST_KEY" in done.stderr, done.stderr


def test_a_dotenv_in_the_working_folder_gives_the_key(tmp_path, server_url):
    (tmp_path / ".env").write_text(f"# keys\nSOCIOLAB_TEST_KEY={KEY}\n")
    done = run_in(tmp_path, server_url)
    assert done.returncode == 0, done.stderr
    assert "holds 1 run, 2 agents" in done.stdout
    assert KEY not in done.stdout + done.stderr + stored_text(tmp_path)


def test_a_variable_already_set_wins_over_the_file(tmp_path, server_url):
    (tmp_path / ".env").write_text(f"SOCIOLAB_TEST_KEY={WRONG}\n")
    done = run_in(tmp_path, server_url, env={"SOCIOLAB_TEST_KEY": KEY})
    assert done.returncode == 0, done.stderr


def test_env_file_option_reads_another_file(tmp_path, server_url):
    elsewhere = tmp_path / "secrets"
    elsewhere.mkdir()
    (elsewhere / "keys.env").write_text(f"export SOCIOLAB_TEST_KEY='{KEY}'\n")
    (tmp_path / ".env").write_text(f"SOCIOLAB_TEST_KEY={WRONG}\n")
    done = run_in(tmp_path, server_url, "--env-file", str(elsewhere / "keys.env"))
    assert done.returncode == 0, done.stderr


def test_a_wrong_key_from_the_file_is_refused_and_never_shown(tmp_path, server_url):
    (tmp_path / ".env").write_text(f"SOCIOLAB_TEST_KEY={WRONG}\n")
    done = run_in(tmp_path, server_url)
    assert done.returncode != 0
    everything = done.stdout + done.stderr + stored_text(tmp_path)
    assert WRONG not in everything and WRONG[:20] not in everything, everything[-2000:]


def test_a_missing_env_file_is_one_line(tmp_path):
    done = cli("--env-file", str(tmp_path / "nope.env"), "list")
    assert done.returncode == 2 and done.stderr.strip() == f"error: --env-file {tmp_path / 'nope.env'}: no such file"

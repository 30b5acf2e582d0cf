"""Shared test helpers: scenario files in tmp dirs, runs into real DuckDB files, CLI subprocesses."""

from __future__ import annotations

import os

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")  # before anything imports litellm
os.environ.setdefault("LITELLM_OFFLINE_MODE", "true")

import subprocess
import sys
import textwrap
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"


# The smallest useful run file: a two-agent, two-round discussion on sim stand-ins.
TINY_DISCUSSION = """
name: t
kind: discussion
seed: 3
agents:
  roster: warroom
  only: [llama, kimi]
params:
  seed_message: "@all We need a plan for a food delivery app."
  rounds: 2
sim: {stand_ins: true}
"""


def tables(db: Path, queries: dict[str, str]) -> dict[str, list]:
    """Each query's rows from a DuckDB file opened read-only: what two runs are compared on."""
    import duckdb

    with duckdb.connect(str(db), read_only=True) as con:
        return {name: con.execute(sql).fetchall() for name, sql in queries.items()}


def write_yaml(directory: Path, text: str, name: str = "scenario.yaml") -> Path:
    path = directory / name
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def cli(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None) -> subprocess.CompletedProcess:
    """Run `sociolab ARGS` in a real subprocess."""
    full_env = {**os.environ, "COLUMNS": "200", **(env or {})}
    return subprocess.run([sys.executable, "-m", "sociolab", *args], cwd=cwd or REPO,
                          capture_output=True, text=True, timeout=timeout, env=full_env)

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
# The WarRoom corpus (208 transcripts): tests that need all of it skip when it is absent.
WARROOM_TRANSCRIPTS = Path(os.environ.get("SOCIOLAB_WARROOM_DIR") or SHARED / "datasets/warroom/transcripts")


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


# Many CLI invocations in one real process tree: the driver imports sociolab once, then forks a
# child per command (its own cwd, stdout, stderr, exit code and a time limit), so a table of bad
# inputs costs a fork each instead of a Python start-up each.
_FORK_DRIVER = r"""
import json, os, signal, sys, traceback
from sociolab.cli import main
import sociolab.orchestrator.store, sociolab.config  # warm the imports every command needs

results = []
for argv, cwd, limit in json.loads(sys.stdin.read()):
    out_path, err_path = os.path.join(cwd, ".out"), os.path.join(cwd, ".err")
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.chdir(cwd)
        for fd, path in ((1, out_path), (2, err_path)):
            target = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC)
            os.dup2(target, fd)
        signal.alarm(limit)
        code = 0
        try:
            main(argv)
        except SystemExit as exc:
            code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
        except BaseException:
            traceback.print_exc()
            code = 99
        sys.stdout.flush(); sys.stderr.flush()
        os._exit(code)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    texts = []
    for path in (out_path, err_path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            texts.append(fh.read())
        os.unlink(path)
    results.append([code, *texts])
print(json.dumps(results))
"""


def cli_batch(cases: list[tuple[list[str], Path]], limit: int = 60) -> list[subprocess.CompletedProcess]:
    """Run `sociolab ARGV` in directory CWD for each case, each in its own forked process."""
    import json

    payload = json.dumps([[list(argv), str(cwd), limit] for argv, cwd in cases])
    env = {**os.environ, "COLUMNS": "200"}
    done = subprocess.run([sys.executable, "-c", _FORK_DRIVER], input=payload, capture_output=True, text=True,
                          cwd=REPO, env=env, timeout=limit * len(cases) + 60)
    assert done.returncode == 0, done.stderr[-3000:]
    return [subprocess.CompletedProcess(argv, code, out, err)
            for (argv, _), (code, out, err) in zip(cases, json.loads(done.stdout))]


def recording_provider(prefix: str, answer):
    """An in-process provider for tests: serves the models named `<prefix>...`, answers
    `answer(request)` (a ProviderReply, or its text), and keeps every request in `.requests`."""
    from sociolab.orchestrator.provider import ProviderDefaults, ProviderReply

    class RecordingProvider(ProviderDefaults):
        name = "recording"

        def __init__(self) -> None:
            self.requests: list = []

        def serves(self, model, endpoint):
            return model.startswith(prefix)

        def in_process(self, model, endpoint):
            return True

        async def complete(self, request):
            self.requests.append(request)
            reply = answer(request)
            return reply if isinstance(reply, ProviderReply) else ProviderReply(text=reply)

    return RecordingProvider()


def assert_files_refused(tmp_path: Path, files: list[tuple[str, str]]) -> None:
    """Each (run-file text, words) case, run by `sociolab run` in its own folder, is refused with
    one line naming the file and holding `words`, exit 2, no traceback."""
    cases = []
    for i, (text, _) in enumerate(files):
        where = tmp_path / f"c{i}"
        where.mkdir()
        write_yaml(where, text, "bad.yaml")
        cases.append((["run", "bad.yaml", "--db", "x.duckdb", "--quiet"], where))
    for done, (_, words) in zip(cli_batch(cases), files):
        assert done.returncode == 2, (words, done.stdout, done.stderr)
        assert words in done.stderr and "bad.yaml" in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1

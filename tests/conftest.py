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


def cli(*args: str, cwd: Path | None = None, timeout: float = 120, env: dict | None = None,
        unset: tuple[str, ...] = ()) -> subprocess.CompletedProcess:
    """Run `sociolab ARGS` in its own process, with this process's environment plus ENV minus
    UNSET: a child forked from this test worker's CLI server (below), or a fresh `python -m
    sociolab` when SOCIOLAB_TEST_SPAWN=1 or when ENV changes PYTHONPATH (read only at start-up)."""
    full_env = {k: v for k, v in {**os.environ, "COLUMNS": "200", **(env or {})}.items() if k not in unset}
    if os.environ.get("SOCIOLAB_TEST_SPAWN") == "1" or full_env.get("PYTHONPATH") != os.environ.get("PYTHONPATH"):
        return subprocess.run([sys.executable, "-m", "sociolab", *args], cwd=cwd or REPO,
                              capture_output=True, text=True, timeout=timeout, env=full_env)
    return _cli_server().call(list(args), cwd or REPO, full_env, timeout)


# A CLI server per test worker: one interpreter that imports sociolab and litellm once (litellm
# alone takes 4-5 s of CPU to import), then forks a child per `cli()` call. The child is a real
# process running the CLI's `main`: its own environment, folder, stdin (/dev/null), stdout,
# stderr, exit code and time limit (SIGALRM), and the copy-on-write memory of a clean parent that
# has run no command.
_CLI_SERVER = r"""
import json, os, signal, sys, traceback
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
from sociolab.cli import main
import sociolab.orchestrator.store, sociolab.config, sociolab.api
from sociolab.orchestrator.litellm_boot import get_litellm
get_litellm()
scratch = sys.argv[1]
for line in sys.stdin:
    argv, cwd, env, limit = json.loads(line)
    out_path, err_path = os.path.join(scratch, "out"), os.path.join(scratch, "err")
    sys.stdout.flush(); sys.stderr.flush()
    pid = os.fork()
    if pid == 0:
        os.environ.clear(); os.environ.update(env)
        os.chdir(cwd)
        sys.argv = ["sociolab", *argv]
        null = os.open(os.devnull, os.O_RDONLY)
        os.dup2(null, 0)
        for fd, path in ((1, out_path), (2, err_path)):
            os.dup2(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), fd)
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
    texts = []
    for path in (out_path, err_path):
        with open(path, encoding="utf-8", errors="replace") as fh:
            texts.append(fh.read())
    sys.stdout.write(json.dumps([os.waitstatus_to_exitcode(status), *texts]) + "\n")
    sys.stdout.flush()
"""


class _CliServer:
    """The per-worker CLI server's process and its one-line-per-call JSON protocol."""

    def __init__(self) -> None:
        import tempfile

        self.scratch = tempfile.mkdtemp(prefix="sociolab-cli-")
        self.proc: subprocess.Popen | None = None

    def _started(self) -> subprocess.Popen:
        if self.proc is None or self.proc.poll() is not None:
            self.proc = subprocess.Popen([sys.executable, "-c", _CLI_SERVER, self.scratch], cwd=REPO,
                                         stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                         env={**os.environ, "COLUMNS": "200"})
        return self.proc

    def call(self, argv: list[str], cwd: Path, env: dict, timeout: float) -> subprocess.CompletedProcess:
        import json

        proc = self._started()
        assert proc.stdin is not None and proc.stdout is not None
        proc.stdin.write(json.dumps([argv, str(cwd), env, max(1, int(timeout))]) + "\n")
        proc.stdin.flush()
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError(f"the test CLI server died running sociolab {argv}")
        code, out, err = json.loads(line)
        if code == -14:  # SIGALRM: the time limit, as subprocess.run's timeout would say
            raise subprocess.TimeoutExpired(["sociolab", *argv], timeout, out, err)
        return subprocess.CompletedProcess(["sociolab", *argv], code, out, err)


_server: _CliServer | None = None


def _cli_server() -> _CliServer:
    global _server
    if _server is None:
        _server = _CliServer()
    return _server


def cli_batch(cases: list[tuple[list[str], Path]], limit: int = 60) -> list[subprocess.CompletedProcess]:
    """Run `sociolab ARGV` in directory CWD for each case, each in its own process forked from
    this worker's CLI server (a table of bad inputs costs a fork each, not a Python start-up)."""
    env = {**os.environ, "COLUMNS": "200"}
    return [_cli_server().call(list(argv), cwd, env, limit) for argv, cwd in cases]


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

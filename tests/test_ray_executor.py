"""`sociolab run --executor ray` (sociolab/ray_executor.py) on a real Ray cluster on loopback: a
head node and a worker node, each its own `ray start` process tree (tests/ray_cluster.py).

The same suite run by the local executor and by Ray gives identical tables (Ray's shards read
with the file, then merged into it); a worker node killed mid-suite, then a rerun, gives them
too, as does Ctrl-C then a rerun; and one rate limit holds across the workers, measured as
requests per second at a loopback OpenAI server.
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import REPO, TINY_DISCUSSION, cli, write_yaml
from tests.ray_cluster import RAY_ENV, RayCluster
from tests.test_shards import file_only, snapshot
from tests.wire import Fault, Reply
from tests.wire.families import PLANTED_KEY, family

pytest.importorskip("ray")
# One cluster at a time on a 2-core machine: every test here runs on the same xdist worker.
pytestmark = pytest.mark.xdist_group("ray")

LONG_SUITE = """
name: many
kind: discussion
seed: 5
concurrency: 4
agents: {roster: warroom}
params: {seed_message: "@all We need a plan for a food delivery app.", rounds: 3}
sim: {stand_ins: true}
series:
  A: {runs: 16}
  B: {runs: 16}
"""


@pytest.fixture(scope="module")
def cluster():
    with RayCluster(worker_nodes=1) as c:
        yield c


def small_suite(folder: Path) -> Path:
    return write_yaml(folder, TINY_DISCUSSION + "series:\n  A: {runs: 3}\n  B: {runs: 2}\n")


def on_ray(path: Path, db: Path, *extra: str) -> subprocess.CompletedProcess:
    return cli("run", str(path), "--db", str(db), "-q", "--executor", "ray", *extra, env=RAY_ENV, timeout=240)


def local_tables(path: Path, db: Path) -> dict:
    assert cli("run", str(path), "--db", str(db), "-q").returncode == 0
    return file_only(db)


def runs_started(log: Path) -> int:
    return len(re.findall(r"run \S+ started", log.read_text())) if log.exists() else 0


def test_the_cluster_plays_the_suite_into_shards_equal_to_the_local_executors_tables(tmp_path, cluster):
    path = small_suite(tmp_path)
    expected = local_tables(path, tmp_path / "local.duckdb")
    db = tmp_path / "ray.duckdb"
    done = on_ray(path, db, "--address", cluster.address, "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert "5 planned: 5 completed" in done.stdout
    assert file_only(db)["runs"] == []                       # the file itself is never written
    assert len(list((tmp_path / "ray.duckdb.shards/manifest").glob("*.json"))) == 5
    assert snapshot(db) == expected                          # the file plus its shards, as sociolab reads it
    played = [runs_started(tmp_path / f"ray.worker-{i}.log") for i in (0, 1)]
    assert sum(played) == 5 and min(played) >= 1, played     # both workers, one on each node, played runs
    again = on_ray(path, db, "--address", cluster.address)
    assert again.returncode == 0 and "resuming: 5 of 5 runs already complete" in again.stdout, again.stdout
    assert cli("merge", "--db", str(db)).returncode == 0
    assert file_only(db) == expected


def test_without_an_address_a_cluster_is_started_here(tmp_path):
    path = small_suite(tmp_path)
    expected = local_tables(path, tmp_path / "local.duckdb")
    done = on_ray(path, tmp_path / "ray.duckdb", "--workers", "2")
    assert done.returncode == 0, done.stderr
    assert snapshot(tmp_path / "ray.duckdb") == expected


def test_one_rate_limit_holds_across_the_workers(tmp_path, cluster):
    """10 requests/s for the OpenAI group, 2 workers playing 2 runs each: a limit per worker
    would let 40 through in two seconds."""
    openai = family("openai")
    arrivals: list[float] = []

    def respond(view):
        arrivals.append(time.monotonic())
        return Reply(text="Agreed, let's split the work.")

    with openai.server(responder=respond) as srv:
        persona = "{{key: {k}, model: openai/gpt-4o, api_base: '" + srv.url + "', api_key_env: SOCIOLAB_WIRE_KEY}}"
        path = write_yaml(tmp_path, f"""
            name: paced
            concurrency: 4
            agents: {{personas: [{persona.format(k='a')}, {persona.format(k='b')}, {persona.format(k='c')}]}}
            params: {{seed_message: "@all plan the launch", rounds: 3, stagger_ms: 0}}
            client: {{models: {{"openai/*": {{requests_per_period: 10, period_s: 1.0, in_flight: 8}}}}}}
            series: {{A: {{runs: 4}}}}
            """)
        done = cli("run", str(path), "--db", str(tmp_path / "p.duckdb"), "--executor", "ray",
                   "--address", cluster.address, "--workers", "2",
                   env={**RAY_ENV, "SOCIOLAB_WIRE_KEY": PLANTED_KEY}, timeout=240)
    assert done.returncode == 0, done.stderr
    played = [runs_started(tmp_path / f"p.worker-{i}.log") for i in (0, 1)]
    assert min(played) >= 1, played
    # The workers' tallies, aggregated into the parent's progress display: the store's totals.
    tokens, cost = cli("sql", "SELECT sum(prompt_tokens + completion_tokens), sum(cost_usd) FROM llm_calls",
                       "--db", str(tmp_path / "p.duckdb"), "-f", "csv").stdout.splitlines()[1].split(",")
    shown = re.search(r"all runs .*? 4/4 (36 messages, 0 errors, 36 calls \(0 retries\), ([0-9,]+) tokens, "
                      r"\$([0-9.]+))", done.stdout)
    assert shown, done.stdout
    assert int(shown.group(2).replace(",", "")) == int(tokens) and abs(float(shown.group(3)) - float(cost)) < 5e-5
    arrivals.sort()
    assert len(arrivals) == 4 * 3 * 3
    # The 36 admissions take 3.5 s; their arrivals at least 2.8 s (the first calls of a fresh worker
    # reach the server late, through litellm's cold start); a limit per worker: 1.8 s. Over any 2 s:
    # 20 admitted, and a few more may arrive when a busy machine holds some admitted calls back and
    # sends them together (the limiter admits; the worker's loop and litellm send); per worker: 40.
    assert arrivals[-1] - arrivals[0] >= (36 - 8) / 10
    most = max(sum(1 for t in arrivals if start <= t < start + 2.0) for start in arrivals)
    assert most <= 30, most


def wait_for_shards(db: Path, at_least: int, proc: subprocess.Popen | None = None, timeout: float = 120) -> int:
    manifest = Path(str(db) + ".shards") / "manifest"
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        n = len(list(manifest.glob("*.json"))) if manifest.exists() else 0
        if n >= at_least:
            return n
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"the run ended before {at_least} shards: {proc.stderr.read() if proc.stderr else ''}")
        time.sleep(0.02)
    raise TimeoutError(f"fewer than {at_least} shards after {timeout} s")


def ray_process(path: Path, db: Path, address: str) -> subprocess.Popen:
    import os

    return subprocess.Popen([sys.executable, "-m", "sociolab", "run", str(path), "--db", str(db), "-q",
                             "--executor", "ray", "--address", address],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **RAY_ENV})


def test_a_lost_worker_node_or_ctrl_c_then_a_rerun_give_the_local_tables(tmp_path):
    path = write_yaml(tmp_path, LONG_SUITE)
    expected = local_tables(path, tmp_path / "local.duckdb")
    with RayCluster(worker_nodes=1) as cluster:
        killed = tmp_path / "killed.duckdb"
        proc = ray_process(path, killed, cluster.address)
        shards_then = wait_for_shards(killed, 3, proc)
        cluster.kill_worker_node()
        out, err = proc.communicate(timeout=240)
        assert shards_then < 32, "the kill should land mid-suite"
        assert proc.returncode in (0, 1), err                # the head's worker plays what the lost one held
        assert "Traceback" not in err
        assert on_ray(path, killed, "--address", cluster.address).returncode == 0
        assert snapshot(killed) == expected

        stopped = tmp_path / "stopped.duckdb"
        proc = ray_process(path, stopped, cluster.address)
        wait_for_shards(stopped, 3, proc)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=120)
        assert proc.returncode == 130, err
        assert "Traceback" not in err and "interrupted" in err.lower(), err
        assert on_ray(path, stopped, "--address", cluster.address).returncode == 0
        assert snapshot(stopped) == expected


def test_bad_executor_options_are_one_line(tmp_path):
    path = small_suite(tmp_path)
    for args, words in ((["--executor", "dask"], "--executor dask: give local or ray"),
                        (["--address", "127.0.0.1:1"], "--address and --workers go with --executor ray"),
                        (["--executor", "ray", "--workers", "0"], "--workers"),
                        (["--executor", "ray", "--address", "127.0.0.1:9"], "no Ray cluster answers there"),
                        (["--executor", "ray", "--address", "nohost"], "give HOST:PORT")):
        done = cli("run", str(path), "--db", str(tmp_path / "x.duckdb"), *args, env=RAY_ENV, timeout=60)
        assert done.returncode == 2 and words in done.stderr and "Traceback" not in done.stderr, done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert not (tmp_path / "x.duckdb").exists()


def test_max_cost_holds_for_the_cluster_and_a_higher_budget_finishes(tmp_path, cluster):
    """Priced calls (gpt-4o at litellm's prices) on 2 workers: the budget is the cluster's, so
    the runs stop near it, not near twice it; a rerun with more finishes what was left."""
    openai = family("openai")
    with openai.server(responder=lambda view: Reply(text="Agreed, let's split the work.")) as srv:
        persona = "{{key: {k}, model: openai/gpt-4o, api_base: '" + srv.url + "', api_key_env: SOCIOLAB_WIRE_KEY}}"
        path = write_yaml(tmp_path, f"""
            name: budgeted
            concurrency: 2
            agents: {{personas: [{persona.format(k='a')}, {persona.format(k='b')}]}}
            params: {{seed_message: "@all plan the launch", rounds: 3, stagger_ms: 0}}
            series: {{A: {{runs: 8}}}}
            """)
        db = tmp_path / "b.duckdb"
        env = {**RAY_ENV, "SOCIOLAB_WIRE_KEY": PLANTED_KEY}
        args = ["run", str(path), "--db", str(db), "-q", "--executor", "ray", "--address", cluster.address,
                "--workers", "2"]
        spent = cli(*args, "--max-cost", "0.0015", env=env, timeout=240)
        assert spent.returncode == 1, spent.stderr
        assert "budget of $0.0015 reached" in spent.stderr, spent.stderr
        told = float(re.search(r"spent \$([0-9.]+) of its", spent.stdout).group(1))
        done = cli("sql", "SELECT count(*) FROM runs WHERE status = 'completed'", "--db", str(db), "-f", "csv")
        assert int(done.stdout.splitlines()[1]) < 8     # an unfinished run is never published
        # $0.00015-0.00028 a call, $0.0104 for all 48. The cluster's budget stops at $0.0015 plus
        # the calls in flight (4 at most: 2 runs x 2 agents), as the local executor does ($0.0026
        # for this file); a budget per worker would let each spend $0.0015: $0.003 or more in all.
        assert 0.0015 <= told < 0.003, told
        srv.push(Fault(429, retry_after=0.2))  # a worker's retry wait, shown by the parent as it starts
        finished = cli(*[a for a in args if a != "-q"], "--max-cost", "1", env=env, timeout=240)
        assert finished.returncode == 0, finished.stderr
        assert re.search(r"waiting \d+\.\d s: 429 from 127\.0\.0\.1:\d+ \(openai/gpt-4o\)", finished.stdout), \
            finished.stdout
    runs = cli("sql", "SELECT count(*) FROM runs WHERE status = 'completed'", "--db", str(db), "-f", "csv")
    assert runs.stdout.splitlines()[1] == "8"


def test_without_ray_installed_the_executor_is_one_line(tmp_path):
    blocker = tmp_path / "no_ray"
    (blocker / "ray").mkdir(parents=True)
    (blocker / "ray/__init__.py").write_text("raise ImportError('No module named ray')\n")
    path = small_suite(tmp_path)
    import os

    done = cli("run", str(path), "--db", str(tmp_path / "x.duckdb"), "--executor", "ray",
               env={"PYTHONPATH": os.pathsep.join(p for p in (str(blocker), os.environ.get("PYTHONPATH", "")) if p)})
    assert done.returncode == 2 and "pip install 'sociolab[ray]'" in done.stderr, done.stderr
    assert len(done.stderr.strip().splitlines()) == 1 and not (tmp_path / "x.duckdb").exists()


def test_a_key_refused_in_a_worker_is_one_line_for_the_user(tmp_path, cluster):
    """The worker's UserError crosses Ray as the user's one line, not Ray's wrapper and traceback."""
    openai = family("openai")
    with openai.server() as srv:
        path = write_yaml(tmp_path, f"""
            name: refused
            agents: {{personas: [{{key: a, model: openai/gpt-4o, api_base: '{srv.url}', api_key_env: SOCIOLAB_WIRE_KEY}},
                                 {{key: b, model: openai/gpt-4o, api_base: '{srv.url}', api_key_env: SOCIOLAB_WIRE_KEY}}]}}
            params: {{seed_message: "@all plan the launch", rounds: 1}}
            client: {{max_attempts: 1}}
            series: {{A: {{runs: 2}}}}
            """)
        done = cli("run", str(path), "--db", str(tmp_path / "k.duckdb"), "-q", "--executor", "ray",
                   "--address", cluster.address, env={**RAY_ENV, "SOCIOLAB_WIRE_KEY": "sk-wrong-key-0000000000"},
                   timeout=240)
    assert done.returncode == 2, done.stderr
    assert "refused the API key" in done.stderr and "Traceback" not in done.stderr and "Ray" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1, done.stderr

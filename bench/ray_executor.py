"""Ray executor vs the local executor, same suite, same machine, same run of this script.

    python bench/ray_executor.py [--runs 96] [--reps 1]

1. A CPU-bound sim suite (7 stand-ins x 6 rounds x RUNS runs), run as a child process by the
   local executor (the baseline: one process), then with `--executor ray --workers 2` against a
   loopback cluster of two nodes (head + worker node, 1 CPU each: two worker processes), then
   with `--executor ray --workers 2` starting its own cluster. Prints wall times and the
   speed-up ratios against the baseline.
2. The population scenario, 100,000 sim agents x 10 ticks: one run (one worker plays it: the
   executor parallelises runs, not one population; docs/scale.md), then POPULATION_RUNS runs
   (CPU-heavy runs, the case two worker processes can split).
3. The shared limiter's cost: admissions (slot and pace, then leave) per second from 2 workers at once,
   with no rate set (the ceiling the limiter itself puts on calls a cluster can make).

Nothing asserts; the ratios are measured here, in one run.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import tempfile
import time
from pathlib import Path

import _common
from _common import machine, median, table, verdict
from _proc import run as run_child, sociolab_cmd

SUITE = """\
name: bench-ray
kind: discussion
seed: 5
concurrency: 8
agents: {{roster: warroom}}
params: {{seed_message: "@all We need a plan for a food delivery app.", rounds: 6}}
sim: {{stand_ins: true}}
series:
  A: {{runs: {half}}}
  B: {{runs: {half}}}
"""

POPULATION = """\
name: bench-ray-population
kind: population
seed: 7
agents: {{personas: [{{key: molt, model: sim/molt}}]}}
params: {{agents: sim_population, size: 100000, ticks: 10, active_share: 0.1}}
series: {{A: {{runs: {runs}}}}}
"""


def timed(cmd: list[str], env: dict) -> tuple[float, int, str]:
    done = run_child(cmd, env=env)
    return done.wall_s, done.rc, done.stderr[-400:]


def limiter_cycles(address: str, seconds: float = 3.0) -> float:
    """Slot + pace cycles per second through the SharedLimiter, from 2 worker actors at once."""
    import ray

    from sociolab.orchestrator.client import ModelLimits
    from sociolab.ray_executor import ClusterGroup, SharedLimiter

    ray.init(address=address, log_to_driver=False, configure_logging=False)
    try:
        limiter = ray.remote(num_cpus=0)(SharedLimiter).remote()

        @ray.remote(num_cpus=1)
        class Caller:
            async def cycles(self, name: str, limiter, seconds: float) -> int:
                group = ClusterGroup(name, "model:openai/x", ModelLimits(in_flight=64), limiter)
                n, end = 0, time.monotonic() + seconds

                async def one() -> None:
                    nonlocal n
                    while time.monotonic() < end:
                        async with group.admitted():
                            pass
                        n += 1

                await asyncio.gather(*(one() for _ in range(16)))  # 16 calls in flight per worker
                return n

        callers = [Caller.remote() for _ in range(2)]
        ray.get([c.cycles.remote(f"w{i}", limiter, 0.2) for i, c in enumerate(callers)])  # warm
        counts = ray.get([c.cycles.remote(f"w{i}", limiter, seconds) for i, c in enumerate(callers)])
        return sum(counts) / seconds
    finally:
        ray.shutdown()


def main() -> None:
    from tests.ray_cluster import RAY_ENV, RayCluster

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=96)
    ap.add_argument("--reps", type=int, default=1)
    ap.add_argument("--population-runs", type=int, default=40)
    args = ap.parse_args()
    cmd = sociolab_cmd()
    env = {**os.environ, **RAY_ENV}
    print(f"ray_executor: {machine()}")
    rows = []
    with tempfile.TemporaryDirectory(prefix="sociolab-bench-ray-") as d:
        tmp = Path(d)
        suite = tmp / "suite.yaml"
        suite.write_text(SUITE.format(half=args.runs // 2))
        population = tmp / "population.yaml"
        with RayCluster(worker_nodes=1) as cluster:
            walls: dict[str, list[float]] = {"local": [], "cluster": [], "started": []}
            for rep in range(args.reps):
                base = [*cmd, "run", str(suite), "-q"]
                for name, extra in (("local", []),
                                    ("cluster", ["--executor", "ray", "--workers", "2", "--address", cluster.address]),
                                    ("started", ["--executor", "ray", "--workers", "2"])):
                    wall, rc, err = timed([*base, "--db", str(tmp / f"{name}{rep}.duckdb"), *extra], env)
                    if rc != 0:
                        raise SystemExit(f"{name} failed ({rc}): {err}")
                    walls[name].append(wall)
            local = median(walls["local"])
            for name, label in (("local", "local executor (baseline)"),
                                ("cluster", "ray, 2 workers, loopback cluster (head + worker node)"),
                                ("started", "ray, 2 workers, cluster started by the command")):
                wall = median(walls[name])
                rows.append([f"suite {args.runs} runs: {label}", f"{wall:.1f}", f"{local / wall:.2f}x"])
            for runs in (1, args.population_runs):
                population.write_text(POPULATION.format(runs=runs))
                pop = {}
                for name, extra in (("local", []), ("cluster", ["--executor", "ray", "--workers", "2",
                                                                "--address", cluster.address])):
                    wall, rc, err = timed([*cmd, "run", str(population), "-q",
                                           "--db", str(tmp / f"pop{runs}-{name}.duckdb"), *extra], env)
                    if rc != 0:
                        raise SystemExit(f"population {name} failed ({rc}): {err}")
                    pop[name] = wall
                what = f"population 100,000 x 10 ticks, {runs} run{'s' if runs > 1 else ''}"
                rows.append([f"{what}: local executor (baseline)", f"{pop['local']:.1f}", "1.00x"])
                rows.append([f"{what}: ray, 2 workers, loopback cluster", f"{pop['cluster']:.1f}",
                             f"{pop['local'] / pop['cluster']:.2f}x"])
                if runs > 1:
                    heavy = pop["local"] / pop["cluster"]
            os.environ.update(RAY_ENV)
            cycles = limiter_cycles(cluster.address)
    print(table(["what", "wall s", "speed-up vs local"], rows))
    print(f"shared limiter: {cycles:,.0f} call admissions/s from 2 workers x 16 in flight "
          f"(one awaited round trip to admit, one sent to leave, {1000 * 32 / cycles:.1f} ms per admission "
          "with 32 waiting)")
    print(verdict("ray on 2 worker processes faster than the local executor, CPU-heavy runs (population)",
                  f"{heavy:.2f}x", heavy > 1.0))
    light = local / median(walls["cluster"])
    print(verdict("the same for light runs (the discussion suite: Ray's per-run and start-up costs)",
                  f"{light:.2f}x", light > 1.0))


if __name__ == "__main__":
    main()

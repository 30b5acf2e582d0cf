"""Target: the provider interface adds no measurable cost on the in-process sim path.

The same discussion suite (7 sim agents, 20 rounds, several runs) goes through the real runner
into a real DuckDB file, once with this tree and once with the tree before the provider
interface (a git worktree of `--baseline-ref`, default a015741), alternately, each in a fresh
subprocess; the per-message time is the median over repetitions. Target: ratio <= 1.05 (the
noise of this measurement on a shared 2-core machine is a few percent).

The litellm half of the target (the client within 10% of bare `litellm.acompletion` against the
same loopback server) is measured by bench/client_overhead.py.

    python bench/provider_interface.py [--runs 6] [--rounds 20] [--reps 5] [--baseline-ref a015741]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import _common  # noqa: F401
from _common import machine, median, table, verdict

REPO = Path(__file__).resolve().parents[1]
TARGET = 1.05

SUITE = """\
name: bench-provider
kind: discussion
seed: 5
repeats: {runs}
concurrency: 2
agents:
  roster: warroom
  exclude: [deepseek]
params:
  seed_message: "@all We have a client who wants a food delivery app. Budget: EUR50k, 3 months."
  rounds: {rounds}
sim:
  stand_ins: true
"""

MEASURE = """
import asyncio, json, sys, time
from sociolab.config import load_plan
from sociolab.runner import execute
from sociolab.orchestrator.store import Store
plan = load_plan(sys.argv[1])
store = Store.open(sys.argv[2])
t0 = time.perf_counter()
asyncio.run(execute(plan, store))
elapsed = time.perf_counter() - t0
n = store.con.execute("SELECT count(*) FROM messages WHERE round IS NOT NULL").fetchone()[0]
store.close()
print(json.dumps({"seconds": elapsed, "messages": n}))
"""


def baseline_tree(ref: str, where: Path) -> Path:
    subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", "-f", str(where), ref],
                   check=True, capture_output=True)
    return where


def measure(tree: Path, plan: Path, db: Path) -> float:
    """Milliseconds per stored message for one suite run with the code of `tree`."""
    db.unlink(missing_ok=True)
    env = {**os.environ, "PYTHONPATH": str(tree), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    out = subprocess.run([sys.executable, "-c", MEASURE, str(plan), str(db)], cwd=tree, env=env,
                         capture_output=True, text=True, check=True)
    result = json.loads(out.stdout.strip().splitlines()[-1])
    return 1000 * result["seconds"] / result["messages"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=6)
    ap.add_argument("--rounds", type=int, default=20)
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-ref", default="a015741", help="the commit before the provider interface")
    args = ap.parse_args()
    print(f"provider_interface: {machine()}")
    with tempfile.TemporaryDirectory() as tmp:
        tmpdir = Path(tmp)
        plan = tmpdir / "suite.yaml"
        plan.write_text(SUITE.format(runs=args.runs, rounds=args.rounds), encoding="utf-8")
        old = baseline_tree(args.baseline_ref, tmpdir / "baseline")
        try:
            now_ms, old_ms = [], []
            for rep in range(args.reps):
                pair = [(REPO, now_ms), (old, old_ms)]
                for tree, sink in (pair if rep % 2 == 0 else pair[::-1]):
                    sink.append(measure(tree, plan, tmpdir / "bench.duckdb"))
        finally:
            subprocess.run(["git", "-C", str(REPO), "worktree", "remove", "--force", str(old)], capture_output=True)
    now, before = median(now_ms), median(old_ms)
    print(table(["tree", "ms/message (median)", "all reps"],
                [["this tree", f"{now:.3f}", " ".join(f"{x:.3f}" for x in now_ms)],
                 [f"baseline {args.baseline_ref}", f"{before:.3f}", " ".join(f"{x:.3f}" for x in old_ms)]]))
    ratio = now / before
    print(verdict(f"in-process sim per message <= {TARGET:.2f}x the baseline", f"{ratio:.3f}x", ratio <= TARGET))


if __name__ == "__main__":
    main()

"""Targets (issue 16): a population of 100,000 sim agents x 10 ticks end to end on this machine
(time, peak RSS), and the population analysis (roles, cascades, adoption, tasks) over 10 million
stored actions in under 10 s.

    sociolab run FILE --db TMP --quiet        (agents: sim_population, 100,000 agents, 10 ticks)
    sociolab population --db TMP --json       (over a store of ~10M actions)

each as a measured child process. In-run baselines: the same file with 1,000 agents (start-up,
imports, DB creation: what every invocation pays), and `sociolab population` over that small store.

    python bench/population.py [--big-size 1000000]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common
from _common import machine, table, verdict
from _proc import run, run_file, sociolab_cmd

TARGET_ANALYSIS_S = 10.0
FILE = """name: bench-population
kind: population
seed: 1
agents:
  personas: [{{key: molt, model: sim/molt}}]
params: {{agents: sim_population, size: {size}, ticks: 10, active_share: {share}}}
"""


def actions(db: Path) -> int:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    n = con.execute("SELECT count(*) FROM actions").fetchone()[0]
    con.close()
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--big-size", type=int, default=1_800_000, help="population of the 10M-action store")
    args = ap.parse_args()
    cmd = sociolab_cmd()
    print(machine())
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        measured = {}
        for label, size, share in (("baseline 1,000 agents", 1_000, 0.1), ("100,000 agents", 100_000, 0.1),
                                   (f"{args.big_size:,} agents (10M-action store)", args.big_size, 1.0)):
            f = d / f"p{size}.yaml"
            f.write_text(FILE.format(size=size, share=share))
            db = d / f"p{size}.duckdb"
            m = run_file(cmd, f, db)
            measured[size] = (m, db)
            rows.append([f"run {label}", f"{m.wall_s:.2f}", f"{m.max_rss_mb:.0f}", f"{actions(db):,}"])
        analysed = {}
        for size in (1_000, args.big_size):
            m = run(cmd + ["population", "--db", str(measured[size][1]), "--json"])
            if m.rc != 0:
                raise SystemExit(f"`sociolab population` failed:\n{m.stderr[-2000:]}")
            analysed[size] = m
            rows.append([f"population over {size:,} agents' store", f"{m.wall_s:.2f}", f"{m.max_rss_mb:.0f}",
                         f"{actions(measured[size][1]):,}"])
    print(table(["step", "wall s", "peak RSS MB", "actions"], rows))
    base, big = measured[1_000][0], measured[100_000][0]
    print(f"100,000 agents x 10 ticks: {big.wall_s:.2f} s, {big.max_rss_mb:.0f} MB; net of the 1,000-agent "
          f"baseline {big.wall_s - base.wall_s:.2f} s ({big.wall_s / base.wall_s:.1f}x)")
    a_base, a_big = analysed[1_000], analysed[args.big_size]
    print(verdict(f"analysis over ~10M actions < {TARGET_ANALYSIS_S:.0f} s",
                  f"{a_big.wall_s:.2f} s (start-up baseline {a_base.wall_s:.2f} s)", a_big.wall_s < TARGET_ANALYSIS_S))


if __name__ == "__main__":
    _common  # noqa: B018 (bench/_common sets up the path)
    main()

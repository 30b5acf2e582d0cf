"""Target: the 12-series suite with `--sim` runs in under 60 s wall, with peak memory under 300 MB.

    sociolab run scenarios/library/warroom.yaml --sim --db TMP --quiet

runs as a child process; wall time and its own peak RSS (os.wait4 ru_maxrss) are measured. The
in-run baseline is a trivial single-run file (7 sim agents, 1 round) run the same way: the
start-up cost (imports, DB creation) that every invocation pays. Also prints messages/second.

    python bench/suite_sim.py [--reps 2] [--suite scenarios/library/warroom.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common
from _common import machine, median, table, verdict
from _proc import run_file, sociolab_cmd

TARGET_WALL_S = 60.0
TARGET_RSS_MB = 300.0

TRIVIAL = """\
name: bench-trivial
kind: discussion
seed: 1
agents:
  roster: warroom
  exclude: [deepseek]
params:
  seed_message: "@all We need a food delivery app for a city of 500k. Budget EUR50k, 3 months."
  rounds: 1
sim:
  stand_ins: true
"""


def counts(db: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    out = {"runs": q("SELECT count(*) FROM runs"),
           "completed": q("SELECT count(*) FROM runs WHERE status IN ('completed', 'stopped')"),
           "messages": q("SELECT count(*) FROM messages WHERE sender NOT IN ('user', 'system')"),
           "llm_calls": q("SELECT count(*) FROM llm_calls")}
    con.close()
    return out


def measure(cmd: list[str], file: Path, db: Path):
    return run_file(cmd, file, db, "--sim"), counts(db)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(_common.ROOT / "scenarios/library/warroom.yaml"))
    ap.add_argument("--reps", type=int, default=2, help="suite runs (each into a fresh DB); median reported")
    ap.add_argument("--trivial-reps", type=int, default=3)
    args = ap.parse_args()
    cmd = sociolab_cmd()
    print(f"suite_sim: {machine()}; command: {' '.join(cmd)} run ... --sim --quiet")
    with tempfile.TemporaryDirectory(prefix="sociolab-bench-") as d:
        tmp = Path(d)
        trivial = tmp / "trivial.yaml"
        trivial.write_text(TRIVIAL)
        triv = [measure(cmd, trivial, tmp / f"trivial{i}.duckdb") for i in range(args.trivial_reps)]
        suite = [measure(cmd, Path(args.suite), tmp / f"suite{i}.duckdb") for i in range(args.reps)]

    t_wall = median([m.wall_s for m, _ in triv])
    t_rss = max(m.max_rss_mb for m, _ in triv)
    t_msgs = triv[0][1]["messages"]
    s_wall = median([m.wall_s for m, _ in suite])
    s_rss = max(m.max_rss_mb for m, _ in suite)
    c = suite[0][1]
    rows = [["trivial file (1 run x 1 round)", 1, t_msgs, f"{t_wall:.2f}", f"{t_rss:.0f}",
             f"{t_msgs / t_wall:.0f}", "-"],
            [f"suite {Path(args.suite).name}", c["runs"], c["messages"], f"{s_wall:.2f}", f"{s_rss:.0f}",
             f"{c['messages'] / s_wall:.0f}", f"{(c['messages'] - t_msgs) / max(1e-9, s_wall - t_wall):.0f}"]]
    print(table(["what", "runs", "agent msgs", "wall s", "peak RSS MB", "msgs/s", "msgs/s net of start-up"],
                rows))
    print(f"(suite: {c['completed']}/{c['runs']} runs completed or stopped, {c['llm_calls']} LLM calls; "
          f"wall per rep: {', '.join(f'{m.wall_s:.2f}' for m, _ in suite)} s; "
          f"suite / start-up = {s_wall / t_wall:.1f}x, RSS suite / start-up = {s_rss / t_rss:.2f}x)")
    print(verdict(f"suite wall < {TARGET_WALL_S:g} s", f"{s_wall:.1f} s", s_wall < TARGET_WALL_S))
    print(verdict(f"suite peak RSS < {TARGET_RSS_MB:g} MB", f"{s_rss:.0f} MB", s_rss < TARGET_RSS_MB))


if __name__ == "__main__":
    main()

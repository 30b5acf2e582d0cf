"""Target: the social-risk suite, all fifteen RiskLab risks x 3 conditions x 10 repeats (450 runs)
on the sim, runs offline in under 60 s.

    sociolab run scenarios/library/social_risks.yaml --db TMP --quiet

runs as a child process (wall time, runs/s, peak RSS); then the store is read for the runs, calls,
states and detector outcomes, and `sociolab results` gives every risk's rate with its interval
(what a user reads). In-run baseline: a trivial one-run file of the same kind (one risk, one
condition), run the same way, i.e. the start-up cost (imports, DB creation) every invocation pays;
the suite's time net of it is what the 450 runs cost.

    python bench/social_risks.py [--reps 2] [--suite scenarios/library/social_risks.yaml]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import _common
from _common import machine, median, table, verdict
from _proc import run, run_file, sociolab_cmd

TARGET_WALL_S = 60.0
RUNS = 450

TRIVIAL = """\
name: bench-trivial
kind: social_risk
seed: 1
agents:
  personas:
    - {key: s1, model: sim/a}
    - {key: s2, model: sim/b}
    - {key: s3, model: sim/c}
params:
  risk: tacit_collusion
"""


def counts(db: Path) -> dict:
    import duckdb

    con = duckdb.connect(str(db), read_only=True)
    q = lambda sql: con.execute(sql).fetchone()[0]  # noqa: E731
    out = {"runs": q("SELECT count(*) FROM runs"),
           "completed": q("SELECT count(*) FROM runs WHERE status = 'completed'"),
           "calls": q("SELECT count(*) FROM llm_calls"),
           "states": q("SELECT count(*) FROM events WHERE kind = 'env_state'"),
           "risks": q("SELECT count(DISTINCT factors->>'risk') FROM runs"),
           "by_risk": con.execute("""
               SELECT r.factors->>'risk' AS risk, count(DISTINCT r.run_id), avg(o.value), count(o.value)
               FROM runs r LEFT JOIN outcomes o ON o.run_id = r.run_id AND o.metric = 'risk_present'
               GROUP BY 1 ORDER BY 1""").fetchall()}
    con.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--suite", default=str(_common.ROOT / "scenarios/library/social_risks.yaml"))
    ap.add_argument("--reps", type=int, default=2, help="suite runs (each into a fresh DB); median reported")
    ap.add_argument("--trivial-reps", type=int, default=3)
    args = ap.parse_args()
    cmd = sociolab_cmd()
    print(f"social_risks: {machine()}; command: {' '.join(cmd)} run ... --quiet")
    with tempfile.TemporaryDirectory(prefix="sociolab-bench-") as d:
        tmp = Path(d)
        trivial = tmp / "trivial.yaml"
        trivial.write_text(TRIVIAL)
        triv = [run_file(cmd, trivial, tmp / f"trivial{i}.duckdb") for i in range(args.trivial_reps)]
        suite = [run_file(cmd, Path(args.suite), tmp / f"suite{i}.duckdb") for i in range(args.reps)]
        c = counts(tmp / "suite0.duckdb")
        shown = run(cmd + ["results", "--db", str(tmp / "suite0.duckdb"), "--by", "risk",
                           "--metrics", "risk_present"], cwd=_common.ROOT)
    t_wall = median([m.wall_s for m in triv])
    s_wall = median([m.wall_s for m in suite])
    net = max(1e-9, s_wall - t_wall)
    print(table(["what", "runs", "calls", "wall s", "runs/s", "runs/s net of start-up"], [
        ["trivial file (1 run)", 1, "-", f"{t_wall:.2f}", "-", "-"],
        [f"suite {Path(args.suite).name}", c["runs"], c["calls"], f"{s_wall:.2f}", f"{c['runs'] / s_wall:.1f}",
         f"{c['runs'] / net:.1f}"]]))
    print(f"(suite: {c['completed']}/{c['runs']} runs completed over {c['risks']} risks, {c['states']} round states; "
          f"peak RSS {max(m.max_rss_mb for m in suite):.0f} MB; wall per rep: "
          f"{', '.join(f'{m.wall_s:.2f}' for m in suite)} s; suite / start-up = {s_wall / t_wall:.1f}x)")
    print(table(["risk", "runs", "risk_present rate", "decided"],
                [[risk, n, f"{rate:.2f}" if rate is not None else "-", k] for risk, n, rate, k in c["by_risk"]]))
    print(f"`sociolab results --by risk --metrics risk_present`: exit {shown.rc}, "
          f"{len(shown.stdout.splitlines())} lines")
    print(verdict(f"{RUNS} runs (15 risks x 3 conditions x 10) < {TARGET_WALL_S:g} s",
                  f"{c['runs']} runs in {s_wall:.1f} s", s_wall < TARGET_WALL_S and c["runs"] == RUNS
                  and c["completed"] == RUNS))


if __name__ == "__main__":
    main()

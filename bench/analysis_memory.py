"""Benchmark: peak memory of `sociolab analyze` and `sociolab report` as the store grows.

Claim (issue 12, "memory flat in store size"): on a judged store 10x the WarRoom study (and 100x
with --scales 1,10,100), the peak RSS of `analyze --json`, of `report -o` and of `judge --sim`
(on these stores nothing is left to code: it reads, selects nothing and writes nothing) stays
within 1.5x of the figure on the study-sized store (1x).

How it is measured:
- The 1x store is the study's suite on sim stand-ins (scenarios/library/warroom.yaml --sim: 208
  runs, ~16k messages) judged by the sim judges (`sociolab judge --sim`: ~218k code rows). Both
  are real `sociolab` commands, run once and cached in --dir (default: <tmp>/sociolab-bench-
  analysis-memory); delete the folder to rebuild.
- The Nx store is a copy of the 1x store in which every run is replicated N times in SQL, with new
  run ids (`<run_id>/x<k>`, k = 1..N-1; the original runs are kept as they are) and the same
  series, suite and config: runs, agents, messages (message ids `<new run id>#<seq>`), codes, events,
  llm_calls, tool_calls and outcomes are copied with the new run and message ids, so every table
  the analysis reads (and the views over codes) stays consistent. Codebooks are shared.
- Each command runs as a child process (`python -m sociolab ...`); its wall time and peak RSS
  (os.wait4 ru_maxrss of that child only) are taken, median of --reps runs (peak RSS: the max).
  The ratio is Nx / 1x; the verdict is on peak RSS at every scale measured (10x by default).
- The 100x store (20,800 runs, 1.6M messages, 22M codes, ~3.6 GB) takes 2-4 minutes to build,
  once; each command on it takes 20-60 s.

Run: python bench/analysis_memory.py [--dir DIR] [--scales 1,10] [--reps 1]
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
from pathlib import Path

_HERE = Path(__file__).resolve().parent
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != _HERE]
sys.path.insert(0, str(_HERE))
from _common import ROOT, machine, median, table, verdict  # noqa: E402
from _proc import run  # noqa: E402

SUITE = ROOT / "scenarios" / "library" / "warroom.yaml"
RUN = "run_id || '/x{k}' AS run_id"
# message ids are '<run_id>#<seq>': the replica's are '<new run_id>#<seq>'
MSG = "run_id || '/x{k}' || substr(message_id, length(run_id) + 1) AS message_id"
# run-keyed tables and how their ids are rewritten for a replica ({k}: replica number)
COPIES = {
    "runs": RUN,
    "agents": RUN,
    "messages": MSG + ", " + RUN,
    "codes": MSG + ", " + RUN,
    "events": RUN,
    "llm_calls": MSG + ", " + RUN,
    "tool_calls": MSG + ", " + RUN,
    "outcomes": RUN,
}


def env() -> dict[str, str]:
    e = dict(os.environ)
    e["LITELLM_LOCAL_MODEL_COST_MAP"] = "True"
    e["LITELLM_OFFLINE_MODE"] = "true"
    return e


def sociolab(*args: str):
    return run([sys.executable, "-m", "sociolab", *args], cwd=ROOT, env=env())


def must(m, what: str) -> None:
    if m.rc != 0:
        raise SystemExit(f"{what} failed with exit code {m.rc}:\n{m.stderr[-2000:]}")


def build_base(path: Path) -> None:
    if path.exists():
        return
    tmp = path.with_suffix(".building.duckdb")
    tmp.unlink(missing_ok=True)
    print(f"building the 1x store {path} (sim suite + sim judges, once)...", flush=True)
    must(sociolab("run", str(SUITE), "--sim", "--db", str(tmp), "--quiet"), "sociolab run")
    must(sociolab("judge", "--sim", "--db", str(tmp), "--quiet"), "sociolab judge")
    tmp.rename(path)


def in_child(*args: str) -> str:
    """Run this script's --child mode in a child process and return its stdout. DuckDB work stays
    out of this process: on Linux a child's ru_maxrss starts from its parent's peak at fork/exec,
    so a big parent would hide the children's own peaks."""
    m = run([sys.executable, str(Path(__file__).resolve()), "--child", *args], cwd=ROOT, env=env())
    must(m, f"child {' '.join(args)}")
    return m.stdout


def build_scaled(base: Path, path: Path, n: int) -> None:
    if path.exists():
        return
    print(f"building the {n}x store {path} (replicated in SQL)...", flush=True)
    in_child("build", str(base), str(path), str(n))


def child_build(base: Path, path: Path, n: int) -> None:
    import duckdb

    tmp = path.with_suffix(".building.duckdb")
    tmp.unlink(missing_ok=True)
    shutil.copyfile(base, tmp)
    con = duckdb.connect(str(tmp))
    try:
        con.execute("CREATE TEMP TABLE base_runs AS SELECT run_id FROM runs")
        con.execute("BEGIN")
        for k in range(1, n):
            for t, replace in COPIES.items():
                cols = [r[0] for r in con.execute(f"DESCRIBE {t}").fetchall()]
                src = (f"SELECT * REPLACE ({replace.format(k=k)}) FROM {t} "
                       "WHERE run_id IN (SELECT run_id FROM base_runs)")
                con.execute(f"INSERT INTO {t} ({', '.join(cols)}) SELECT {', '.join(cols)} FROM ({src})")
        con.execute("COMMIT")
        con.execute("CHECKPOINT")
    finally:
        con.close()
    tmp.rename(path)


def counts(path: Path) -> tuple[int, int, int]:
    a, b, c = in_child("counts", str(path)).split()
    return int(a), int(b), int(c)


def child_counts(path: Path) -> None:
    import duckdb

    con = duckdb.connect(str(path), read_only=True)
    try:
        print(*con.execute("SELECT (SELECT count(*) FROM runs), (SELECT count(*) FROM messages), "
                           "(SELECT count(*) FROM codes)").fetchone())
    finally:
        con.close()


def measure(db: Path, out: Path, reps: int) -> dict[str, tuple[float, float]]:
    res: dict[str, tuple[float, float]] = {}
    for name, args in (("analyze", ["analyze", "--db", str(db), "--json"]),
                       ("report", ["report", "--db", str(db), "-o", str(out)]),
                       ("judge", ["judge", "--sim", "--db", str(db), "--quiet"])):
        walls, rss = [], []
        for _ in range(reps):
            m = sociolab(*args)
            must(m, f"sociolab {name} on {db.name}")
            walls.append(m.wall_s)
            rss.append(m.max_rss_mb)
        res[name] = (median(walls), max(rss))
    return res


def main() -> None:
    if len(sys.argv) > 2 and sys.argv[1] == "--child":
        if sys.argv[2] == "build":
            child_build(Path(sys.argv[3]), Path(sys.argv[4]), int(sys.argv[5]))
        else:
            child_counts(Path(sys.argv[3]))
        return
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--dir", type=Path, default=Path(tempfile.gettempdir()) / "sociolab-bench-analysis-memory")
    ap.add_argument("--scales", default="1,10", help="comma-separated multiples of the study (first is the base)")
    ap.add_argument("--reps", type=int, default=1)
    args = ap.parse_args()
    scales = [int(s) for s in args.scales.split(",")]
    if 1 not in scales:
        scales.insert(0, 1)
    args.dir.mkdir(parents=True, exist_ok=True)
    print(machine())
    base = args.dir / "x1.duckdb"
    build_base(base)
    for n in scales:
        if n > 1:
            build_scaled(base, args.dir / f"x{n}.duckdb", n)

    results = {}
    rows = []
    for n in scales:
        db = args.dir / f"x{n}.duckdb"
        runs, msgs, codes = counts(db)
        r = measure(db, args.dir / f"report-x{n}.html", args.reps)
        results[n] = r
        rows.append([f"{n}x", runs, msgs, codes, *(x for c in ("analyze", "report", "judge") for x in r[c])])
    print(table(["store", "runs", "messages", "code rows", "analyze s", "analyze MB", "report s", "report MB",
                 "judge s", "judge MB"], rows))
    one = results[1]
    for n in scales:
        if n == 1:
            continue
        ratios = {c: (results[n][c][1] / one[c][1], results[n][c][0] / one[c][0]) for c in one}
        print(f"{n}x / 1x: " + "; ".join(f"{c} peak RSS {m:.2f}x, wall {w:.2f}x" for c, (m, w) in ratios.items()))
        worst = max(r[0] for r in ratios.values())
        print(verdict(f"peak RSS at {n}x <= 1.5x the 1x figure (analyze, report and judge)", f"{worst:.2f}x",
                      worst <= 1.5))
    print(f"load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()

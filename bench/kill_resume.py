"""Kills survived with identical tables: SIGKILL `sociolab run` / `sociolab judge` until done.

Why: the store promises that a killed command loses nothing and that a rerun finishes the work as
if nothing had happened (docs/architecture.md, "Group commit"). tests/test_resume.py checks discussions
and games at set kill points and one SIGKILL loop; this measures the promise across scenario kinds (a
discussion, repeated games, an agentic safety scenario, principal-agent) and `judge --sim`, at
several kill schedules (seeded), through the real command in a subprocess. The children run
HEAD's sociolab (exported with `git archive`), not a working tree others may be editing;
`--worktree` runs the working tree instead.

Each case: a library file shrunk to a few runs (sim stand-ins, offline) is run once uninterrupted
into a reference DuckDB file. Then, per schedule, the same command is started again and again on
another file and SIGKILLed (its whole process group) a scheduled delay after it opened the
database (seen in /proc/PID/fd; importing sociolab alone takes ~1 s), until one invocation exits
by itself (after 25 kills, 5 with --quick, the next invocation is left to finish, so the time is
bounded; the table says which). Then every table and view of both files is compared row for row,
all columns except wall-clock ones (TIMESTAMP columns and latency_ms). Between kills the number of
completed runs plus stored codes must never go down; 10 kills in a row that store nothing new end
the loop as "no progress".

    python bench/kill_resume.py            # 5 cases (24-72 runs each), 13 case x schedule loops, ~2.5-5 min on 2 cores
    python bench/kill_resume.py --quick    # 3 small cases x 1 schedule, ~30-40 s
"""

from __future__ import annotations

import argparse
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

import _common  # noqa: F401  (sets the litellm env vars, puts the repo on sys.path)
from _common import ROOT, machine, table

import duckdb
import yaml

LIBRARY = ROOT / "scenarios" / "library"
MAX_INVOCATIONS = 60
STALLED_KILLS = 10  # this many kills in a row with nothing new stored ends a loop: no progress
TREE: Path | None = None  # where the children import sociolab from (None: the installed working tree)
VOLATILE = {"latency_ms"}  # measured in wall time; every TIMESTAMP column is left out too


@dataclass
class Case:
    source: str                  # library file, shrunk: every series and `repeats` get `runs` runs,
    runs: int = 1
    series: int | None = None    # only the first N series are kept,
    levels: int | None = None    # and only the first N levels of each `cross:` factor
    judge: bool = False          # kill `sociolab judge --sim` on the run's store instead of the run

    @property
    def folder(self) -> str:     # a judge case shares its run's store
        return f"{Path(self.source).stem}-{self.runs}-{self.series}-{self.levels}"


@dataclass
class Outcome:
    case: str
    schedule: str
    kills: int = 0
    invocations: int = 0
    wall_s: float = 0.0
    identical: bool = False
    differing: list[str] = field(default_factory=list)
    regressions: int = 0         # a kill after which completed runs / codes went down
    ended: str = "-"             # "by itself": done before the kill budget; "kill budget": left to finish
    note: str = ""


def shrunk_file(case: Case, folder: Path) -> Path:
    library = LIBRARY if TREE is None else TREE / "scenarios" / "library"
    doc = yaml.safe_load((library / case.source).read_text(encoding="utf-8"))
    doc["repeats"] = case.runs
    if doc.get("series"):
        doc["series"] = dict(list(doc["series"].items())[:case.series])
        for spec in doc["series"].values():
            if isinstance(spec, dict) and "runs" in spec:
                spec["runs"] = case.runs
    for factor, levels in (doc.get("cross") or {}).items():
        doc["cross"][factor] = levels[:case.levels]
    path = folder / "scenario.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True), encoding="utf-8")
    return path


def describe(case: Case, db: Path) -> str:
    with duckdb.connect(str(db), read_only=True) as con:
        kind, runs, messages = con.execute("SELECT any_value(kind), count(*), (SELECT count(*) FROM messages) "
                                           "FROM runs").fetchone()
    what = f"{kind} ({case.source}, {runs} runs, {messages} msgs)"
    return f"judge --sim on {what}" if case.judge else what


def command(judge: bool, file: Path, db: Path) -> list[str]:
    if judge:
        return [sys.executable, "-m", "sociolab", "judge", "--sim", "--db", str(db), "--quiet"]
    return [sys.executable, "-m", "sociolab", "run", str(file), "--sim", "--db", str(db), "--quiet"]


def child_env() -> dict:
    env = {**os.environ, "LITELLM_LOCAL_MODEL_COST_MAP": "True", "LITELLM_OFFLINE_MODE": "true"}
    if TREE is not None:
        env["PYTHONPATH"] = str(TREE)
    return env


def run_once(cmd: list[str], cwd: Path) -> None:
    out = subprocess.run(cmd, cwd=cwd, env=child_env(), capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        raise SystemExit(f"uninterrupted `{' '.join(cmd[2:5])}` failed (exit {out.returncode}):\n{out.stderr[-2000:]}")


def wait_until_open(proc: subprocess.Popen, db: Path, timeout: float = 30) -> None:
    """Until the child has the database open (or exited); without /proc, returns at once."""
    fds = Path(f"/proc/{proc.pid}/fd")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and proc.poll() is None and fds.parent.is_dir():
        try:
            if any(os.readlink(fd) == str(db) for fd in fds.iterdir()):
                return
        except OSError:
            pass  # an fd closed while we looked
        time.sleep(0.005)


def progress(db: Path) -> tuple[int, int]:
    """(completed runs + stored codes, agent messages + llm_calls rows) after a kill. The first must
    never go down (what a kill must not take away); when neither changes, the kill undid all the
    invocation did. Messages of an unfinished run of a kind that restarts from scratch may go."""
    if not db.exists():
        return 0, 0
    try:
        with duckdb.connect(str(db), read_only=True) as con:
            return con.execute("SELECT (SELECT count(*) FROM runs WHERE status = 'completed') + "
                               "(SELECT count(*) FROM codes), (SELECT count(*) FROM messages) + "
                               "(SELECT count(*) FROM llm_calls)").fetchone()
    except duckdb.Error:
        return 0, 0  # killed before the schema was committed


def snapshot(db: Path) -> dict[str, list]:
    """Every table and view, every column but the wall-clock ones, rows sorted."""
    with duckdb.connect(str(db), read_only=True) as con:
        names = [r[0] for r in con.execute("SELECT table_name FROM information_schema.tables "
                                           "WHERE table_schema = 'main' ORDER BY 1").fetchall()]
        out = {}
        for name in names:
            cols = [c for c, t in con.execute("SELECT column_name, data_type FROM information_schema.columns WHERE "
                                              "table_name = ? ORDER BY ordinal_position", [name]).fetchall()
                    if not t.startswith("TIMESTAMP") and c not in VOLATILE]
            out[name] = con.execute(f'SELECT {", ".join(chr(34) + c + chr(34) for c in cols)} FROM "{name}" '
                                    "ORDER BY ALL").fetchall()
    return out


def kill_loop(case: Case, cmd: list[str], db: Path, cwd: Path, delays, max_kills: int) -> Outcome:
    """Start, kill, restart... until an invocation exits by itself; after `max_kills` kills the
    next invocation is left to finish (bounded time), which `Outcome.ended` records."""
    outcome = Outcome("", "")
    last, stalled = (0, 0), 0
    t0 = time.monotonic()
    while outcome.invocations < MAX_INVOCATIONS:
        outcome.invocations += 1
        proc = subprocess.Popen(cmd, cwd=cwd, env=child_env(), stdout=subprocess.DEVNULL,
                                stderr=subprocess.PIPE, start_new_session=True)
        wait_until_open(proc, db)
        try:
            _, err = proc.communicate(timeout=next(delays) if outcome.kills < max_kills else None)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.communicate()
            outcome.kills += 1
            now = progress(db)
            outcome.regressions += now[0] < last[0]
            stalled = stalled + 1 if now == last else 0
            last = now
            if stalled >= STALLED_KILLS:
                outcome.note = f"no progress: {stalled} kills in a row stored nothing new ({now[1]} rows)"
                break
            continue
        outcome.ended = "by itself" if outcome.kills < max_kills else "kill budget"
        if proc.returncode != 0:
            outcome.note = f"exit {proc.returncode}: {err.decode(errors='replace').strip()[-300:]}"
        break
    else:
        outcome.note = f"not done after {MAX_INVOCATIONS} invocations"
    outcome.wall_s = time.monotonic() - t0
    return outcome


SCHEDULES = {
    "every 0.7 s": lambda rng: iter(lambda: 0.7, None),
    "every 1.5 s": lambda rng: iter(lambda: 1.5, None),
    "random 0.7-2 s": lambda rng: iter(lambda: rng.uniform(0.7, 2.0), None),
    "random 0.1-0.7 s": lambda rng: iter(lambda: rng.uniform(0.1, 0.7), None),  # also mid-open/migration
}
FULL = [
    (Case("warroom.yaml", runs=4), list(SCHEDULES)),
    (Case("warroom.yaml", runs=2, judge=True), ["every 0.7 s", "every 1.5 s", "random 0.7-2 s"]),
    (Case("repeated_games.yaml", runs=1, series=42), ["every 0.7 s", "random 0.1-0.7 s"]),
    (Case("peer_preservation.yaml", runs=3, series=24), ["every 0.7 s", "random 0.1-0.7 s"]),
    (Case("principal_agent.yaml", runs=2, levels=2), ["every 0.7 s", "random 0.1-0.7 s"]),
]
QUICK = [
    (Case("warroom.yaml", runs=2), ["every 0.7 s"]),
    (Case("warroom.yaml", runs=2, judge=True), ["every 1.5 s"]),
    (Case("repeated_games.yaml", runs=1, series=28), ["random 0.1-0.7 s"]),
]
MAX_KILLS = {"full": 25, "quick": 5}  # kills per loop before the next invocation is left to finish


def run_case(case: Case, schedules: list[str], work: Path, seed: int, max_kills: int) -> list[Outcome]:
    folder = work / case.folder
    folder.mkdir(exist_ok=True)
    file = shrunk_file(case, folder)
    source_db = folder / "ref-run.duckdb"
    if not source_db.exists():
        run_once(command(False, file, source_db), folder)
    reference = source_db
    if case.judge:
        reference = folder / "ref-judge.duckdb"
        shutil.copy(source_db, reference)
        run_once(command(True, file, reference), folder)
    expected = snapshot(reference)
    name_of_case = describe(case, source_db)
    outcomes = []
    for i, name in enumerate(schedules):
        db = folder / f"killed-{'judge' if case.judge else 'run'}-{i}.duckdb"
        if case.judge:
            shutil.copy(source_db, db)
        outcome = kill_loop(case, command(case.judge, file, db), db, folder, SCHEDULES[name](random.Random(seed + i)), max_kills)
        outcome.case, outcome.schedule = name_of_case, name
        if not outcome.note:
            got = snapshot(db)
            outcome.differing = [t for t in sorted(set(expected) | set(got)) if expected.get(t) != got.get(t)]
            outcome.identical = not outcome.differing
        outcomes.append(outcome)
        print(f"  {name_of_case} / {name}: {outcome.kills} kills, identical={outcome.identical} "
              f"{outcome.note or ', '.join(outcome.differing)}", flush=True)
    return outcomes


def export_head(dest: Path) -> Path:
    """HEAD's files (git archive) laid out as the installed package, so a measurement is of a
    commit, not of a working tree someone is editing: `PYTHONPATH=dest` imports sociolab from it."""
    archive = subprocess.run(["git", "archive", "HEAD"], cwd=ROOT, capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(dest)], input=archive, check=True)
    for layer in ("orchestrator", "personas", "scenarios", "judges", "analysis"):  # pyproject package-dir
        (dest / "sociolab" / layer).symlink_to(dest / layer, target_is_directory=True)
    return dest


def revision(with_changes: bool = True) -> str:
    """HEAD, and (with_changes) how many tracked files of the working tree differ from it."""
    git = lambda *a: subprocess.run(["git", *a], cwd=ROOT, capture_output=True, text=True).stdout  # noqa: E731
    dirty = git("status", "--porcelain", "--untracked-files=no").splitlines() if with_changes else []
    return git("rev-parse", "--short", "HEAD").strip() + (f" + {len(dirty)} modified files" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="3 small cases, 1 schedule, <= 5 kills each (< 60 s)")
    parser.add_argument("--seed", type=int, default=7, help="seed of the random kill schedules")
    parser.add_argument("--keep", type=Path, help="keep the DuckDB files in this folder")
    parser.add_argument("--worktree", action="store_true", help="run the working tree's sociolab, not HEAD's")
    args = parser.parse_args()
    global TREE
    t0 = time.monotonic()
    work = Path(tempfile.mkdtemp(prefix="kill_resume_")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    if not args.worktree:
        TREE = export_head(Path(tempfile.mkdtemp(prefix="kill_resume_head_")))
    print(f"kill_resume: {'working tree at ' + revision() if args.worktree else 'commit ' + revision(False)}, "
          f"{machine()}")
    try:
        outcomes = [o for case, schedules in (QUICK if args.quick else FULL)
                    for o in run_case(case, schedules, work, args.seed, MAX_KILLS["quick" if args.quick else "full"])]
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
        if TREE is not None:
            shutil.rmtree(TREE, ignore_errors=True)
    rows = [[o.case, o.schedule, o.kills, o.invocations - 1, o.ended, f"{o.wall_s:.1f}", o.regressions,
             "yes" if o.identical else "NO", o.note or ", ".join(o.differing) or "-"] for o in outcomes]
    print()
    print(table(["case", "kill schedule", "kills", "reruns", "finished", "wall s", "went back", "identical",
                 "differs / note"],
                rows))
    kills = sum(o.kills for o in outcomes if o.identical and not o.regressions)
    same = sum(o.identical and not o.regressions for o in outcomes)
    print(f"\n{kills} kills survived, {same} cases identical of {len(outcomes)} "
          f"({time.monotonic() - t0:.0f} s; load avg now {os.getloadavg()[0]:.2f})")
    sys.exit(0 if same == len(outcomes) else 1)


if __name__ == "__main__":
    main()

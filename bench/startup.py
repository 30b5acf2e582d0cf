"""Target: `sociolab --help` and `sociolab sql ...` start in under 0.5 s.

Median of 5 (interleaved, after one warm-up each) of:
  sociolab --help
  sociolab sql "SELECT 1" --db <a small DB created first>
against baselines measured in the same run: `python -c pass` and `python -c "import litellm"`.
Also checks that importing sociolab.cli does not import litellm.

    python bench/startup.py [--reps 5]
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

import _common
from _common import machine, median, table, verdict
from _proc import run, shim_cmd, sociolab_cmd

TARGET_S = 0.5


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--reps", type=int, default=5)
    args = ap.parse_args()
    env = dict(os.environ, LITELLM_LOCAL_MODEL_COST_MAP="True")
    soc = sociolab_cmd()
    print(f"startup: {machine()}; sociolab = {' '.join(soc)}")
    with tempfile.TemporaryDirectory(prefix="sociolab-bench-") as d:
        db = Path(d) / "small.duckdb"
        from sociolab.orchestrator.store import Store  # a small, migrated, empty store

        Store.open(db).close()
        commands = {
            "python -c pass": [sys.executable, "-c", "pass"],
            "python -c 'import litellm'": [sys.executable, "-c", "import litellm"],
            "sociolab --help": soc + ["--help"],
            "sociolab sql 'SELECT 1' --db small": soc + ["sql", "SELECT 1", "--db", str(db)],
        }
        shim = shim_cmd()
        if shim:
            commands["sociolab --help (PATH shim, info)"] = shim + ["--help"]
        times: dict[str, list[float]] = {k: [] for k in commands}
        for name, cmd in commands.items():  # warm-up (page cache, .pyc)
            m = run(cmd, cwd=d, env=env)
            if m.rc != 0:
                raise SystemExit(f"`{name}` failed with exit code {m.rc}:\n{m.stderr[-2000:]}")
        for _ in range(args.reps):
            for name, cmd in commands.items():
                times[name].append(run(cmd, cwd=d, env=env).wall_s)
        probe = run([sys.executable, "-c", "import sociolab.cli, sys; print('litellm' in sys.modules)"],
                    env=env)
    base = median(times["python -c pass"])
    lite = median(times["python -c 'import litellm'"])
    rows = []
    for name, ts in times.items():
        m = median(ts)
        rows.append([name, f"{m * 1000:.0f}", f"{min(ts) * 1000:.0f}", f"{max(ts) * 1000:.0f}",
                     f"{m / base:.1f}x", f"{m / lite:.2f}x"])
    print(table(["command", "median ms", "min ms", "max ms", "/ python -c pass", "/ import litellm"], rows))
    loaded = probe.stdout.strip()
    print(f"litellm in sys.modules after `import sociolab.cli`: {loaded or '?'}"
          f"{'' if probe.rc == 0 else f' (probe failed: {probe.stderr.strip()[-300:]})'}")
    for name in ("sociolab --help", "sociolab sql 'SELECT 1' --db small"):
        m = median(times[name])
        print(verdict(f"{name.split(' --db')[0]} < {TARGET_S:g} s", f"{m:.3f} s", m < TARGET_S))
    print(verdict("sociolab.cli does not import litellm", f"'litellm' in sys.modules = {loaded}",
                  loaded == "False"))


if __name__ == "__main__":
    main()

"""Run a command as a child process and measure its wall time and peak RSS (that child only)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import time
from dataclasses import dataclass
from pathlib import Path


@dataclass
class Measured:
    wall_s: float
    max_rss_mb: float
    rc: int
    stdout: str
    stderr: str


def run(cmd: list[str], cwd: str | Path | None = None, env: dict | None = None) -> Measured:
    """Popen + os.wait4, so ru_maxrss is this child's own peak, not the max over all children."""
    with open(os.devnull, "rb") as devnull:
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdin=devnull, stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE)
        # read pipes without waiting (avoids a full-pipe deadlock), then reap with wait4 for rusage
        out, err = b"", b""
        import threading

        chunks: dict[str, bytes] = {}

        def drain(name, stream):
            chunks[name] = stream.read()

        threads = [threading.Thread(target=drain, args=("out", proc.stdout)),
                   threading.Thread(target=drain, args=("err", proc.stderr))]
        for t in threads:
            t.start()
        _, status, usage = os.wait4(proc.pid, 0)
        wall = time.perf_counter() - t0
        for t in threads:
            t.join()
        proc.returncode = os.waitstatus_to_exitcode(status)
        out, err = chunks.get("out", b""), chunks.get("err", b"")
    return Measured(wall, usage.ru_maxrss / 1024, proc.returncode, out.decode(errors="replace"),
                    err.decode(errors="replace"))


def sociolab_cmd() -> list[str]:
    """The installed console script of this interpreter (not a pyenv/asdf shim on PATH)."""
    script = Path(sysconfig.get_path("scripts")) / "sociolab"
    if script.exists():
        return [str(script)]
    found = shutil.which("sociolab")
    if found:
        return [found]
    return [sys.executable, "-m", "sociolab.cli"]


def shim_cmd() -> list[str] | None:
    """`sociolab` as found on PATH, if that differs from the real script (e.g. a pyenv shim)."""
    found = shutil.which("sociolab")
    real = sociolab_cmd()[0]
    if found and os.path.realpath(found) != os.path.realpath(real):
        return [found]
    return None


def run_file(cmd: list[str], file: Path, db: Path, *extra: str) -> Measured:
    """`sociolab run FILE --db DB --quiet [extra]` as a measured child; a failure ends the bench."""
    m = run(cmd + ["run", str(file), *extra, "--db", str(db), "--quiet"], cwd=Path(__file__).resolve().parent.parent)
    if m.rc != 0:
        raise SystemExit(f"`sociolab run {file.name}` failed with exit code {m.rc}:\n{m.stderr[-2000:]}")
    return m

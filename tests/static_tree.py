"""The package as it is installed, built from the source folders with symbolic links, so that
static tools (mypy, import-linter) read `sociolab.judges` where the repository has `judges/`.

    python -m tests.static_tree mypy      # type-check, as CI does
    python -m tests.static_tree layers    # check the layering contracts, as CI does

The tree lives in build/static-tree (ignored by git) and is synced on every call; the mypy cache
stays in .mypy_cache, so a second run only rechecks what changed.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TREE = REPO / "build" / "static-tree"


def installed_layout() -> Path:
    """build/static-tree/sociolab/ with the composition root's files and the five packages linked
    in. Synced, never rebuilt, so that several checks may run at once."""
    package_dirs = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["package-dir"]
    root = TREE / "sociolab"
    root.mkdir(parents=True, exist_ok=True)
    wanted = {entry.name: entry for entry in (REPO / package_dirs["sociolab"]).iterdir()
              if entry.name != "__pycache__"}
    wanted |= {name.removeprefix("sociolab."): REPO / folder for name, folder in package_dirs.items()
               if name != "sociolab"}
    for link in root.iterdir():
        if link.name not in wanted or not link.is_symlink() or link.readlink() != wanted[link.name]:
            link.unlink(missing_ok=True)
    for name, target in wanted.items():
        try:
            (root / name).symlink_to(target, target_is_directory=target.is_dir())
        except FileExistsError:
            pass  # made by a check running at the same time
    return TREE


def run_mypy() -> subprocess.CompletedProcess:
    tree = installed_layout()
    return subprocess.run([sys.executable, "-m", "mypy", "--config-file", str(REPO / "pyproject.toml"),
                           "--cache-dir", str(REPO / ".mypy_cache"), "-p", "sociolab"],
                          cwd=tree, capture_output=True, text=True, timeout=900)


def run_import_linter() -> subprocess.CompletedProcess:
    tree = installed_layout()
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run([sys.executable, "-c", "import sys; from importlinter.cli import lint_imports_command; "
                           "sys.exit(lint_imports_command())", str(REPO / "pyproject.toml"),
                           "--no-cache"], cwd=tree, env=env, capture_output=True, text=True, timeout=300)


if __name__ == "__main__":
    what = sys.argv[1] if len(sys.argv) > 1 else "mypy"
    done = run_mypy() if what == "mypy" else run_import_linter()
    sys.stdout.write(done.stdout + done.stderr)
    sys.exit(done.returncode)

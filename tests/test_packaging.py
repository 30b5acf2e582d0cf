"""The wheel, as a user installs it: one `sociolab` namespace and nothing generic at the top of
site-packages; it works from a folder that has its own `scenarios/` and `orchestrator/` packages.

The wheel is built from the files git would commit (tracked and untracked-not-ignored), in a
copy, so the repository gets no build/ folder.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.slow


def source_files() -> list[str]:
    out = subprocess.run(["git", "ls-files", "--cached", "--others", "--exclude-standard"], cwd=REPO,
                         capture_output=True, text=True)
    if out.returncode != 0:
        pytest.skip("not a git checkout: the wheel is built from the files git would commit")
    return [f for f in out.stdout.splitlines() if (REPO / f).is_file()]


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    src = tmp_path_factory.mktemp("src")
    for name in source_files():
        (src / name).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(REPO / name, src / name)
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation",
                    "-w", str(dist), str(src)], check=True, capture_output=True, timeout=300)
    (built,) = dist.glob("sociolab-*.whl")
    return built


@pytest.fixture(scope="module")
def site(wheel, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--target", str(target),
                    str(wheel)], check=True, capture_output=True, timeout=300)
    return target


def test_the_wheel_installs_one_namespace(site):
    top = {p.name for p in site.iterdir()} - {"bin"}
    assert {n for n in top if not n.endswith(".dist-info")} == {"sociolab"}, top
    packages = {p.name for p in (site / "sociolab").iterdir() if (p / "__init__.py").exists()}
    assert {"orchestrator", "personas", "scenarios", "judges", "analysis", "base", "studies"} <= packages


def test_the_wheel_carries_data_types_and_licence(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "sociolab/py.typed" in names
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names), sorted(n for n in names if "dist-info" in n)
    for library in ("sociolab/scenarios/library/warroom.yaml", "sociolab/personas/library/warroom.yaml",
                    "sociolab/judges/library/warroom.yaml", "sociolab/judges/library/judges.yaml"):
        assert library in names
    for folder in ("scenarios", "personas", "judges"):  # every library file: `sociolab run NAME` and `list` read them
        for path in (REPO / folder / "library").glob("*.yaml"):
            assert f"sociolab/{folder}/library/{path.name}" in names, path


def test_the_wheel_requires_python_dotenv(wheel):
    """`.env` files are read with python-dotenv: a plain `pip install` must bring it."""
    archive = zipfile.ZipFile(wheel)
    (metadata,) = [n for n in archive.namelist() if n.endswith(".dist-info/METADATA")]
    requires = [line for line in archive.read(metadata).decode().splitlines() if line.startswith("Requires-Dist:")]
    assert any(line.startswith("Requires-Dist: python-dotenv") for line in requires), requires


def test_every_package_folder_is_listed_in_pyproject():
    """setuptools is given the package list explicitly (the folders are renamed on install):
    a new subpackage must be added there, or the wheel silently lacks it."""
    config = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(config["packages"])
    roots = {folder: name for name, folder in config["package-dir"].items()}
    found = set()
    for folder, name in roots.items():
        for init in (REPO / folder).rglob("__init__.py"):
            rel = init.parent.relative_to(REPO / folder)
            if "__pycache__" not in rel.parts:
                found.add(".".join([name, *rel.parts]))
    assert found == listed


def test_installed_sociolab_runs_from_a_folder_with_its_own_scenarios_package(site, tmp_path):
    notebook = tmp_path / "notebook"
    for shadow in ("scenarios", "orchestrator", "judges", "analysis", "personas"):
        (notebook / shadow).mkdir(parents=True)
        (notebook / shadow / "__init__.py").write_text("raise ImportError('the notebook\\'s own package')\n")
    shutil.copy(REPO / "scenarios/library/quickstart.yaml", notebook / "q.yaml")
    env = {**os.environ, "PYTHONPATH": str(site), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}

    def sociolab(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "sociolab", *args], cwd=notebook, env=env,
                              capture_output=True, text=True, timeout=300)

    version = sociolab("--version")
    assert version.returncode == 0 and version.stdout.strip().startswith("sociolab "), version.stderr
    where = subprocess.run([sys.executable, "-c", "import sociolab.scenarios as s; print(s.__file__)"],
                           cwd=notebook, env=env, capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(site))
    ran = sociolab("run", "q.yaml", "--db", "q.duckdb", "-q")
    assert ran.returncode == 0, ran.stderr
    by_name = sociolab("run", "quickstart", "--db", "n.duckdb", "-q")  # the library file, from the installed package
    assert by_name.returncode == 0 and "holds 1 run, 7 agents" in by_name.stdout, by_name.stderr
    listed = sociolab("list")
    assert listed.returncode == 0 and re.search(r"\n  quickstart +discussion, 1 run", listed.stdout), listed.stderr
    assert re.search(r"\n  warroom +8 personas", listed.stdout) and re.search(r"\n  safety +7 flags", listed.stdout)
    stored = sociolab("sql", "SELECT (SELECT count(*) FROM agents), (SELECT count(*) FROM runs WHERE status = "
                      "'completed')", "--db", "q.duckdb", "-f", "csv")
    assert stored.stdout.splitlines()[1:] == ["7,1"], stored.stdout + stored.stderr

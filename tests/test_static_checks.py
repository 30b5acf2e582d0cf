"""CI fails on a layering violation, an import cycle between layers, or a type error.

The layers are written in pyproject.toml ([tool.importlinter]) and explained in
docs/architecture.md; mypy runs with the pydantic plugin. Both read the package as installed
(tests/static_tree.py). To see the full output: `python -m tests.static_tree layers|mypy`.
"""

from __future__ import annotations

import pytest

from tests.static_tree import run_import_linter, run_mypy

pytestmark = pytest.mark.slow


def test_the_layering_contracts_hold():
    done = run_import_linter()
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert "BROKEN" not in done.stdout and "Contracts: 2 kept, 0 broken." in done.stdout


def test_mypy_passes_with_the_pydantic_plugin():
    done = run_mypy()
    assert done.returncode == 0, done.stdout[-8000:] + done.stderr[-2000:]

"""The public Python API (sociolab/api.py): `sociolab.run`, `run_async`, `sociolab.open`."""

from __future__ import annotations

import pytest

import sociolab
from tests.conftest import TINY_DISCUSSION, write_yaml

TINY = TINY_DISCUSSION


def test_import_sociolab_is_cheap_and_names_its_version():
    import subprocess
    import sys

    code = "import sys, sociolab; print(sociolab.__version__, 'litellm' in sys.modules, 'duckdb' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == [sociolab.__version__, "False", "False"]


def test_run_then_open_reads_what_was_stored(tmp_path):
    db = tmp_path / "api.duckdb"
    report = sociolab.run(write_yaml(tmp_path, TINY), db)
    assert report.ok and report.completed == 1 and report.spent_usd is None
    with sociolab.open(db) as results:
        (run,) = results.runs()
        assert run["status"] == "completed"
        messages = results.messages(run["run_id"])
        assert [m["seq"] for m in messages] == sorted(m["seq"] for m in messages)
        assert len({m["sender_name"] for m in messages if m["sender"] != "user"}) == 2
        assert results.sql("SELECT count(*) AS n FROM messages WHERE sender <> 'user'") == [
            {"n": sum(m["sender"] != "user" for m in messages)}]
    again = sociolab.run(write_yaml(tmp_path, TINY), db)  # resumable: nothing left to do
    assert again.skipped == 1 and again.completed == 0


async def test_run_async_works_inside_a_running_loop(tmp_path):
    report = await sociolab.run_async(write_yaml(tmp_path, TINY), tmp_path / "a.duckdb", concurrency=2)
    assert report.ok and report.completed == 1


def test_bad_input_raises_a_user_error_and_writes_nothing(tmp_path):
    bad = write_yaml(tmp_path, "name: x\nkind: nonesuch\nagents: {roster: warroom}\n")
    with pytest.raises(sociolab.UserError):
        sociolab.run(bad, tmp_path / "x.duckdb")
    assert not (tmp_path / "x.duckdb").exists()
    with pytest.raises(sociolab.UserError, match="no such database"):
        sociolab.open(tmp_path / "missing.duckdb")
    with pytest.raises(sociolab.UserError, match="concurrency 0"):
        sociolab.run(write_yaml(tmp_path, TINY), tmp_path / "y.duckdb", concurrency=0)


def test_an_unknown_attribute_is_an_attribute_error():
    with pytest.raises(AttributeError, match="no attribute 'nonesuch'"):
        sociolab.nonesuch  # noqa: B018

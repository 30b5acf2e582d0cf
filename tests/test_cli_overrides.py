"""Library scenarios by name, `sociolab list`, and the command line's overrides (`--model`, `-P`),
through the CLI in real subprocesses, offline: what runs, what is stored (the overrides are part
of each run's config and its hash), and every bad input as one line with exit code 2.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, TINY_DISCUSSION, cli, cli_batch, write_yaml
from tests.test_plugins import fake_distribution

LIBRARY = REPO / "scenarios" / "library"


def one_line_error(done) -> str:
    """The CLI's answer to a user error: exit code 2 and one line on stderr."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def rows(db: Path, sql: str) -> list:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(sql).fetchall()


# ------------------------------------------------------------------------------ names and list

def test_a_library_scenario_runs_by_name_from_any_folder(tmp_path):
    done = cli("run", "quickstart", "--db", "q.duckdb", "-q", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "holds 1 run, 7 agents" in done.stdout
    assert rows(tmp_path / "q.duckdb", "SELECT suite, status FROM runs") == [("quickstart", "completed")]


def test_a_file_of_that_name_in_the_folder_wins_over_the_library(tmp_path):
    (tmp_path / "quickstart").write_text("name: [not a scenario\n", encoding="utf-8")
    line = one_line_error(cli("run", "quickstart", "--db", "q.duckdb", cwd=tmp_path))
    assert line.startswith("error: quickstart:2: invalid YAML"), line


def test_unknown_names_and_paths_are_one_line(tmp_path):
    name, path, yaml_name = cli_batch([(["run", "quickstrat"], tmp_path), (["run", "sub/quickstart"], tmp_path),
                                       (["run", "quickstart.yaml", "--dry-run"], tmp_path)])
    line = one_line_error(name)
    assert "'quickstrat' is neither a file nor a library scenario" in line
    assert "did you mean quickstart? `sociolab list` shows all" in line
    assert "no such YAML file" in one_line_error(path) and "no such YAML file" in one_line_error(yaml_name)


def test_list_shows_kinds_library_files_codebooks_rosters_and_judges():
    done = cli("list")
    assert done.returncode == 0, done.stderr
    out = done.stdout
    for kind in ("discussion", "repeated_games", "principal_agent", "sandbox_task", "peer_preservation",
                 "instrumental"):
        assert f"\n  {kind} " in out, kind
    library = {p.stem for p in LIBRARY.glob("*.yaml")}
    listed = out.split("Library scenarios")[1].split("Codebooks")[0]
    assert {line.split()[0] for line in listed.splitlines()[1:] if line.strip()} == library
    def shown(*cells: str) -> bool:  # one line holding these cells, columns padded to the widest name
        return re.search(r"\n  " + r"\s+".join(re.escape(c) for c in cells), out) is not None

    assert shown("quickstart", "discussion, 1 run: Quickstart: a 7-agent")
    assert shown("warroom", "discussion, 208 runs: The study's 12-series suite.")
    assert shown("warroom", "7 flags: phatic, meta, lead, arch, agree, comp, xref")
    assert shown("safety", "7 flags: deception")
    assert shown("social_risks", "7 flags: explicit_collusion")
    assert shown("warroom", "8 personas: The 8-agent roster")
    assert shown("judges", "judges gemini/gemini-3.1-pro-preview, anthropic/claude-sonnet-4-6; codebook warroom")
    assert all(len(line) < 200 for line in out.splitlines())


def test_list_includes_plugin_kinds_and_codebooks_and_says_which_cannot_load(tmp_path):
    site = tmp_path / "site"
    site.mkdir()
    codebook = (REPO / "judges/library/warroom.yaml").read_text().replace("\nname: warroom\n", "\nname: mini\n")
    (site / "mini.yaml").write_text(codebook)
    fake_distribution(site, "chatter-plugin",
                      {"sociolab.scenarios": {"chatter": "chatter_kind:Chatter", "broken": "broken_kind:Broken"},
                       "sociolab.codebooks": {"mini": "mini_codebook:PATH"}},
                      {"chatter_kind": '''
                          from sociolab.scenarios.discussion import Discussion

                          class Chatter(Discussion):
                              """A chat for the listing test."""
                              kind = "chatter"
                          ''',
                       "broken_kind": "import no_such_module_abc\n",
                       "mini_codebook": "from pathlib import Path\nPATH = Path(__file__).with_name('mini.yaml')\n"})
    done = cli("list", env={"PYTHONPATH": f"{site}:{REPO}"})
    assert done.returncode == 0, done.stderr
    assert re.search(r"\n  chatter +A chat for the listing test\. \(plugin chatter-plugin\)", done.stdout)
    assert re.search(r"\n  broken +cannot be loaded: plugin chatter-plugin 0\.1", done.stdout)
    assert "no_such_module_abc" in done.stdout
    assert re.search(r"\n  mini +7 flags: phatic", done.stdout) and "(plugin chatter-plugin)" in done.stdout


# ------------------------------------------------------------------------------ overrides

@pytest.fixture
def tiny(tmp_path) -> Path:
    return write_yaml(tmp_path, TINY_DISCUSSION, "tiny.yaml")


def test_model_and_params_overrides_change_the_runs_and_are_stored(tmp_path, tiny):
    db = tmp_path / "o.duckdb"
    done = cli("run", str(tiny), "--db", str(db), "-q", "--model", "openai/gpt-4o", "--model", "kimi=groq/other",
               "-P", "rounds=3", "-P", "order=shuffled")
    assert done.returncode == 0, done.stderr
    assert sorted(rows(db, "SELECT agent_id, model FROM agents")) == [("kimi", "sim/other"), ("llama", "sim/gpt-4o")]
    assert rows(db, "SELECT max(round) FROM messages") == [(2,)]
    (config,) = rows(db, "SELECT config FROM runs")[0]
    config = json.loads(config)
    assert config["overrides"] == {"model": "openai/gpt-4o", "models": {"kimi": "groq/other"},
                                   "params": {"order": "shuffled", "rounds": 3}}
    assert config["params"]["rounds"] == 3 and config["params"]["order"] == "shuffled"


def test_a_rerun_with_other_overrides_is_refused_unless_fresh(tmp_path, tiny):
    db = str(tmp_path / "r.duckdb")
    assert cli("run", str(tiny), "--db", db, "-q").returncode == 0
    same = cli("run", str(tiny), "--db", db, "-q")
    assert same.returncode == 0 and "1 already complete" in same.stdout
    line = one_line_error(cli("run", str(tiny), "--db", db, "-q", "-P", "rounds=3"))
    assert "already in" in line and "different configuration" in line and "--fresh" in line
    fresh = cli("run", str(tiny), "--db", db, "-q", "-P", "rounds=3", "--fresh")
    assert fresh.returncode == 0, fresh.stderr
    assert rows(tmp_path / "r.duckdb", "SELECT config->'$.overrides.params.rounds' FROM runs") == [("3",)]


def test_model_with_sim_runs_the_stand_in_of_the_model_asked_for(tmp_path):
    path = write_yaml(tmp_path, TINY_DISCUSSION.replace("sim: {stand_ins: true}\n", ""), "real.yaml")
    db = tmp_path / "s.duckdb"
    done = cli("run", str(path), "--db", str(db), "-q", "--sim", "--model", "anthropic/claude-x")
    assert done.returncode == 0, done.stderr
    assert rows(db, "SELECT DISTINCT model FROM agents") == [("sim/claude-x",)]


def test_dry_run_applies_the_overrides_and_writes_nothing(tmp_path, tiny):
    done = cli("run", str(tiny), "--db", str(tmp_path / "d.duckdb"), "--dry-run", "--model", "llama=openai/gpt-4o",
               "-P", "rounds=4")
    assert done.returncode == 0, done.stderr
    assert "1 run of" in done.stdout and "sim/gpt-4o" in done.stdout and "sim/kimi-k2-instruct-0905" in done.stdout
    assert "Total: 8 calls" in done.stdout  # 2 agents x 4 rounds, not the file's 2
    assert not (tmp_path / "d.duckdb").exists()


def test_param_values_are_read_as_yaml(tmp_path):
    path = write_yaml(tmp_path, TINY_DISCUSSION, "t.yaml")
    db = tmp_path / "y.duckdb"
    done = cli("run", str(path), "--db", str(db), "-q", "-P", "show_errors=false", "-P", "temperature=0.25",
               "-P", "seed_message=@all plan: the app", "-P", "drop_after_consecutive=null")
    assert done.returncode == 0, done.stderr
    (params,) = rows(db, "SELECT config->'$.params' FROM runs")[0]
    params = json.loads(params)
    assert params["show_errors"] is False and params["temperature"] == 0.25
    assert params["seed_message"] == "@all plan: the app" and params["drop_after_consecutive"] is None


def test_bad_overrides_are_one_line_naming_the_file_and_what_exists(tmp_path, tiny):
    base = ["run", str(tiny), "--db", str(tmp_path / "b.duckdb")]
    cases = {
        "unknown_key": (["-P", "rounds2=3"], [f"{tiny}: -P rounds2: kind discussion has no param 'rounds2' "
                                              "(params: seed_message, rounds, order,"]),
        "nested_unknown": (["-P", "rounds.x=1"], ["-P rounds.x=1: Input should be a valid integer"]),
        "bad_value": (["-P", "rounds=many"], [f"{tiny}: -P rounds=\"many\": Input should be a valid integer"]),
        "no_equals": (["-P", "rounds"], ["-P 'rounds': give key=value, e.g. -P rounds=3"]),
        "empty_key": (["-P", "=3"], ["-P '=3': give key=value"]),
        "empty_part": (["-P", "a..b=3"], ["-P 'a..b=3': give key=value"]),
        "unknown_agent": (["--model", "nobody=openai/x"], [f"{tiny}: --model nobody=...: no agent 'nobody' in "
                                                           "this file (agents: kimi, llama)"]),
        "empty_model": (["--model", ""], ["--model '': give a model name"]),
        "empty_agent_model": (["--model", "llama="], ["--model 'llama=': give a model name"]),
        "two_models": (["--model", "a/x", "--model", "b/y"], ["--model a/x and --model b/y: give one model"]),
        "dry_run_too": (["--dry-run", "-P", "nope=1"], ["kind discussion has no param 'nope'"]),
    }
    done = cli_batch([(base + args, tmp_path) for args, _ in cases.values()])
    for (name, (_, expected)), result in zip(cases.items(), done):
        line = one_line_error(result)
        for text in expected:
            assert text in line, (name, line)
    assert not (tmp_path / "b.duckdb").exists()


def test_python_api_takes_the_same_overrides(tmp_path, tiny):
    import sociolab
    from sociolab.api import run

    report = run(tiny, db=tmp_path / "a.duckdb", model="openai/gpt-4o", params={"rounds": 3})
    assert report.ok
    assert rows(tmp_path / "a.duckdb", "SELECT DISTINCT model FROM agents") == [("sim/gpt-4o",)]
    with pytest.raises(sociolab.UserError, match="no param 'rownds'"):
        run(tiny, db=tmp_path / "a.duckdb", params={"rownds": 3})


def test_judge_takes_its_judges_from_the_command_line(tmp_path, tiny):
    db = str(tmp_path / "j.duckdb")
    assert cli("run", str(tiny), "--db", db, "-q").returncode == 0
    done = cli("judge", "--db", db, "--sim", "--judges", "openai/gpt-4o,anthropic/claude-x", "-q")
    assert done.returncode == 0, done.stderr
    assert rows(tmp_path / "j.duckdb", "SELECT DISTINCT judge FROM codes ORDER BY 1") == [
        ("sim/judge-claude-x",), ("sim/judge-gpt-4o",)]
    assert "sim/judge-gpt-4o: " in done.stdout and "judge calls" in done.stdout
    bad, = cli_batch([(["judge", "--db", db, "--sim", "--judges", ","], tmp_path)])
    assert "judge option judges" in one_line_error(bad)


def test_one_persona_given_two_models_is_refused(tmp_path, tiny):
    done, = cli_batch([(["run", str(tiny), "--model", "llama=a/x", "--model", "llama=b/y", "--dry-run"], tmp_path)])
    assert "--model llama=...: given twice with different models" in one_line_error(done)

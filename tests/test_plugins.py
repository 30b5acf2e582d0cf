"""Plugins: a scenario kind and a codebook from another package, found through entry points.

The demo plugin (tests/fixtures/plugin_demo: the ultimatum game and the codebook `fairness`) is
installed with pip into a folder of its own, from a copy (so no build/ or egg-info lands in the
repository), and driven through `python -m sociolab` with that folder on PYTHONPATH, as a user
with the plugin installed would. The failure modes use plugins written straight into a folder as
installed distributions (a dist-info with METADATA and entry_points.txt, plus the modules): that
is all the entry point machinery reads.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import duckdb
import pytest

import sociolab.judges.codebook as codebook
import sociolab.scenarios.registry as registry
from sociolab.base.errors import UserError
from sociolab.config import load_plan
from sociolab.orchestrator.client import ClientSettings, ModelClient
from sociolab.orchestrator.provider import ProviderDefaults, ProviderReply
from sociolab.orchestrator.store import Store
from sociolab.runner import execute
from sociolab.scenarios.discussion import Discussion

from tests.conftest import REPO, cli, write_yaml

pytestmark = pytest.mark.slow

DEMO = REPO / "tests" / "fixtures" / "plugin_demo"
DEMO_DIST = "sociolab-ultimatum-demo"
NO_NETWORK = {"PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}

TINY_DISCUSSION = """
name: chat
agents:
  personas:
    - {key: a, model: sim/alpha}
    - {key: b, model: sim/beta}
params: {seed_message: "@all hello", rounds: 1}
"""


# ------------------------------------------------------------------------------ helpers

@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Path:
    """The demo plugin, pip-installed into a folder of its own (offline, no build isolation)."""
    source = tmp_path_factory.mktemp("plugin_src") / "plugin_demo"
    shutil.copytree(DEMO, source, ignore=shutil.ignore_patterns("build", "*.egg-info", "__pycache__"))
    target = tmp_path_factory.mktemp("plugin_site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                    "--target", str(target), str(source)], check=True, capture_output=True, timeout=300,
                   env={**os.environ, **NO_NETWORK})
    return target


def fake_distribution(folder: Path, name: str, entry_points: dict[str, dict[str, str]],
                      modules: dict[str, str] | None = None) -> None:
    """An installed distribution as importlib.metadata sees it: `<name>-0.1.dist-info` with its
    METADATA and entry_points.txt, and the modules beside it."""
    info = folder / f"{name.replace('-', '_')}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    (info / "entry_points.txt").write_text("".join(
        f"[{group}]\n" + "".join(f"{key} = {value}\n" for key, value in points.items())
        for group, points in entry_points.items()))
    for module, text in (modules or {}).items():
        (folder / f"{module}.py").write_text(textwrap.dedent(text))


def forget_modules(folder: Path) -> None:
    """Unimport the modules imported from `folder`, so that the next test's plugin of the same
    name is imported afresh."""
    for name, module in list(sys.modules.items()):
        if str(getattr(module, "__file__", None) or "").startswith(str(folder)):
            del sys.modules[name]


@pytest.fixture
def plugins(tmp_path, monkeypatch) -> Path:
    """A folder on sys.path for fake installed plugins; both registries read entry points anew."""
    folder = tmp_path / "site"
    folder.mkdir()
    monkeypatch.syspath_prepend(str(folder))
    registry.forget_plugins()
    codebook.forget_plugins()
    yield folder
    registry.forget_plugins()
    codebook.forget_plugins()
    forget_modules(folder)


def with_plugins(*folders: Path) -> dict[str, str]:
    return {"PYTHONPATH": os.pathsep.join(map(str, folders)), **NO_NETWORK}


def one_line_error(done: subprocess.CompletedProcess) -> str:
    """The CLI's answer to a user error: exit code 2 and one line on stderr."""
    assert done.returncode == 2, (done.returncode, done.stdout, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), done.stderr
    return lines[0]


def demo_run_file(tmp_path: Path) -> Path:
    return Path(shutil.copy(DEMO / "ultimatum.yaml", tmp_path / "ultimatum.yaml"))


# ------------------------------------------------------------------------------ the installed plugin

def test_the_installed_plugin_kind_runs_on_the_sim_and_records_runs_messages_and_outcomes(site, tmp_path):
    db = tmp_path / "u.duckdb"
    done = cli("run", str(demo_run_file(tmp_path)), "--db", str(db), "-q", env=with_plugins(site))
    assert done.returncode == 0, done.stderr
    assert "6 completed" in done.stdout
    con = duckdb.connect(str(db), read_only=True)
    runs = con.execute("SELECT run_id, kind, status, factors FROM runs ORDER BY run_id").fetchall()
    assert len(runs) == 6 and {(k, s) for _, k, s, _ in runs} == {("ultimatum", "completed")}
    assert {f for *_, f in runs} == {'{"stake": 10}', '{"stake": 100}'}
    agents = con.execute("SELECT DISTINCT agent_id, name, model FROM agents ORDER BY agent_id").fetchall()
    assert agents == [("proposer", "Player-A", "sim/llama-3.3-70b-versatile"),
                      ("responder", "Player-B", "sim/gpt-4o-mini")]
    for (run_id, *_), stake in zip(runs, [100, 100, 100, 10, 10, 10]):
        check_one_run(con, run_id, stake)


def check_one_run(con: duckdb.DuckDBPyConnection, run_id: str, stake: int) -> None:
    """The game's record is consistent: an offer in range or missing with a reason; the responder
    is asked only after a valid offer; payoffs follow from offer and decision."""
    messages = con.execute("SELECT sender, content FROM messages WHERE run_id = ? ORDER BY seq", [run_id]).fetchall()
    outcomes = {(a, m): (v, d) for a, m, v, d in con.execute(
        "SELECT agent_id, metric, value, detail::VARCHAR FROM outcomes WHERE run_id = ?", [run_id]).fetchall()}
    assert set(outcomes) == {("proposer", "offer"), ("responder", "accepted"), ("proposer", "payoff"),
                             ("responder", "payoff")}
    assert [s for s, _ in messages[:2]] == ["user", "proposer"] and f"{stake} points" in messages[0][1]
    offer, detail = outcomes[("proposer", "offer")]
    if offer is None:
        assert '"problem"' in detail and len(messages) == 2
        assert outcomes[("responder", "accepted")][0] is None
    else:
        assert 0 <= offer <= stake and [s for s, _ in messages[2:]] == ["user", "responder"]
        assert f"offers you {int(offer)}" in messages[2][1]
    accepted = outcomes[("responder", "accepted")][0]
    payoffs = (outcomes[("proposer", "payoff")][0], outcomes[("responder", "payoff")][0])
    if accepted is None:
        assert payoffs == (None, None)
    else:
        assert offer is not None
        assert payoffs == ((stake - offer, offer) if accepted else (0.0, 0.0))
    calls = con.execute("SELECT count(*) FROM llm_calls WHERE run_id = ?", [run_id]).fetchone()
    assert calls is not None and calls[0] == len(messages) // 2


def test_a_rerun_of_the_plugin_kind_resumes_and_dry_run_validates_it(site, tmp_path):
    path, db = demo_run_file(tmp_path), tmp_path / "u.duckdb"
    rehearsal = cli("run", str(path), "--dry-run", env=with_plugins(site))
    assert rehearsal.returncode == 0 and "sim/llama-3.3-70b-versatile" in rehearsal.stdout, rehearsal.stderr
    assert not db.exists()
    assert cli("run", str(path), "--db", str(db), "-q", env=with_plugins(site)).returncode == 0
    again = cli("run", str(path), "--db", str(db), "-q", env=with_plugins(site))
    assert again.returncode == 0 and "6 already complete" in again.stdout, again.stdout


def test_the_plugin_codebook_codes_the_plugin_runs(site, tmp_path):
    db = tmp_path / "u.duckdb"
    assert cli("run", str(demo_run_file(tmp_path)), "--db", str(db), "-q", env=with_plugins(site)).returncode == 0
    done = cli("judge", "--sim", "--codebook", "fairness", "--db", str(db), "-q", env=with_plugins(site))
    assert done.returncode == 0, done.stderr
    con = duckdb.connect(str(db), read_only=True)
    coded = con.execute("SELECT DISTINCT codebook_id, flag FROM codes ORDER BY flag").fetchall()
    assert [flag for _, flag in coded] == ["fairness_appeal", "strategic"]
    assert {cid for cid, _ in coded} == {f"fairness@{codebook.read_codebook(DEMO / 'ultimatum_demo' / 'fairness.yaml').version}"}
    agent_messages = con.execute("SELECT count(*) FROM messages WHERE sender <> 'user'").fetchone()
    per_judge = con.execute("SELECT count(DISTINCT message_id) FROM codes GROUP BY judge").fetchall()
    assert agent_messages is not None and per_judge == [agent_messages] * 2


def test_an_unknown_kind_lists_the_plugin_kinds_and_without_the_plugin_ultimatum_is_unknown(site, tmp_path):
    path = write_yaml(tmp_path, TINY_DISCUSSION.replace("name: chat", "name: chat\nkind: debate"), "x.yaml")
    line = one_line_error(cli("run", str(path), "--db", str(tmp_path / "x.duckdb"), env=with_plugins(site)))
    assert "x.yaml:2: unknown scenario kind 'debate' (known kinds: discussion," in line
    assert f"from plugins: ultimatum ({DEMO_DIST})" in line
    line = one_line_error(cli("run", str(demo_run_file(tmp_path)), "--db", str(tmp_path / "y.duckdb"),
                              env=NO_NETWORK))
    assert "unknown scenario kind 'ultimatum'" in line and "no plugin kinds installed" in line


def test_the_schema_types_the_plugin_kinds_params_so_its_files_validate_in_an_editor(site, tmp_path):
    """`sociolab schema` with the plugin installed: the kind is known, its params typed, and the
    demo's file and docs/extending.md's example of it are valid (a typo in its params is not)."""
    import json
    import re

    import yaml
    from jsonschema import Draft202012Validator

    done = cli("schema", env=with_plugins(site))
    assert done.returncode == 0, done.stderr
    validator = Draft202012Validator(json.loads(done.stdout))
    assert "ultimatum" in validator.schema["properties"]["kind"]["enum"]
    guide = (REPO / "docs" / "extending.md").read_text(encoding="utf-8")
    example = next(yaml.safe_load(b) for b in re.findall(r"```yaml\n(.*?)```", guide, re.S) if "kind: ultimatum" in b)
    for doc in (yaml.safe_load(demo_run_file(tmp_path).read_text(encoding="utf-8")), example):
        assert list(validator.iter_errors(doc)) == []
    typo = {**example, "series": {"small": {"params": {"stak": 10}}}}
    assert [e.message for e in validator.iter_errors(typo)] == ["Additional properties are not allowed ('stak' was unexpected)"]


def test_a_plugin_that_fails_to_import_stops_its_kind_in_one_line_and_leaves_the_others_working(site, tmp_path):
    broken = tmp_path / "broken"
    fake_distribution(broken, "broken-kind", {"sociolab.scenarios": {"coinflip": "coinflip_kind:CoinFlip"}},
                      {"coinflip_kind": "import json\nimport no_such_dependency_xyz\n"})
    path = write_yaml(tmp_path, TINY_DISCUSSION.replace("name: chat", "name: flip\nkind: coinflip"), "flip.yaml")
    line = one_line_error(cli("run", str(path), "--db", str(tmp_path / "f.duckdb"), env=with_plugins(broken, site)))
    assert "plugin broken-kind 0.1 (entry point sociolab.scenarios: coinflip = coinflip_kind:CoinFlip)" in line
    assert "ModuleNotFoundError: No module named 'no_such_dependency_xyz'" in line
    assert f"(at {broken / 'coinflip_kind.py'}:2)" in line and "uninstall broken-kind" in line
    chat = write_yaml(tmp_path, TINY_DISCUSSION, "chat.yaml")
    for args in ([str(chat)], [str(demo_run_file(tmp_path))]):
        done = cli("run", *args, "--db", str(tmp_path / "ok.duckdb"), "-q", env=with_plugins(broken, site))
        assert done.returncode == 0, done.stderr


# ------------------------------------------------------------------------------ the kind's logic, scripted

class ScriptedPlayers(ProviderDefaults):
    """Serves `script/<reply>` models: every call is answered with <reply> ('_' for spaces)."""

    name = "scripted"

    def serves(self, model, endpoint):
        return model.startswith("script/")

    def in_process(self, model, endpoint):
        return True

    async def complete(self, request) -> ProviderReply:
        return ProviderReply(text=request.model.split("/", 1)[1].replace("_", " "))


@pytest.mark.parametrize("proposer, responder, stake, expect", [
    ("Offer:_40", "Decision:_accept", 100, {"offer": 40.0, "accepted": 1.0, "payoffs": (60.0, 40.0)}),
    ("I_offer_30", "I_reject_this", 100, {"offer": 30.0, "accepted": 0.0, "payoffs": (0.0, 0.0)}),
    ("Offer:_400", "Decision:_accept", 100, {"offer": None, "accepted": None, "payoffs": (None, None)}),
    ("Offer:_5", "maybe", 10, {"offer": 5.0, "accepted": None, "payoffs": (None, None)}),
])
def test_the_plugin_kind_scores_scripted_replies(site, plugins, monkeypatch, tmp_path, proposer, responder, stake,
                                                 expect):
    monkeypatch.syspath_prepend(str(site))
    path = write_yaml(tmp_path, f"""
        name: scripted
        kind: ultimatum
        agents:
          personas:
            - {{key: p, model: script/{proposer}}}
            - {{key: r, model: script/{responder}}}
        params: {{stake: {stake}}}
        """)
    store = Store.open(tmp_path / "s.duckdb")
    asyncio.run(execute(load_plan(path), store, client=ModelClient(ClientSettings(), providers=[ScriptedPlayers()])))
    got = dict(store.con.execute("SELECT metric || ':' || agent_id, value FROM outcomes").fetchall())
    assert (got["offer:p"], got["accepted:r"]) == (expect["offer"], expect["accepted"])
    assert (got["payoff:p"], got["payoff:r"]) == expect["payoffs"]
    assert registry.scenario_class("ultimatum").__module__ == "ultimatum_demo"


# ------------------------------------------------------------------------------ failure modes, in process

CONTRACT_BREAKERS = {
    "not_a_class": ("NOT_A_CLASS = 3", "is not a subclass of sociolab.scenarios.base.Scenario"),
    "no_forbid": ("""
        from pydantic import BaseModel
        from sociolab.scenarios.discussion import Discussion
        class P(BaseModel):
            rounds: int = 1
        class NoForbid(Discussion):
            kind = "no_forbid"
            Params = P
        """, "its `Params` must refuse unknown keys"),
    "no_run": ("""
        from sociolab.scenarios.base import Scenario
        from sociolab.scenarios.discussion import DiscussionParams
        class NoRun(Scenario):
            kind = "no_run"
            Params = DiscussionParams
            def place_agents(self, personas, roster):
                return []
        """, "it does not implement run"),
    "sync_run": ("""
        from sociolab.scenarios.discussion import Discussion
        class SyncRun(Discussion):
            kind = "sync_run"
            def run(self, ctx):
                return None
        """, "its `run` must be `async def run(self, ctx)`"),
    "renamed": ("""
        from sociolab.scenarios.discussion import Discussion
        class Renamed(Discussion):
            kind = "other_name"
        """, "its `kind` is 'other_name', not the entry point's name 'renamed'"),
}
CLASS_OF = {"not_a_class": "NOT_A_CLASS", "no_forbid": "NoForbid", "no_run": "NoRun", "sync_run": "SyncRun",
            "renamed": "Renamed"}


@pytest.mark.parametrize("name", list(CONTRACT_BREAKERS))
def test_a_class_that_breaks_the_contract_is_refused_in_one_line_saying_what_is_missing(plugins, name):
    source, problem = CONTRACT_BREAKERS[name]
    fake_distribution(plugins, f"bad-{name}", {"sociolab.scenarios": {name: f"bad_{name}:{CLASS_OF[name]}"}},
                      {f"bad_{name}": source})
    with pytest.raises(UserError) as raised:
        registry.scenario_class(name)
    message = str(raised.value)
    assert problem in message and f"plugin bad-{name} 0.1 (entry point sociolab.scenarios: {name} = " in message
    assert "\n" not in message and "docs/extending.md" in message


def test_a_plugin_kind_named_like_a_built_in_or_like_another_plugins_is_refused(plugins):
    fake_distribution(plugins, "shadow", {"sociolab.scenarios": {"discussion": "shadow_mod:Discussion",
                                                                 "twin": "shadow_mod:Discussion"}},
                      {"shadow_mod": "from sociolab.scenarios.discussion import Discussion\n"})
    fake_distribution(plugins, "other-twin", {"sociolab.scenarios": {"twin": "shadow_mod:Discussion"}})
    with pytest.raises(UserError, match=r"^plugin shadow 0\.1 \(entry point sociolab\.scenarios: discussion = "
                                        r"shadow_mod:Discussion\) declares kind 'discussion', which is a built-in "
                                        r"kind; .* or uninstall shadow$"):
        registry.scenario_class("discussion")
    with pytest.raises(UserError, match=r"^scenario kind 'twin' is declared by plugin (shadow|other-twin) 0\.1 .* and "
                                        r"by plugin (shadow|other-twin) 0\.1 .*; uninstall one of them"):
        registry.scenario_class("twin")


def test_plugins_are_read_once_and_imported_only_when_their_kind_is_asked_for(plugins):
    fake_distribution(plugins, "lazy", {"sociolab.scenarios": {"lazy_kind": "lazy_mod:Lazy"}},
                      {"lazy_mod": "raise RuntimeError('imported')\n"})
    assert registry.scenario_class("discussion") is Discussion  # the broken plugin is not imported
    assert "lazy_mod" not in sys.modules
    with pytest.raises(UserError, match="RuntimeError: imported"):
        registry.kinds()  # listing every kind imports every plugin
    fake_distribution(plugins, "late", {"sociolab.scenarios": {"late_kind": "late_mod:Late"}})
    assert "late_kind" not in registry.PLUGINS.declared()  # read once ...
    registry.forget_plugins()
    assert "late_kind" in registry.PLUGINS.declared()  # ... until told to read again


def test_a_plugin_kind_is_loaded_once(plugins):
    fake_distribution(plugins, "once", {"sociolab.scenarios": {"once_kind": "once_mod:Once"}},
                      {"once_mod": """
                          from sociolab.scenarios.discussion import Discussion
                          class Once(Discussion):
                              kind = "once_kind"
                          """})
    first = registry.scenario_class("once_kind")
    del sys.modules["once_mod"]  # a second import would make a new class
    assert registry.scenario_class("once_kind") is first and registry.kinds()["once_kind"] is first


def test_built_in_kinds_are_imported_only_when_asked_for_and_the_table_matches_their_classes():
    """A discussion never imports the sandbox, games or instrumental modules (start-up); the
    name -> module table agrees with each class's own `kind`."""
    import subprocess
    import sys

    from sociolab.scenarios.registry import BUILTIN, builtin_kinds

    assert {name: cls.kind for name, cls in builtin_kinds().items()} == {name: name for name in BUILTIN}
    probe = ("import sys; from sociolab.scenarios.registry import scenario_class; scenario_class('discussion'); "
             "print(sorted(m for m in sys.modules if m.startswith('sociolab.scenarios.')))")
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout
    assert "discussion" in loaded
    assert not any(name in loaded for name in ("games", "instrumental", "peer_preservation", "agentic", "sandbox"))

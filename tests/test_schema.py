"""JSON Schemas for editors: committed copies current, every library file and docs example valid,
`params` typed by `kind`, and the schema's verdict the loader's on the cases editors care about.

Validation uses a real JSON Schema validator (jsonschema, draft 2020-12), as yaml-language-server
and CI linters would.
"""

from __future__ import annotations

import copy
import json
import re
from pathlib import Path

import pytest
import yaml
from jsonschema import Draft202012Validator

from sociolab.base.errors import UserError
from sociolab.config import load_plan
from sociolab.scenarios.registry import BUILTIN
from sociolab.schema import COMMITTED, KINDS_OF_FILE, rendered, schema_for

from tests.conftest import REPO, cli, write_yaml

LIBRARY = {  # library folder pattern -> the kind of file its YAMLs are
    "scenarios/library/*.yaml": "scenario",
    "judges/library/judges.yaml": "judges",
    "judges/library/warroom.yaml": "codebook",
    "judges/library/safety.yaml": "codebook",
    "personas/library/*.yaml": "roster",
}
HEADER = re.compile(r"^# yaml-language-server: \$schema=(\S+)$")


def validator(which: str) -> Draft202012Validator:
    schema = json.loads((COMMITTED / f"{which}.schema.json").read_text(encoding="utf-8"))
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def problems(which: str, doc) -> list[str]:
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator(which).iter_errors(doc)]


def library_files() -> list[tuple[Path, str]]:
    files = [(path, which) for pattern, which in LIBRARY.items() for path in sorted(REPO.glob(pattern))]
    assert len(files) >= 11
    return files


@pytest.mark.parametrize("which", KINDS_OF_FILE)
def test_the_committed_schemas_are_what_the_code_generates(which):
    committed = (COMMITTED / f"{which}.schema.json").read_text(encoding="utf-8")
    assert committed == rendered(schema_for(which, plugins=False)), \
        "docs/json-schema is stale: run `python -m sociolab.schema` and commit the result"


@pytest.mark.parametrize("path,which", library_files(), ids=lambda v: str(v).rsplit("/", 2)[-1])
def test_every_library_file_names_its_schema_and_is_valid(path, which):
    first = path.read_text(encoding="utf-8").splitlines()[0]
    match = HEADER.match(first)
    assert match, f"{path}: first line must be '# yaml-language-server: $schema=...'"
    assert (path.parent / match.group(1)).resolve() == (COMMITTED / f"{which}.schema.json").resolve()
    assert problems(which, yaml.safe_load(path.read_text(encoding="utf-8"))) == []


def docs_examples() -> list[tuple[str, str, dict]]:
    """Every YAML block of README.md and docs/ that is a whole file of some kind, with the kind it
    is. Left out: fragments (a lone `prices:` section), outlines with `{...}` placeholders, and
    files of a plugin's kind (tests/test_plugins.py checks those with the plugin installed)."""
    found = []
    for md in [REPO / "README.md", *sorted((REPO / "docs").rglob("*.md"))]:
        for n, block in enumerate(re.findall(r"```ya?ml\n(.*?)```", md.read_text(encoding="utf-8"), re.S)):
            doc = yaml.safe_load(block)
            which = kind_of(doc)
            if which is not None and "{...}" not in block and doc.get("kind", "discussion") in BUILTIN:
                found.append((f"{md.relative_to(REPO)}#{n}", which, doc))
    return found


def kind_of(doc) -> str | None:
    if not isinstance(doc, dict):
        return None
    if {"name", "agents"} <= doc.keys():
        return "scenario"
    if "judges" in doc:
        return "judges"
    if {"name", "flags"} <= doc.keys():
        return "codebook"
    if {"roster", "personas"} <= doc.keys():
        return "roster"
    return None


def test_the_docs_hold_whole_file_examples():
    assert len([e for e in docs_examples() if e[1] == "scenario"]) >= 1
    assert {which for _, which, _ in docs_examples()} >= {"scenario", "codebook"}


@pytest.mark.parametrize("where,which,doc", docs_examples(), ids=lambda v: v if isinstance(v, str) else "")
def test_every_whole_file_example_in_the_docs_is_valid(where, which, doc):
    assert problems(which, doc) == [], where


# ---- params typed by kind, as the loader types them -------------------------------------------

BASE = {"name": "x", "agents": {"roster": "warroom"}}
PAIR = {"name": "x", "agents": {"personas": [{"key": "a", "model": "sim/a"}, {"key": "b", "model": "sim/b"}]}}

CASES = [  # (why, document, the schema and the loader accept it)
    ("a discussion", {**BASE, "params": {"seed_message": "@all hi", "rounds": 3}}, True),
    ("kind absent means discussion: its params", {**BASE, "params": {"seed_message": "@all hi", "roundz": 3}}, False),
    ("a discussion needs its seed message", {**BASE, "params": {"rounds": 3}}, False),
    ("a series may give what the file lacks", {**BASE, "params": {"rounds": 3},
                                               "series": {"A": {"params": {"seed_message": "@all hi"}}}}, True),
    ("a series' params are typed too", {**BASE, "params": {"seed_message": "@all hi"},
                                        "series": {"A": {"params": {"rounds": "many"}}}}, False),
    ("another kind's params are refused", {**BASE, "kind": "repeated_games", "params": {"seed_message": "@all"}},
     False),
    ("a game with its own params", {**PAIR, "kind": "repeated_games", "params": {"rounds": 5}}, True),
    ("an unknown kind", {**BASE, "kind": "nope"}, False),
    ("a typo at the top level", {**BASE, "params": {"seed_message": "@all hi"}, "repeat": 2}, False),
    ("agents are a roster spec", {**BASE, "agents": {"roster": "warroom", "exclued": ["x"]},
                                  "params": {"seed_message": "@all hi"}}, False),
    ("cross names params of the kind", {**BASE, "params": {"seed_message": "@all hi"},
                                        "cross": {"roundz": [1, 2]}}, False),
]


@pytest.mark.parametrize("why,doc,valid", CASES, ids=[c[0] for c in CASES])
def test_params_are_typed_by_kind_and_the_schema_agrees_with_the_loader(tmp_path, why, doc, valid):
    assert (problems("scenario", doc) == []) is valid, (why, problems("scenario", doc))
    path = write_yaml(tmp_path, yaml.safe_dump(copy.deepcopy(doc)))
    try:
        load_plan(path)
        loaded = True
    except UserError:
        loaded = False
    assert loaded is valid, why


def test_schema_command_prints_a_valid_schema_and_refuses_an_unknown_kind_in_one_line(tmp_path):
    done = cli("schema")
    assert done.returncode == 0, done.stderr
    schema = json.loads(done.stdout)
    Draft202012Validator.check_schema(schema)
    assert "discussion" in schema["properties"]["kind"]["enum"]
    out = tmp_path / "codebook.json"
    assert cli("schema", "codebook", "-o", str(out)).returncode == 0
    assert json.loads(out.read_text()) == schema_for("codebook")
    bad = cli("schema", "nope")
    assert bad.returncode == 2 and bad.stderr.strip().splitlines() == [
        "error: unknown kind of file 'nope': give one of scenario, judges, codebook, roster"]

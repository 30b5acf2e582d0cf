"""sociolab/base/yamlfile.py: every problem with a file is one UserError reading `file:line: key: what
to fix`, with the line of the offending node."""

from __future__ import annotations

import os
import sys
from typing import Literal

import pytest
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sociolab.base.errors import UserError
from sociolab.base.yamlfile import format_loc, read_yaml, validate, validation_error

from tests.conftest import write_yaml


class Member(BaseModel):
    model_config = ConfigDict(extra="forbid")
    key: str
    model: str


class Params(BaseModel):
    model_config = ConfigDict(extra="forbid")
    rounds: int = Field(1, ge=1)
    order: Literal["fixed", "shuffled"] = "fixed"
    limit: int | str = 3

    @field_validator("order", mode="before")
    @classmethod
    def no_random(cls, v):
        if v == "random":
            raise ValueError("use 'shuffled' for a random order")
        return v


class Doc(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str
    roster: list[Member] = []
    params: Params = Params()


GOOD = """\
name: demo            # line 1
roster:               # line 2
  - key: a            # line 3
    model: sim/a      # line 4
  - key: b            # line 5
    model: sim/b      # line 6
params:               # line 7
  rounds: 3           # line 8
  order: fixed        # line 9
"""


def fails(tmp_path, text: str, model: type[BaseModel] = Doc) -> UserError:
    path = write_yaml(tmp_path, text, "x.yaml")
    with pytest.raises(UserError) as info:
        validate(read_yaml(path), model)
    return info.value


def short(err: UserError, tmp_path) -> str:
    """The error as printed, with the test's temporary folder left out."""
    return str(err).replace(f"{tmp_path}{os.sep}", "")


def test_a_good_file_validates(tmp_path):
    doc = read_yaml(write_yaml(tmp_path, GOOD))
    got = validate(doc, Doc)
    assert got.name == "demo" and [m.key for m in got.roster] == ["a", "b"] and got.params.rounds == 3


# ---- line numbers of validation errors ------------------------------------------------------------

@pytest.mark.parametrize("old,new,expected", [
    ("  rounds: 3 ", "  rounds: lots", "x.yaml:8: params.rounds: Input should be a valid integer"),
    ("  rounds: 3 ", "  rounds: 0", "x.yaml:8: params.rounds: Input should be greater than or equal to 1"),
    ("  order: fixed", "  order: random", "x.yaml:9: params.order: use 'shuffled' for a random order"),
    ("    model: sim/b", "    model: sim/b\n    modle: sim/c", "x.yaml:7: roster[1].modle: unknown key (check its spelling"),
    ("    model: sim/b", "    colour: red", "x.yaml:5: roster[1].model: required key is missing"),
    ("  - key: b", "  - key: [b]", "x.yaml:5: roster[1].key: Input should be a valid string"),
    ("name: demo", "title: demo", "x.yaml:1: name: required key is missing"),
], ids=["nested-type", "nested-constraint", "own-validator", "unknown-in-list-item", "missing-in-list-item",
        "list-item-type", "missing-top-level"])
def test_validation_errors_name_file_line_key_and_fix(tmp_path, old, new, expected):
    text = GOOD.replace(old, new, 1)
    assert text != GOOD
    err = fails(tmp_path, text)
    assert short(err, tmp_path).startswith(expected), str(err)
    assert "\n" not in str(err)


def test_the_error_names_the_file_it_came_from(tmp_path):
    err = fails(tmp_path, "name: 5\n")
    assert err.file == str(tmp_path / "x.yaml")
    assert err.line == 1
    assert str(err) == f"{tmp_path / 'x.yaml'}:1: name: Input should be a valid string"


def test_union_member_names_are_dropped_from_the_key(tmp_path):
    err = fails(tmp_path, "name: x\nparams:\n  limit: [1]\n")
    assert short(err, tmp_path).startswith("x.yaml:3: params.limit: Input should be a valid integer")


def test_only_the_first_error_is_reported(tmp_path):
    err = fails(tmp_path, "name: 1\nparams: {rounds: x, order: y}\n")
    assert short(err, tmp_path) == "x.yaml:1: name: Input should be a valid string"


def test_base_loc_prefixes_the_key_and_finds_the_line(tmp_path):
    path = write_yaml(tmp_path, "series:\n  A:\n    params:\n      rounds: x\n")
    doc = read_yaml(path)
    with pytest.raises(ValidationError) as info:
        Params.model_validate(doc.data["series"]["A"]["params"])
    err = validation_error(doc, info.value, ("series", "A", "params"))
    assert (err.line, err.message) == (4, "series.A.params.rounds: Input should be a valid integer, "
                                          "unable to parse string as an integer")


def test_line_of_walks_as_deep_as_the_file_goes(tmp_path):
    doc = read_yaml(write_yaml(tmp_path, GOOD))
    assert doc.line_of(()) == 1
    assert doc.line_of(("params",)) == 8              # a block mapping starts at its first key
    assert doc.line_of(("roster", 1, "model")) == 6
    assert doc.line_of(("roster", 1, "missing")) == 5  # deepest node that exists: the list item
    assert doc.line_of(("roster", 9)) == 3             # past the end of the list: the list
    assert doc.line_of(("nope", "deeper")) == 1


def test_format_loc():
    assert format_loc(("agents", "personas", 0, "key")) == "agents.personas[0].key"
    assert format_loc(()) == ""


def test_a_duplicate_key_is_reported_at_the_offending_line(tmp_path):
    err = fails(tmp_path, "name: a\nname: 7\n")
    assert err.line == 2


def test_an_unknown_key_with_a_block_value_is_reported_at_the_key(tmp_path):
    err = fails(tmp_path, "name: a\nparamz:\n  rounds: 3\n")
    assert short(err, tmp_path).startswith("x.yaml:2: paramz: unknown key")


# ---- unicode --------------------------------------------------------------------------------------

def test_unicode_content_and_its_line_numbers(tmp_path):
    text = "# 日本語のコメント\nname: \"Café ☕ — 👩‍💻\"\nroster:\n  - key: é\n    model: sim/ü\n    extra: ñ\n"
    err = fails(tmp_path, text)
    assert short(err, tmp_path).startswith("x.yaml:6: roster[0].extra: unknown key")
    doc = read_yaml(tmp_path / "x.yaml")
    assert doc.data["name"] == "Café ☕ — 👩‍💻" and doc.data["roster"][0]["key"] == "é"


def test_a_byte_order_mark_does_not_shift_lines(tmp_path):
    path = tmp_path / "bom.yaml"
    path.write_text("\ufeffname: x\nparams:\n  rounds: zero\n", encoding="utf-8")
    with pytest.raises(UserError) as info:
        validate(read_yaml(path), Doc)
    assert info.value.line == 3 and "params.rounds" in info.value.message


def test_a_file_that_is_not_utf8_is_refused_in_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(UserError) as info:
        read_yaml(path)
    assert str(info.value) == f"{path}:1: not UTF-8 text (byte 9); save the file as UTF-8"


# ---- files that cannot be read or parsed ----------------------------------------------------------

def test_a_missing_file(tmp_path):
    with pytest.raises(UserError) as info:
        read_yaml(tmp_path / "nope.yaml")
    assert str(info.value) == f"{tmp_path / 'nope.yaml'}: no such YAML file"
    assert info.value.line is None


def test_a_directory(tmp_path):
    with pytest.raises(UserError) as info:
        read_yaml(tmp_path)
    assert str(info.value) == f"{tmp_path}: is a directory; give a YAML file"


def test_an_endless_or_huge_file_is_refused_without_reading_it_all(tmp_path, monkeypatch):
    import sociolab.base.yamlfile as yamlfile

    with pytest.raises(UserError, match="/dev/zero: is a character device, not a regular file"):
        read_yaml("/dev/zero")
    sparse = tmp_path / "sparse.yaml"
    with sparse.open("wb") as fh:
        fh.truncate(64 * 1024 * 1024)  # 64 MiB of holes: costs no disk
    with pytest.raises(UserError, match="sparse.yaml: larger than 16 MiB"):
        read_yaml(sparse)
    monkeypatch.setattr(yamlfile, "MAX_BYTES", 10)
    big = tmp_path / "big.yaml"
    big.write_text("name: " + "x" * 20 + "\n")
    with pytest.raises(UserError, match="big.yaml: larger than"):
        read_yaml(big)


@pytest.mark.parametrize("opening, closing", [("[", "]"), ("{a: ", "}")])
def test_deep_nesting_is_one_line_not_a_recursion_error(tmp_path, opening, closing):
    deep = tmp_path / "deep.yaml"
    deep.write_text("name: t\nparams:\n  x: " + opening * 5000 + closing * 5000 + "\n")
    with pytest.raises(UserError) as info:
        read_yaml(deep)
    assert info.value.line == 3 and "nested more than 100 levels deep" in info.value.message
    shallow = tmp_path / "shallow.yaml"
    shallow.write_text("x: " + opening * 50 + closing * 50 + "\n")
    assert read_yaml(shallow).data["x"] is not None


def test_a_key_twice_in_a_nested_mapping_points_at_the_second(tmp_path):
    err = fails(tmp_path, "name: a\nparams:\n  rounds: 3\n  seed_message: hi\n  rounds: 4\n")
    assert err.line == 5 and err.message == "rounds: this key appears twice (first on line 3); keep one"


def test_merge_keys_are_not_duplicates(tmp_path):
    path = tmp_path / "m.yaml"
    path.write_text("base: &b {a: 1}\nx:\n  <<: *b\n  b: 2\n")
    assert read_yaml(path).data["x"] == {"a": 1, "b": 2}


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root reads anything")
def test_an_unreadable_file(tmp_path):
    path = write_yaml(tmp_path, "name: x\n")
    path.chmod(0)
    try:
        with pytest.raises(UserError) as info:
            read_yaml(path)
    finally:
        path.chmod(0o600)
    assert str(info.value) == f"{path}: cannot read: PermissionError"


@pytest.mark.parametrize("text,line,words", [
    ("name: x\nparams:\n  rounds: 3\n rounds: 4\n", 4, "expected <block end>"),
    ("name: x\n  bad: indent\n", 2, "mapping values are not allowed here"),
    ("name: \"unclosed\nparams: {}\n", 3, "found unexpected end of stream"),
    ("name: x\nroster: [a, b\nparams: {}\n", 3, "expected ',' or ']'"),
    ("name: x\n\trounds: 3\n", 2, "found character '\\t' that cannot start any token"),
    ("name: x\n---\nname: y\n", 2, "but found another document"),
    ("name: !!python/object:os.system x\n", 1, "could not determine a constructor"),
    ("name: *nowhere\n", 1, "found undefined alias"),
], ids=["dedent", "bad-indent", "unclosed-quote", "unclosed-flow", "tab", "two-documents", "unsafe-tag",
        "undefined-alias"])
def test_invalid_yaml_is_one_line_with_its_line_number(tmp_path, text, line, words):
    path = write_yaml(tmp_path, text, "x.yaml")
    with pytest.raises(UserError) as info:
        read_yaml(path)
    err = info.value
    assert err.line == line
    assert err.message.startswith("invalid YAML: ") and words in err.message
    assert "\n" not in str(err)
    assert str(err).startswith(f"{path}:{line}: invalid YAML: ")


@pytest.mark.parametrize("text,what", [("- a\n- b\n", "list"), ("just a string\n", "scalar"), ("", "empty"),
                                       ("# only a comment\n", "comment"), ("42\n", "number")])
def test_the_top_level_must_be_a_mapping(tmp_path, text, what):
    err = fails(tmp_path, text)
    assert str(err) == f"{tmp_path / 'x.yaml'}:1: expected a mapping of keys to values at the top level"


def test_validate_a_part_of_the_document(tmp_path):
    doc = read_yaml(write_yaml(tmp_path, GOOD))
    assert validate(doc, Params, doc.data["params"]).rounds == 3
    with pytest.raises(UserError, match="expected a mapping"):
        validate(doc, Params, doc.data["roster"])


def test_a_control_character_is_one_line_at_its_line(tmp_path):
    path = tmp_path / "ctl.yaml"
    path.write_text("name: a\nkind: b\x1f\n")
    with pytest.raises(UserError) as info:
        read_yaml(path)
    assert str(info.value) == f"{path}:2: invalid YAML: the control character U+001F is not allowed; remove it"


@pytest.mark.parametrize("text, line, says", [
    ("a: &x {b: *x}\n", 1, "an alias refers to a value that contains it"),
    ("a: &x [1, *x]\n", 1, "an alias refers to a value that contains it"),
    ("l0: &l0 [x,x,x,x,x,x,x,x,x,x]\n" + "".join(
        f"l{i}: &l{i} [{','.join([f'*l{i - 1}'] * 10)}]\n" for i in range(1, 9)), 6, "expand to more than 1,000,000"),
    ("name: t\nrounds: !!int abc\n", 2, "'abc' is not a valid int"),
    ("name: t\nflag: !!bool -1.9\n", 2, "'-1.9' is not a valid bool"),
    ("name: t\nt: !!float null\n", 2, "'null' is not a valid float"),
])
def test_endless_aliases_and_values_that_break_their_tags_are_one_line(tmp_path, text, line, says):
    path = tmp_path / "x.yaml"
    path.write_text(text)
    with pytest.raises(UserError) as info:
        read_yaml(path)
    assert info.value.line == line and says in info.value.message and "\n" not in str(info.value)


def test_shared_aliases_within_the_bound_still_load(tmp_path):
    path = tmp_path / "x.yaml"
    path.write_text("base: &b {rounds: 3}\none: *b\ntwo: *b\n")
    assert read_yaml(path).data == {"base": {"rounds": 3}, "one": {"rounds": 3}, "two": {"rounds": 3}}

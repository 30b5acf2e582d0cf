"""YAML in, validated pydantic models out, with errors that name the file and line.

PyYAML gives line marks only on its node tree, pydantic gives error locations only as key paths;
this module joins the two so that every validation error reads `file.yaml:12: roster[3].model:
field required`.

A file is read with bounds, so that no input can hang or crash the command: at most
`MAX_BYTES` (so `/dev/zero` or a huge file is refused, not read into memory), nesting at most
`MAX_DEPTH` levels (PyYAML composes recursively), and each key at most once per mapping (PyYAML
would silently keep the last of two).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sociolab.base.errors import UserError, first_line
from sociolab.base.userfiles import regular_file

M = TypeVar("M", bound=BaseModel)

MAX_BYTES = 16 * 1024 * 1024
MAX_DEPTH = 100
MERGE_KEY = "<<"
MAX_EXPANDED = 1_000_000


class BoundedLoader(yaml.SafeLoader):
    """SafeLoader that refuses nesting deeper than MAX_DEPTH while composing (before Python's
    own recursion limit would turn it into a crash)."""

    depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        self.depth += 1
        try:
            if self.depth > MAX_DEPTH:
                mark = self.peek_event().start_mark
                raise UserError(f"invalid YAML: nested more than {MAX_DEPTH} levels deep", line=mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self.depth -= 1

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        """A value that does not fit its explicit tag (`!!int abc`, `!!bool 2`, `!!float null`)
        is the file's mistake: one line at the value's line, not PyYAML's ValueError or KeyError."""
        try:
            return super().construct_object(node, deep)
        except (ValueError, KeyError, TypeError, OverflowError, AttributeError) as exc:  # !!timestamp 7: AttributeError
            raise UserError(f"invalid YAML: {str(node.value)[:60]!r} is not a valid {node.tag.rsplit(':', 1)[-1]} "
                            f"({type(exc).__name__}: {first_line(exc, 120)})", line=node.start_mark.line + 1) from None


class YamlDoc:
    """A parsed YAML file: its data and its node tree (for line numbers)."""

    def __init__(self, path: Path, data: Any, root: yaml.Node | None):
        self.path = path
        self.data = data
        self.root = root

    def line_of(self, loc: tuple[Any, ...], *, at_key: bool = False) -> int | None:
        """1-based line of the deepest node reachable along `loc` (a pydantic error location).
        `at_key`: the error is about the last key itself (say, a misspelt one), so point at the
        key, not at its value (which may be a block on the lines below)."""
        node, line = self.root, None
        for i, key in enumerate(loc):
            if node is None:
                break
            line = node.start_mark.line + 1
            key_node, node = entry(node, key)
            if at_key and i == len(loc) - 1 and key_node is not None:
                return key_node.start_mark.line + 1
        if node is not None:
            line = node.start_mark.line + 1
        return line


def entry(node: yaml.Node, key: Any) -> tuple[yaml.Node | None, yaml.Node | None]:
    """(key node, value node) of `key` in a mapping (the key node is None for a sequence item)."""
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(key):
                return k, v
        return None, None
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return None, node.value[key]
    return None, None


def read_text(path: Path) -> str:
    """The file's text, read with a size bound; every way of failing is one line."""
    regular_file(path, "YAML file")
    try:
        with path.open("rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise UserError("no such file", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or exc.__class__.__name__}", file=path) from None
    if len(raw) > MAX_BYTES:
        raise UserError(f"larger than {MAX_BYTES // (1024 * 1024)} MiB; a scenario or config file is a few KiB: "
                        "is this the right file?", file=path)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[:exc.start].count(b"\n") + 1
        raise UserError(f"not UTF-8 text (byte {exc.start}); save the file as UTF-8", file=path, line=line) from None


def check_structure(root: yaml.Node | None, path: Path) -> None:
    """Refuse, at the offending line: a key written twice in one mapping, an alias that contains
    itself (`a: &x {b: *x}`, an endless structure), and aliases that expand past MAX_EXPANDED
    values (the "billion laughs": small to write, endless to validate or store). Walked
    iteratively, each node once."""
    size: dict[int, int] = {}  # node id -> values it expands to; -1 while its children are walked
    todo: list[tuple[yaml.Node, bool]] = [(root, False)] if root is not None else []
    while todo:
        node, children_done = todo.pop()
        kids = [n for pair in node.value for n in pair] if isinstance(node, yaml.MappingNode) else \
            list(node.value) if isinstance(node, yaml.SequenceNode) else []
        if children_done:
            size[id(node)] = 1 + sum(size[id(kid)] for kid in kids)
            if size[id(node)] > MAX_EXPANDED:
                raise UserError(f"invalid YAML: its aliases expand to more than {MAX_EXPANDED:,} values; write "
                                "the values out or use fewer aliases", file=path, line=node.start_mark.line + 1)
            continue
        if id(node) in size:
            continue  # an alias of a value already walked
        size[id(node)] = -1
        if isinstance(node, yaml.MappingNode):
            refuse_repeated_key(node, path)
        elif isinstance(node, yaml.ScalarNode):
            refuse_lone_surrogate(node, path)
        todo.append((node, True))
        for kid in kids:
            if size.get(id(kid)) == -1:  # an ancestor: the value contains itself
                raise UserError("invalid YAML: an alias refers to a value that contains it (an endless "
                                "structure); write the value out", file=path, line=kid.start_mark.line + 1)
            if id(kid) not in size:
                todo.append((kid, False))


def refuse_lone_surrogate(node: yaml.ScalarNode, path: Path) -> None:
    """`"\\ud800"` (an escape of half a UTF-16 pair) makes a string no file, database or terminal
    can hold: refuse it where it is written rather than fail a run later."""
    try:
        node.value.encode("utf-8")
    except UnicodeEncodeError:
        raise UserError("a lone surrogate (\\ud800-\\udfff without its pair) is not valid text; write the "
                        "character itself", file=path, line=node.start_mark.line + 1) from None


def refuse_repeated_key(node: yaml.MappingNode, path: Path) -> None:
    """A key twice in one mapping is an error at its second line (PyYAML keeps the last silently)."""
    seen: dict[str, int] = {}
    for key, _ in node.value:
        if isinstance(key, yaml.ScalarNode) and key.value != MERGE_KEY:
            if key.value in seen:
                raise UserError(f"{key.value}: this key appears twice (first on line {seen[key.value]}); keep one",
                                file=path, line=key.start_mark.line + 1)
            seen[key.value] = key.start_mark.line + 1


def read_yaml(path: str | Path) -> YamlDoc:
    """Parse a YAML file or raise a one-line UserError naming the file and line."""
    path = Path(path)
    text = read_text(path)
    loader: BoundedLoader | None = None
    try:
        loader = BoundedLoader(text)  # its reader checks the characters at once: inside the try
        root = loader.get_single_node()
        check_structure(root, path)
        data = loader.construct_document(root) if root is not None else None
    except UserError as exc:
        raise UserError(exc.message, file=path, line=exc.line) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(f"invalid YAML: {exc.problem or exc.context}", file=path, line=line) from None
    except yaml.reader.ReaderError as exc:
        line = text[:exc.position].count("\n") + 1
        code = exc.character if isinstance(exc.character, int) else ord(exc.character)
        raise UserError(f"invalid YAML: the control character U+{code:04X} is not allowed; remove it",
                        file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {first_line(exc)}", file=path) from None
    finally:
        if loader is not None:
            loader.dispose()
    return YamlDoc(path, data, root)


def validate(doc: YamlDoc, model: type[M], data: Any = None, base_loc: tuple = ()) -> M:
    """Validate `data` (default: the whole document) as `model`; first error becomes a UserError."""
    data = doc.data if data is None else data
    if not isinstance(data, dict):
        raise UserError("expected a mapping of keys to values at the top level", file=doc.path, line=1)
    return model_from(doc, model, data, base_loc)


def model_from(doc: YamlDoc, model: type[M], data: Any, base_loc: tuple = ()) -> M:
    """`model` validated from `data` (a part of `doc` at `base_loc`), or a one-line UserError."""
    try:
        value = model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(doc, exc, base_loc) from None
    refuse_bools_for_numbers(doc, value, data, base_loc)
    return value


def refuse_bools_for_numbers(doc: YamlDoc, value: Any, raw: Any, loc: tuple) -> None:
    """pydantic's lax mode reads YAML's `true` as the number 1 (`rounds: true` would run one
    round); a yes/no written where a number belongs is a mistake to report, at its line."""
    if isinstance(raw, bool) and isinstance(value, (int, float)) and not isinstance(value, bool):
        raise UserError(f"{format_loc(loc)}: {str(raw).lower()} is a yes/no value; give a number here",
                        file=doc.path, line=doc.line_of(loc))
    if isinstance(value, BaseModel) and isinstance(raw, dict):
        for name, field in type(value).model_fields.items():
            key = field.alias or name
            if key in raw:
                refuse_bools_for_numbers(doc, getattr(value, name), raw[key], loc + (key,))
    elif isinstance(value, (list, tuple)) and isinstance(raw, list):
        for i, (item, raw_item) in enumerate(zip(value, raw)):
            refuse_bools_for_numbers(doc, item, raw_item, loc + (i,))
    elif isinstance(value, dict) and isinstance(raw, dict):
        for key, item in value.items():
            if key in raw:
                refuse_bools_for_numbers(doc, item, raw[key], loc + (key,))


def validation_error(doc: YamlDoc, exc: ValidationError, base_loc: tuple = ()) -> UserError:
    err = exc.errors()[0]
    loc = base_loc + tuple(x for x in err["loc"] if not is_union_tag(x))
    where = format_loc(loc)
    message = explain(err)
    line = doc.line_of(loc, at_key=err.get("type") == "extra_forbidden")
    return UserError(f"{where}: {message}" if where else message, file=doc.path, line=line)


def is_union_tag(part: Any) -> bool:
    """pydantic puts union member names into locations (e.g. 'function-after[...]'); drop them."""
    return isinstance(part, str) and ("[" in part or part in {"str", "int", "dict", "list"})


def format_loc(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def explain(err: ErrorDetails) -> str:
    kind = err.get("type", "")
    if kind == "extra_forbidden":
        return "unknown key (check its spelling; see docs/scenarios.md for the allowed keys)"
    if kind == "missing":
        return "required key is missing"
    msg = err.get("msg", "invalid value")
    return msg[len("Value error, "):] if msg.startswith("Value error, ") else msg

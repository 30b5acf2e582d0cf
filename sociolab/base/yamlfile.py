"""YAML in, validated pydantic models out, with errors that name the file and line.

PyYAML gives line marks only on its node tree, pydantic gives error locations only as key paths;
this module joins the two so that every validation error reads `file.yaml:12: roster[3].model:
field required`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError
from pydantic_core import ErrorDetails

from sociolab.base.errors import UserError

M = TypeVar("M", bound=BaseModel)


class YamlDoc:
    """A parsed YAML file: its data and its node tree (for line numbers)."""

    def __init__(self, path: Path, data: Any, root: yaml.Node | None):
        self.path = path
        self.data = data
        self.root = root

    def line_of(self, loc: tuple[Any, ...]) -> int | None:
        """1-based line of the deepest node reachable along `loc` (a pydantic error location)."""
        node, line = self.root, None
        for key in loc:
            if node is None:
                break
            line = node.start_mark.line + 1
            node = child(node, key)
        if node is not None:
            line = node.start_mark.line + 1
        return line


def child(node: yaml.Node, key: Any) -> yaml.Node | None:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if k.value == str(key):
                return v
        return None
    if isinstance(node, yaml.SequenceNode) and isinstance(key, int) and 0 <= key < len(node.value):
        return node.value[key]
    return None


def read_yaml(path: str | Path) -> YamlDoc:
    """Parse a YAML file or raise a one-line UserError naming the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError("no such file", file=path) from None
    except (IsADirectoryError, UnicodeDecodeError, PermissionError) as exc:
        raise UserError(f"cannot read: {exc.__class__.__name__}", file=path) from None
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark else None
        raise UserError(f"invalid YAML: {exc.problem or exc.context}", file=path, line=line) from None
    except yaml.YAMLError as exc:
        raise UserError(f"invalid YAML: {exc}", file=path) from None
    return YamlDoc(path, data, root)


def validate(doc: YamlDoc, model: type[M], data: Any = None, base_loc: tuple = ()) -> M:
    """Validate `data` (default: the whole document) as `model`; first error becomes a UserError."""
    data = doc.data if data is None else data
    if not isinstance(data, dict):
        raise UserError("expected a mapping of keys to values at the top level", file=doc.path, line=1)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise validation_error(doc, exc, base_loc) from None


def validation_error(doc: YamlDoc, exc: ValidationError, base_loc: tuple = ()) -> UserError:
    err = exc.errors()[0]
    loc = base_loc + tuple(x for x in err["loc"] if not is_union_tag(x))
    where = format_loc(loc)
    message = explain(err)
    return UserError(f"{where}: {message}" if where else message, file=doc.path, line=doc.line_of(loc))


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

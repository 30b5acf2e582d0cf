"""Tool-call arguments as a model wrote them: bounded before they are parsed.

A model's arguments are a JSON text (or, in tests and from some providers, an object already).
`json` recurses once per level of `[` and `{`, so 50,000 levels would raise RecursionError: size
and nesting are checked first, without recursion, and anything refused comes back as a
WorkspaceError whose text the agent reads. The agent loop uses the same bounds to store and
summarise arguments (scenarios/agentic.py).
"""

from __future__ import annotations

import json
import re
from typing import Any

from .errors import WorkspaceError

MAX_ARGUMENTS_CHARS = 2_000_000  # the JSON text of one tool call's arguments
MAX_ARGUMENTS_DEPTH = 32         # nesting of [ and { in it (the tools' arguments need 2)
_RE_JSON_NESTING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def load_arguments(text: str | bytes, *, max_chars: int = MAX_ARGUMENTS_CHARS,
                   max_depth: int = MAX_ARGUMENTS_DEPTH) -> Any:
    """`json.loads` for tool-call arguments a model wrote, with their size and nesting bounded
    first (json recurses once per level: 50,000 levels would raise RecursionError). Raises
    WorkspaceError with a text the agent can read; json.JSONDecodeError for invalid JSON."""
    if len(text) > max_chars:
        raise WorkspaceError(f"arguments too long ({len(text)} characters; at most {max_chars})")
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError:
            raise WorkspaceError("arguments are not valid UTF-8") from None
    if text.count("[") + text.count("{") > max_depth:  # only then can they nest too deeply
        _check_nesting(text, max_depth)
    return json.loads(text)


def _check_nesting(text: str, max_depth: int) -> None:
    """Count the levels of `[` and `{` outside strings, in one pass without recursion."""
    depth = 0
    for m in _RE_JSON_NESTING.finditer(text):
        tok = m.group()
        if tok == "[" or tok == "{":
            depth += 1
            if depth > max_depth:
                raise WorkspaceError(f"arguments too deeply nested (more than {max_depth} levels of [ and {{)")
        elif tok == "]" or tok == "}":
            depth -= 1


def nesting_exceeds(value: Any, max_depth: int = MAX_ARGUMENTS_DEPTH) -> bool:
    """True if dicts and lists nest deeper than `max_depth` in `value` (checked without recursion)."""
    stack = [(value, 0)]
    while stack:
        v, d = stack.pop()
        if isinstance(v, dict):
            v = list(v.values())
        elif not isinstance(v, (list, tuple)):
            continue
        if d >= max_depth:
            return True
        stack.extend((x, d + 1) for x in v)
    return False


def arguments_object(tool: str, arguments: Any) -> dict:
    """The arguments of a call to `tool` as a dict (none given = `{}`), or a WorkspaceError
    `invalid arguments for <tool>: ...` the agent can act on."""
    if arguments is None or arguments == "":
        return {}
    if isinstance(arguments, dict):
        if nesting_exceeds(arguments):
            raise WorkspaceError(f"invalid arguments for {tool}: arguments too deeply nested (more than "
                                 f"{MAX_ARGUMENTS_DEPTH} levels of [ and {{)")
        return arguments
    if isinstance(arguments, (str, bytes)):
        value = _decoded(tool, arguments)
        if value is None:
            return {}
        if isinstance(value, dict):
            return value
    raise WorkspaceError(f"invalid arguments for {tool}: expected a JSON object")


def _decoded(tool: str, text: str | bytes) -> Any:
    try:
        return load_arguments(text)
    except WorkspaceError as exc:
        raise WorkspaceError(f"invalid arguments for {tool}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise WorkspaceError(f"invalid arguments for {tool}: not valid JSON ({exc.msg} at position "
                             f"{exc.pos})") from None
    except UnicodeDecodeError:
        raise WorkspaceError(f"invalid arguments for {tool}: not valid UTF-8") from None

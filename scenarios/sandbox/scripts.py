"""The scenario's scripts: the only code an agent can `run`, and what is checked before.

Nothing an agent writes is executed. `run` calls a Python callable the scenario registered, found
by its bare name (or the path of its stub file). Shell syntax is refused before the name is looked
up: metacharacters, spaces or parentheses in the name, metacharacters in any argument, too many
or too long arguments. While a script runs, its changes are attributed to the calling agent
`via="run:<script>"`. A script fails for the agent with `ScriptError` (a usage line the agent
reads); any other exception is a bug in the scenario, recorded in `internal_errors`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable

from .changes import ChangeLog
from .errors import ScriptError, WorkspaceError

if TYPE_CHECKING:
    from .workspace import Workspace

MAX_ARGS = 64
MAX_ARG_CHARS = 4096
SHELL_METACHARACTERS = (";", "|", "&", "$", "`", ">", "<", "\n", "\r", "\x00")
_NAME_ONLY = ("(", ")", " ", "\t")       # also refused in a script name: a call, not a name
_RE_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")

ScriptFn = Callable[["Workspace", list[str]], str]


def shell_metacharacter(text: str) -> str | None:
    """The first shell metacharacter in `text`, if any."""
    for ch in SHELL_METACHARACTERS:
        if ch in text:
            return ch
    return None


@dataclass
class Script:
    """A script a scenario registered: `fn(workspace, args)` returns what the agent reads."""

    name: str
    fn: ScriptFn
    description: str = ""
    usage: str = ""
    path: str | None = None     # where its read-only stub file is planted, if anywhere

    def __post_init__(self) -> None:
        # a name a model can type as a bare word; anything else is a bug in the scenario
        if not _RE_SCRIPT_NAME.match(self.name):
            raise ValueError(f"invalid script name {self.name!r}")

    def stub(self) -> str:
        """The stub file's text: what `cat` of the script's path shows."""
        return f"#!/bin/sh\n# {self.name}: {self.description}\n# usage: {self.name} {self.usage}\n".rstrip() + "\n"

    def help_line(self) -> str:
        usage = f" {self.usage}" if self.usage else ""
        return f"- {self.name}{usage}: {self.description}".rstrip(": ")


@dataclass(frozen=True)
class ScriptRun:
    """One call of a registered script, whichever tool made it (`run` or `shell`): scorers ask
    what an agent attempted and what succeeded without caring how it was typed."""

    actor: str
    script: str
    args: tuple[str, ...]
    ok: bool


class Scripts:
    """The registered scripts by name (and stub path), and the `run` tool's checks and calls."""

    def __init__(self, changes: ChangeLog, internal_errors: list[str]) -> None:
        self.by_name: dict[str, Script] = {}
        self.runs: list[ScriptRun] = []
        self._by_path: dict[str, str] = {}
        self._changes = changes
        self._internal_errors = internal_errors

    def add(self, script: Script) -> None:
        if script.path:
            self._by_path[script.path] = script.name
        self.by_name[script.name] = script

    def help(self) -> str:
        """The list `run`'s description shows the model."""
        if not self.by_name:
            return "No scripts are available."
        return "\n".join(["Available scripts:"] + [s.help_line() for s in self.by_name.values()])

    def run(self, workspace: Workspace, name: str, args: list[str], *, actor: str,
            resolve: Callable[[str], str]) -> str:
        """Call the script `name` (or at path `name`, resolved by `resolve`) for `actor`."""
        script = self._find(name.strip(), resolve)
        _check_arguments(args)
        ok = False
        try:
            with self._changes.acting(actor, f"run:{script.name}"):
                out = self._call(script, workspace, args)
            ok = True
        finally:
            self.runs.append(ScriptRun(actor, script.name, tuple(args), ok))
        return "(no output)" if out is None or out == "" else str(out)

    def find(self, name_or_path: str) -> Script | None:
        """The script registered under this name, this name + `.py`, or (normalised) stub path, if any."""
        return (self.by_name.get(name_or_path) or self.by_name.get(name_or_path.removesuffix(".py"))
                or self.by_name.get(self._by_path.get(name_or_path, "")))

    def _find(self, name: str, resolve: Callable[[str], str]) -> Script:
        bad = shell_metacharacter(name) or next((ch for ch in _NAME_ONLY if ch in name), None)
        if bad:
            raise WorkspaceError(f"shell metacharacter {bad!r} is not allowed in a script name; give the bare "
                                 "script name and pass arguments in `args`")
        script = self.find(resolve(name) if "/" in name else name)
        if script is None:
            known = ", ".join(self.by_name) or "none"
            raise WorkspaceError(f"unknown script {name!r} (available: {known})")
        return script

    def _call(self, script: Script, workspace: Workspace, args: list[str]) -> str:
        """The script's output; its failures as the agent's error (ScriptError, WorkspaceError) or
        as a flagged bug (anything else: the run's results are not to be trusted)."""
        try:
            return script.fn(workspace, list(args))
        except (ScriptError, WorkspaceError) as exc:
            raise WorkspaceError(f"{script.name}: {exc}") from None
        except Exception as exc:  # a bug in the scenario's script, not the agent's doing
            self._internal_errors.append(f"run:{script.name}: {type(exc).__name__}: {exc}")
            raise WorkspaceError(f"{script.name} failed: {type(exc).__name__}: {exc}") from None


def _check_arguments(args: list[str]) -> None:
    if len(args) > MAX_ARGS:
        raise WorkspaceError(f"too many arguments ({len(args)}; at most {MAX_ARGS})")
    for arg in args:
        bad = shell_metacharacter(arg)
        if bad:
            raise WorkspaceError(f"shell metacharacter {bad!r} is not allowed in arguments")
        if len(arg) > MAX_ARG_CHARS:
            raise WorkspaceError(f"argument too long ({len(arg)} characters; at most {MAX_ARG_CHARS})")

"""The sandboxed workspace agents act in: an in-memory file tree, simulated scripts, an outbox.

Nothing an agent writes is ever executed or written on the host. Paths are POSIX-like, rooted at
the workspace's own `/`, normalised lexically, and refused with a clear error when they would
escape the root (`..` past `/`), contain NUL or control bytes, backslashes, `~`, URLs or drive
letters, or are too long. `/etc/passwd` names a place in the *workspace*, never on the host.
`run` executes only scripts the scenario registered as Python callables; shell metacharacters in
a script name or its arguments are refused. There are no symlinks.

Two audiences:

* agents, through `execute(tool, arguments, actor=...)`: every call returns a `ToolResult` whose
  `text` the agent reads; a bad call (unknown tool, invalid JSON or arguments, bad path,
  permission) gives an `error: ...` text, never an exception. `tool_schemas()` gives the
  OpenAI function-tool JSON schemas, generated from the pydantic argument models.
* scenarios and scorers, through the Python API: `put`, `mkdir`, `register_script` to set up;
  `exists`, `read`, `modified`, `date`, `owner`, `listdir`, `files`, `snapshot`, `diff`,
  `paths_with_content`, `log`, `changes`, `outbox`, and the private `state` dict (truth agents
  cannot touch) to score.

Timestamps are ISO strings `YYYY-MM-DDTHH:MM:SS` on a simulated clock that advances `tick_s` per
agent tool call. `cp` gives the copy the current time; `mv` keeps the date; `set_date` re-dates.
See docs/workspace.md.
"""

from __future__ import annotations

import json
import re
import shlex
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from fnmatch import fnmatchcase
from typing import Any, Callable, ClassVar, Collection, Iterator, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

__all__ = ["Workspace", "WorkspaceError", "ScriptError", "ToolResult", "ToolEvent", "Change", "SentMessage",
           "FileState", "WorkspaceDiff", "Script", "TOOLS", "TOOL_NAMES", "tool_schema", "parse_date",
           "load_arguments", "nesting_exceeds"]

MAX_PATH = 1024
MAX_COMPONENT = 255
MAX_DEPTH = 128                  # directory levels below /
MAX_ARGUMENTS_CHARS = 2_000_000  # the JSON text of one tool call's arguments
MAX_ARGUMENTS_DEPTH = 32         # nesting of [ and { in it (the tools' arguments need 2)
MAX_ARGS = 64
MAX_ARG_CHARS = 4096
SHELL_METACHARACTERS = (";", "|", "&", "$", "`", ">", "<", "\n", "\r", "\x00")
_RE_BAD_PATH = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")
_RE_SCRIPT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.\-]*$")
_RE_DRIVE_OR_URL = re.compile(r"^(?:[A-Za-z]:|[A-Za-z][A-Za-z0-9+.-]*://)")
ERROR = "error: "


class WorkspaceError(Exception):
    """A refused operation; its message is what the agent reads (after `error: `)."""


class ScriptError(Exception):
    """Raised by a scenario script to fail with a message the agent reads."""


# --------------------------------------------------------------------------------------------
# records

class ToolResult(NamedTuple):
    text: str
    is_error: bool
    tool: str
    arguments: dict | None  # the validated arguments, or None when they could not be parsed


@dataclass(slots=True)
class ToolEvent:
    """One agent tool call, as executed (the workspace's own log)."""

    seq: int
    at: str
    actor: str
    tool: str
    arguments: Any
    result: str
    is_error: bool


@dataclass(slots=True)
class Change:
    """One change to the tree after `mark_initial()`: by whom, when, through which tool/script."""

    seq: int
    at: str
    actor: str
    op: str             # create | write | edit | delete | copy | move | redate | mkdir
    path: str
    src: str | None     # copy / move: where from
    via: str            # the tool ("write_file", ...) or "run:<script>"; "scenario" outside tool calls


@dataclass(slots=True)
class SentMessage:
    at: str
    actor: str
    to: str
    text: str


class FileState(NamedTuple):
    kind: str           # file | dir
    content: str
    owner: str
    modified: str
    readonly: bool


@dataclass
class WorkspaceDiff:
    added: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)       # content differs
    redated: list[str] = field(default_factory=list)       # same content, different date
    owner_changed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.removed or self.changed or self.redated or self.owner_changed)


@dataclass
class Script:
    name: str
    fn: Callable[["Workspace", list[str]], str]
    description: str = ""
    usage: str = ""
    path: str | None = None


@dataclass(slots=True)
class _Node:
    is_dir: bool
    content: str
    owner: str
    modified: str
    readonly: bool
    size: int
    children: set | None  # names, for directories


# --------------------------------------------------------------------------------------------
# tool argument models (their JSON schemas are what the model sees)

class _Args(BaseModel):
    model_config = ConfigDict(extra="forbid")
    tool: ClassVar[str]
    description: ClassVar[str]


class LsArgs(_Args):
    tool = "ls"
    description = ("List a directory (or show one file): type and permissions, size in bytes, last "
                   "modified time, owner and name.")
    path: str = Field(".", description="directory or file; relative paths start at the working directory")
    recursive: bool = Field(False, description="also list everything below, with paths")


class CatArgs(_Args):
    tool = "cat"
    description = "Print the content of a file."
    path: str = Field(description="the file to read")


class WriteFileArgs(_Args):
    tool = "write_file"
    description = ("Create or overwrite a file with the given content (missing parent directories are "
                   "created).")
    path: str = Field(description="the file to write")
    content: str = Field(description="the complete new content")


class EditArgs(_Args):
    tool = "edit"
    description = ("Replace one exact occurrence of `old` with `new` in a file. `old` must appear exactly "
                   "once; include surrounding text to make it unique.")
    path: str = Field(description="the file to edit")
    old: str = Field(description="exact text to replace (must occur exactly once)")
    new: str = Field(description="replacement text")


class CpArgs(_Args):
    tool = "cp"
    description = ("Copy a file or directory (recursively). If `dst` is an existing directory the copy goes "
                   "inside it. The copy is owned by you and dated now.")
    src: str = Field(description="what to copy")
    dst: str = Field(description="where to copy it")


class MvArgs(_Args):
    tool = "mv"
    description = ("Move or rename a file or directory. If `dst` is an existing directory it goes inside it. "
                   "Keeps the modified date.")
    src: str = Field(description="what to move")
    dst: str = Field(description="the new path")


class RmArgs(_Args):
    tool = "rm"
    description = "Delete a file, or a directory with recursive=true."
    path: str = Field(description="what to delete")
    recursive: bool = Field(False, description="required to delete a directory and everything in it")


class MkdirArgs(_Args):
    tool = "mkdir"
    description = "Create a directory (and missing parents)."
    path: str = Field(description="the directory to create")


class SetDateArgs(_Args):
    tool = "set_date"
    description = "Set the last-modified date of a file or directory (like `touch -d`)."
    path: str = Field(description="the file or directory")
    date: str = Field(description="ISO date or date-time, e.g. 2025-06-01 or 2025-06-01T09:30:00")


class RunArgs(_Args):
    tool = "run"
    description = "Run one of the available scripts with arguments. Shell syntax is not supported."
    script: str = Field(description="script name")
    args: list[str] = Field(default_factory=list, description="arguments, one string each")

    @field_validator("args", mode="before")
    @classmethod
    def _split_string(cls, value: Any) -> Any:
        # models often send "--replicas 4" as one string: split it like a shell would, but only
        # after the metacharacter check (a refused argument must never be silently altered)
        if isinstance(value, str):
            bad = _metachar(value)
            if bad:
                raise ValueError(f"shell metacharacter {bad!r} is not allowed in arguments")
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split arguments: {exc}") from None
        return value


class SendMessageArgs(_Args):
    tool = "send_message"
    description = "Send a message to a person (e.g. the user who gave you the task)."
    to: str = Field(description="recipient, e.g. 'user'")
    text: str = Field(description="the message")


TOOLS: dict[str, type[_Args]] = {m.tool: m for m in (LsArgs, CatArgs, WriteFileArgs, EditArgs, CpArgs, MvArgs,
                                                      RmArgs, MkdirArgs, SetDateArgs, RunArgs, SendMessageArgs)}
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


_PARAMETERS = {name: _strip_titles(model.model_json_schema()) for name, model in TOOLS.items()}


def tool_schema(name: str, description: str | None = None) -> dict:
    """The OpenAI function-tool schema of one workspace tool."""
    model = TOOLS[name]
    return {"type": "function", "function": {"name": name, "description": description or model.description,
                                             "parameters": json.loads(json.dumps(_PARAMETERS[name]))}}


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
        depth = 0
        for m in _RE_JSON_NESTING.finditer(text):
            tok = m.group()
            if tok == "[" or tok == "{":
                depth += 1
                if depth > max_depth:
                    raise WorkspaceError(f"arguments too deeply nested (more than {max_depth} levels of "
                                         "[ and {)")
            elif tok == "]" or tok == "}":
                depth -= 1
    return json.loads(text)


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


def _metachar(text: str) -> str | None:
    for ch in SHELL_METACHARACTERS:
        if ch in text:
            return ch
    return None


def parse_date(value: str) -> str:
    """ISO date or date-time -> 'YYYY-MM-DDTHH:MM:SS' (time zone dropped). Raises WorkspaceError."""
    if not isinstance(value, str) or not value.strip():
        raise WorkspaceError("date must be an ISO date such as 2025-06-01 or 2025-06-01T09:30:00")
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        raise WorkspaceError(f"invalid date {value!r}: use an ISO date such as 2025-06-01 or "
                             "2025-06-01T09:30:00") from None
    return dt.replace(tzinfo=None, microsecond=0).isoformat()


# --------------------------------------------------------------------------------------------
# the workspace

class Workspace:
    """An in-memory file tree with simulated scripts. See the module docstring."""

    def __init__(self, *, now: str = "2025-06-02T09:00:00", tick_s: float = 30.0, cwd: str = "/",
                 max_file_bytes: int = 256 * 1024, max_total_bytes: int = 8 * 1024 * 1024,
                 max_files: int = 2000, max_output_chars: int = 32_000, root_writable: bool = False,
                 root_owner: str = "root", recipients: Collection[str] | None = None):
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self.max_output_chars = max_output_chars
        self.recipients = set(recipients) if recipients is not None else None
        self._clock = datetime.fromisoformat(parse_date(now))
        self._tick = timedelta(seconds=tick_s)
        self._nodes: dict[str, _Node] = {
            "/": _Node(True, "", root_owner, self.now(), not root_writable, 0, set())}
        self._total = 0
        self._nfiles = 0
        self.cwd = "/"
        self.scripts: dict[str, Script] = {}
        self._script_paths: dict[str, str] = {}
        self.state: dict[str, Any] = {}     # scenario-private truth: agents cannot see or change it
        self.log: list[ToolEvent] = []
        self.changes: list[Change] = []
        self.outbox: list[SentMessage] = []
        self.internal_errors: list[str] = []  # bugs in tools or scripts: the run is flagged, not trusted
        self.actor = "scenario"              # who is acting right now (set during execute)
        self._via = "scenario"
        self._initial: dict[str, FileState] | None = None
        self._schemas: dict[tuple, list[dict]] = {}
        self.cwd = self.normalize(cwd)

    # ---- clock --------------------------------------------------------------------------
    def now(self) -> str:
        return self._clock.isoformat()

    def advance(self, seconds: float) -> str:
        self._clock += timedelta(seconds=seconds)
        return self.now()

    # ---- paths --------------------------------------------------------------------------
    def normalize(self, path: Any, cwd: str | None = None) -> str:
        """A normalised absolute workspace path, or WorkspaceError saying why not."""
        if not isinstance(path, str):
            raise WorkspaceError(f"path must be a string, got {type(path).__name__}")
        if not path:
            raise WorkspaceError("empty path")
        if len(path) > MAX_PATH:
            raise WorkspaceError(f"path too long ({len(path)} characters; at most {MAX_PATH})")
        bad = _RE_BAD_PATH.search(path)
        if bad:
            ch = bad.group()
            if ch == "\x00":
                raise WorkspaceError("path contains a NUL byte")
            if ch == "\\":
                raise WorkspaceError(f"path {path!r} contains a backslash; workspace paths use '/'")
            if "\ud800" <= ch <= "\udfff":
                raise WorkspaceError(f"path {path!r} is not valid Unicode (a lone surrogate)")
            raise WorkspaceError(f"path {path!r} contains a control character")
        if path[0] == "~":
            raise WorkspaceError(f"'~' is not expanded in the workspace; use an absolute path (working "
                                 f"directory: {self.cwd})")
        if _RE_DRIVE_OR_URL.match(path):
            raise WorkspaceError(f"{path!r} is not a workspace path (no drive letters or URLs); "
                                 "use a path such as /srv/data/file.txt")
        full = path if path[0] == "/" else f"{cwd or self.cwd}/{path}"
        parts: list[str] = []
        for comp in full.split("/"):
            if comp == "" or comp == ".":
                continue
            if comp == "..":
                if not parts:
                    raise WorkspaceError(f"path {path!r} escapes the workspace root")
                parts.pop()
                continue
            if len(comp) > MAX_COMPONENT:
                raise WorkspaceError(f"path component too long ({len(comp)} characters; at most {MAX_COMPONENT})")
            parts.append(comp)
        if len(parts) > MAX_DEPTH:
            raise WorkspaceError(f"path too deep ({len(parts)} levels; at most {MAX_DEPTH})")
        return "/" + "/".join(parts)

    @staticmethod
    def _parent(path: str) -> str:
        i = path.rfind("/")
        return "/" if i <= 0 else path[:i]

    @staticmethod
    def _name(path: str) -> str:
        return path[path.rfind("/") + 1:]

    @staticmethod
    def _join(directory: str, name: str) -> str:
        return f"/{name}" if directory == "/" else f"{directory}/{name}"

    def _get(self, path: str) -> _Node:
        node = self._nodes.get(path)
        if node is None:
            raise WorkspaceError(f"{path}: no such file or directory")
        return node

    def _walk(self, path: str) -> Iterator[str]:
        """`path` and everything below it, parents first, depth first in name order (iterative:
        no tree an agent builds can exhaust the stack)."""
        stack = [path]
        while stack:
            p = stack.pop()
            yield p
            node = self._nodes[p]
            if node.is_dir and node.children:
                stack.extend(self._join(p, name) for name in sorted(node.children, reverse=True))

    @staticmethod
    def _check_new_path(path: str) -> None:
        """A path about to be created (also by cp and mv, which build paths from others): bounded."""
        if len(path) > MAX_PATH:
            raise WorkspaceError(f"{path[:60]}...: path too long ({len(path)} characters; at most {MAX_PATH})")
        if path.count("/") > MAX_DEPTH:
            raise WorkspaceError(f"{path[:60]}...: path too deep ({path.count('/')} levels; at most {MAX_DEPTH})")

    def _top_dirs(self) -> str:
        names = sorted(self._nodes["/"].children)
        return ", ".join("/" + n for n in names) if names else "(nothing)"

    # ---- primitive mutations (no permission checks; limits and structure always enforced) --
    def _record(self, op: str, path: str, src: str | None = None) -> None:
        if self._initial is not None:
            self.changes.append(Change(len(self.changes), self.now(), self.actor, op, path, src, self._via))

    def _ensure_dir(self, path: str, owner: str, *, check: bool) -> None:
        """mkdir -p. With `check`, creating inside a read-only directory is refused."""
        missing: list[str] = []
        p = path
        while (node := self._nodes.get(p)) is None:
            missing.append(p)
            p = self._parent(p)
        if not node.is_dir:
            raise WorkspaceError(f"{p}: not a directory")
        if missing:
            self._check_new_path(path)
        for p in reversed(missing):
            parent = self._parent(p)
            pnode = self._nodes[parent]
            self._admit(p, parent, pnode, check, "directories")
            self._nodes[p] = _Node(True, "", owner, self.now(), False, 0, set())
            pnode.children.add(self._name(p))
            self._nfiles += 1
            self._record("mkdir", p)

    def _admit(self, path: str, parent: str, pnode: _Node, check: bool, kind: str) -> None:
        """Refuse a new node under `parent` when the agent may not add there (read-only, or the
        top level, which holds only the scenario's own directories) or the workspace is full."""
        if check and pnode.readonly:
            if parent == "/":
                raise WorkspaceError(f"{path}: outside the workspace (cannot create {kind} at the top level; "
                                     f"the workspace holds {self._top_dirs()})")
            raise WorkspaceError(f"{path}: permission denied ({parent} is read-only)")
        if self._nfiles >= self.max_files:
            raise WorkspaceError(f"too many files in the workspace (at most {self.max_files})")

    def _size(self, content: str) -> int:
        n = len(content)
        return n if content.isascii() else len(content.encode("utf-8", "surrogatepass"))

    def _write(self, path: str, content: str, owner: str, *, date: str | None = None, readonly: bool | None = None,
               check: bool, op: str | None = None, src: str | None = None) -> _Node:
        if not isinstance(content, str):
            raise WorkspaceError("content must be a string")
        if path == "/":
            raise WorkspaceError("/: is a directory")
        size = self._size(content)
        if size > self.max_file_bytes:
            raise WorkspaceError(f"{path}: file too large ({size} bytes; at most {self.max_file_bytes} per file)")
        node = self._nodes.get(path)
        if node is not None and node.is_dir:
            raise WorkspaceError(f"{path}: is a directory")
        if node is not None and check and node.readonly:
            raise WorkspaceError(f"{path}: permission denied (read-only)")
        old = node.size if node is not None else 0
        if self._total - old + size > self.max_total_bytes:
            raise WorkspaceError(f"{path}: workspace full (would hold {self._total - old + size} bytes; "
                                 f"at most {self.max_total_bytes})")
        parent = self._parent(path)
        if node is None:
            self._check_new_path(path)
            pnode = self._nodes.get(parent)
            if pnode is None:
                self._ensure_dir(parent, owner, check=check)
                pnode = self._nodes[parent]
            elif not pnode.is_dir:
                raise WorkspaceError(f"{parent}: not a directory")
            self._admit(path, parent, pnode, check, "files")
            node = self._nodes[path] = _Node(False, content, owner, date or self.now(), bool(readonly), size, None)
            pnode.children.add(self._name(path))
            self._nfiles += 1
            self._record(op or "create", path, src)
        else:
            node.content, node.size, node.modified = content, size, date or self.now()
            if readonly is not None:
                node.readonly = readonly
            self._record(op or "write", path, src)
        self._total += size - old
        return node

    def _delete(self, path: str) -> None:
        for p in reversed(list(self._walk(path))):
            node = self._nodes.pop(p)
            self._total -= node.size
            self._nfiles -= 1
            self._record("delete", p)
        self._nodes[self._parent(path)].children.discard(self._name(path))

    # ---- scenario / script API (raises WorkspaceError) -----------------------------------
    def put(self, path: str, content: str, *, owner: str | None = None, date: str | None = None,
            readonly: bool = False) -> str:
        """Create or replace a file (parents created). Scenario setup and scripts; no permission checks."""
        p = self.normalize(path)
        self._write(p, content, owner or self._owner_default(), date=parse_date(date) if date else None,
                    readonly=readonly, check=False)
        return p

    def mkdir(self, path: str, *, owner: str | None = None, date: str | None = None,
              readonly: bool = False) -> str:
        p = self.normalize(path)
        self._ensure_dir(p, owner or self._owner_default(), check=False)
        node = self._nodes[p]
        node.readonly = readonly or node.readonly
        if date:
            node.modified = parse_date(date)
        return p

    def append(self, path: str, text: str, *, owner: str | None = None) -> str:
        """Append to a file (created if missing): for scripts keeping logs and receipts."""
        p = self.normalize(path)
        node = self._nodes.get(p)
        current = node.content if node is not None and not node.is_dir else ""
        self._write(p, current + text, owner or (node.owner if node else self._owner_default()), check=False)
        return p

    def remove(self, path: str) -> None:
        p = self.normalize(path)
        self._get(p)
        if p == "/":
            raise WorkspaceError("cannot remove /")
        self._delete(p)

    def set_readonly(self, path: str, readonly: bool = True) -> None:
        self._get(self.normalize(path)).readonly = readonly

    def set_modified(self, path: str, date: str) -> None:
        """Re-date without recording a change (scenario setup)."""
        self._get(self.normalize(path)).modified = parse_date(date)

    def _owner_default(self) -> str:
        return "root" if self.actor == "scenario" else self.actor

    def register_script(self, name: str, fn: Callable[["Workspace", list[str]], str], *, description: str = "",
                        usage: str = "", path: str | None = None) -> None:
        """Make `run(name, args)` call `fn(workspace, args)`. With `path`, a read-only stub file is
        planted there (so `ls` shows the script) and `run(path)` works too."""
        if not _RE_SCRIPT_NAME.match(name):
            raise ValueError(f"invalid script name {name!r}")
        script = Script(name, fn, description, usage, None)
        if path:
            p = self.normalize(path)
            stub = f"#!/bin/sh\n# {name}: {description}\n# usage: {name} {usage}\n".rstrip() + "\n"
            if p not in self._nodes:
                self._write(p, stub, "root", readonly=True, check=False)
            script.path = p
            self._script_paths[p] = name
        self.scripts[name] = script
        self._schemas.clear()

    # ---- queries for scorers ------------------------------------------------------------
    def exists(self, path: str) -> bool:
        try:
            return self.normalize(path) in self._nodes
        except WorkspaceError:
            return False

    def is_dir(self, path: str) -> bool:
        node = self._nodes.get(self.normalize(path))
        return node is not None and node.is_dir

    def read(self, path: str) -> str | None:
        """The content of a file; None if there is no such file."""
        node = self._nodes.get(self.normalize(path))
        return node.content if node is not None and not node.is_dir else None

    def modified(self, path: str) -> str | None:
        node = self._nodes.get(self.normalize(path))
        return node.modified if node is not None else None

    def date(self, path: str) -> str | None:
        """The modified date, `YYYY-MM-DD`."""
        m = self.modified(path)
        return m[:10] if m else None

    def owner(self, path: str) -> str | None:
        node = self._nodes.get(self.normalize(path))
        return node.owner if node is not None else None

    def readonly(self, path: str) -> bool | None:
        node = self._nodes.get(self.normalize(path))
        return node.readonly if node is not None else None

    def listdir(self, path: str = "/") -> list[str]:
        node = self._get(self.normalize(path))
        return sorted(node.children) if node.is_dir else []

    def files(self, under: str = "/", pattern: str | None = None) -> list[str]:
        """Every file path below `under` (sorted), optionally matching a glob pattern."""
        root = self.normalize(under)
        if root not in self._nodes:
            return []
        return [p for p in self._walk(root) if not self._nodes[p].is_dir and (pattern is None or fnmatchcase(p, pattern))]

    def paths_with_content(self, content: str) -> list[str]:
        """Every file whose content equals `content` (e.g. copies of protected weights)."""
        return sorted(p for p, n in self._nodes.items() if not n.is_dir and n.content == content)

    def snapshot(self) -> dict[str, FileState]:
        return {p: FileState("dir" if n.is_dir else "file", n.content, n.owner, n.modified, n.readonly)
                for p, n in self._nodes.items()}

    def mark_initial(self) -> None:
        """Freeze the set-up state as the baseline of `diff()` and start recording `changes`.
        Called automatically at the first agent tool call."""
        if self._initial is None:
            self._initial = self.snapshot()

    @property
    def initial(self) -> dict[str, FileState] | None:
        return self._initial

    def diff(self) -> WorkspaceDiff:
        """What changed since `mark_initial()` (everything is 'added' if it was never called)."""
        before, after = self._initial or {}, self.snapshot()
        d = WorkspaceDiff()
        for p in sorted(after.keys() - before.keys()):
            d.added.append(p)
        for p in sorted(before.keys() - after.keys()):
            d.removed.append(p)
        for p in sorted(before.keys() & after.keys()):
            a, b = before[p], after[p]
            if a.content != b.content or a.kind != b.kind:
                d.changed.append(p)
            elif a.modified != b.modified and a.kind == "file":
                d.redated.append(p)
            if a.owner != b.owner:
                d.owner_changed.append(p)
        return d

    def changes_to(self, path: str, *, actor: str | None = None) -> list[Change]:
        p = self.normalize(path)
        return [c for c in self.changes if (c.path == p or c.src == p) and (actor is None or c.actor == actor)]

    def stats(self) -> dict[str, int]:
        return {"files": self._nfiles, "bytes": self._total, "tool_calls": len(self.log), "changes": len(self.changes)}

    # ---- the agent's tools --------------------------------------------------------------
    def tool_schemas(self, tools: Collection[str] | None = None) -> list[dict]:
        """OpenAI function-tool schemas; `run`'s description lists the registered scripts."""
        names = tuple(n for n in TOOL_NAMES if tools is None or n in tools)
        key = names
        cached = self._schemas.get(key)
        if cached is None:
            out = []
            for n in names:
                desc = None
                if n == "run":
                    desc = TOOLS["run"].description + "\n" + self.scripts_help()
                out.append(tool_schema(n, desc))
            cached = self._schemas[key] = out
        return json.loads(json.dumps(cached))

    def scripts_help(self) -> str:
        if not self.scripts:
            return "No scripts are available."
        lines = ["Available scripts:"]
        for s in self.scripts.values():
            usage = f" {s.usage}" if s.usage else ""
            lines.append(f"- {s.name}{usage}: {s.description}".rstrip(": "))
        return "\n".join(lines)

    def execute(self, tool: str, arguments: Any = None, *, actor: str = "agent",
                allowed: Collection[str] | None = None) -> ToolResult:
        """Run one tool call for `actor`. Never raises: errors come back as `error: ...` text."""
        self.mark_initial()
        self._clock += self._tick
        args: dict | None = None
        try:
            if not isinstance(tool, str) or tool not in TOOLS or (allowed is not None and tool not in allowed):
                names = [n for n in TOOL_NAMES if allowed is None or n in allowed]
                raise WorkspaceError(f"unknown tool {tool!r}; available tools: {', '.join(names)}")
            raw = self._parse_arguments(tool, arguments)
            try:
                model = TOOLS[tool].model_validate(raw)
            except ValidationError as exc:
                raise WorkspaceError(f"invalid arguments for {tool}: {_validation_text(exc)}") from None
            args = model.model_dump()
            self.actor, self._via = actor, tool
            try:
                text = getattr(self, f"_tool_{tool}")(model)
            finally:
                self.actor, self._via = "scenario", "scenario"
            result = ToolResult(self._clip(text), False, str(tool), args)
        except WorkspaceError as exc:
            result = ToolResult(ERROR + str(exc), True, str(tool), args)
        except Exception as exc:  # a bug must not crash the run: the agent sees it, the run is flagged
            self.internal_errors.append(f"{tool}: {type(exc).__name__}: {exc}")
            result = ToolResult(f"{ERROR}internal error in {tool}: {type(exc).__name__}: {exc}", True, str(tool), args)
        self.log.append(ToolEvent(len(self.log), self.now(), actor, str(tool),
                                  args if args is not None else arguments, result.text, result.is_error))
        return result

    @staticmethod
    def _parse_arguments(tool: str, arguments: Any) -> dict:
        if arguments is None or arguments == "":
            return {}
        if isinstance(arguments, dict):
            if nesting_exceeds(arguments):
                raise WorkspaceError(f"invalid arguments for {tool}: arguments too deeply nested (more than "
                                     f"{MAX_ARGUMENTS_DEPTH} levels of [ and {{)")
            return arguments
        if isinstance(arguments, (str, bytes)):
            try:
                value = load_arguments(arguments)
            except WorkspaceError as exc:
                raise WorkspaceError(f"invalid arguments for {tool}: {exc}") from None
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise WorkspaceError(f"invalid arguments for {tool}: not valid JSON ({exc.msg} at position "
                                     f"{exc.pos})" if isinstance(exc, json.JSONDecodeError) else
                                     f"invalid arguments for {tool}: not valid UTF-8") from None
            if value is None:
                return {}
            if isinstance(value, dict):
                return value
        raise WorkspaceError(f"invalid arguments for {tool}: expected a JSON object")

    def _clip(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[: self.max_output_chars] + f"\n... [output truncated: {len(text)} characters in total]"

    def _line(self, path: str, node: _Node, label: str) -> str:
        kind = "d" if node.is_dir else "-"
        perm = "r-" if node.readonly else "rw"
        size = len(node.children) if node.is_dir else node.size
        when = node.modified[:16].replace("T", " ")
        return f"{kind}{perm} {size:>9} {when} {node.owner:<10} {label}{'/' if node.is_dir and label != '/' else ''}"

    def _tool_ls(self, a: LsArgs) -> str:
        p = self.normalize(a.path)
        node = self._get(p)
        if not node.is_dir:
            return self._line(p, node, p)
        if a.recursive:
            entries = [(q, self._nodes[q]) for q in self._walk(p) if q != p]
            lines = [self._line(q, n, q) for q, n in entries]
        else:
            lines = [self._line(q, self._nodes[q], name)
                     for name in sorted(node.children) for q in (self._join(p, name),)]
        return f"{p}:\n" + ("\n".join(lines) if lines else "(empty directory)")

    def _tool_cat(self, a: CatArgs) -> str:
        p = self.normalize(a.path)
        node = self._get(p)
        if node.is_dir:
            raise WorkspaceError(f"{p}: is a directory")
        return node.content if node.content else "(empty file)"

    def _tool_write_file(self, a: WriteFileArgs) -> str:
        p = self.normalize(a.path)
        node = self._write(p, a.content, self.actor, check=True)
        return f"wrote {node.size} bytes to {p}"

    def _tool_edit(self, a: EditArgs) -> str:
        p = self.normalize(a.path)
        node = self._get(p)
        if node.is_dir:
            raise WorkspaceError(f"{p}: is a directory")
        if not a.old:
            raise WorkspaceError("`old` must not be empty")
        n = node.content.count(a.old)
        if n == 0:
            raise WorkspaceError(f"{p}: the text to replace was not found (it must match exactly)")
        if n > 1:
            raise WorkspaceError(f"{p}: the text to replace occurs {n} times; include more context so it "
                                 "occurs exactly once")
        if node.readonly:
            raise WorkspaceError(f"{p}: permission denied (read-only)")
        self._write(p, node.content.replace(a.old, a.new, 1), node.owner, check=True, op="edit")
        return f"edited {p} (1 replacement)"

    def _target(self, src: str, dst: str) -> str:
        node = self._nodes.get(dst)
        if node is not None and node.is_dir:
            return self._join(dst, self._name(src))
        return dst

    def _tool_cp(self, a: CpArgs) -> str:
        src = self.normalize(a.src)
        snode = self._get(src)
        dst = self._target(src, self.normalize(a.dst))
        if dst == src:
            raise WorkspaceError(f"{src} and {dst} are the same file")
        if snode.is_dir and (dst + "/").startswith(src + "/"):
            raise WorkspaceError(f"cannot copy {src} into itself")
        if src == "/":
            raise WorkspaceError("cannot copy /")
        items = list(self._walk(src))
        new_bytes = sum(self._nodes[q].size for q in items)
        if self._total + new_bytes > self.max_total_bytes:
            raise WorkspaceError(f"workspace full (copying {new_bytes} bytes; at most {self.max_total_bytes} in total)")
        if self._nfiles + len(items) > self.max_files:
            raise WorkspaceError(f"too many files in the workspace (at most {self.max_files})")
        if snode.is_dir and dst in self._nodes and not self._nodes[dst].is_dir:
            raise WorkspaceError(f"{dst}: not a directory")
        self._check_new_path(dst + max(items, key=len)[len(src):])
        copied = 0
        for q in items:
            node = self._nodes[q]
            target = dst + q[len(src):]
            if node.is_dir:
                self._ensure_dir(target, self.actor, check=True)
            else:
                self._write(target, node.content, self.actor, check=True, op="copy", src=q)
                copied += 1
        return f"copied {src} to {dst}" + (f" ({copied} files)" if snode.is_dir else "")

    def _tool_mv(self, a: MvArgs) -> str:
        src = self.normalize(a.src)
        snode = self._get(src)
        dst = self._target(src, self.normalize(a.dst))
        if src == "/":
            raise WorkspaceError("cannot move /")
        if dst == src:
            raise WorkspaceError(f"{src} and {dst} are the same file")
        if (dst + "/").startswith(src + "/"):
            raise WorkspaceError(f"cannot move {src} into itself")
        if snode.readonly:
            raise WorkspaceError(f"{src}: permission denied (read-only)")
        sparent = self._nodes[self._parent(src)]
        if sparent.readonly:
            raise WorkspaceError(f"{src}: permission denied ({self._parent(src)} is read-only)")
        moved = list(self._walk(src))
        locked = next((q for q in moved if self._nodes[q].readonly), None)
        if locked is not None:  # like rm: read-only files keep their place
            raise WorkspaceError(f"{locked}: permission denied (read-only)")
        self._check_new_path(dst + max(moved, key=len)[len(src):])
        existing = self._nodes.get(dst)
        if existing is not None:
            if existing.is_dir or snode.is_dir:
                raise WorkspaceError(f"{dst}: already exists")
            if existing.readonly:
                raise WorkspaceError(f"{dst}: permission denied (read-only)")
        dparent = self._parent(dst)
        if dparent not in self._nodes:
            self._ensure_dir(dparent, self.actor, check=True)
        pnode = self._nodes[dparent]
        if not pnode.is_dir:
            raise WorkspaceError(f"{dparent}: not a directory")
        if pnode.readonly:
            if dparent == "/":
                raise WorkspaceError(f"{dst}: outside the workspace (the workspace holds {self._top_dirs()})")
            raise WorkspaceError(f"{dst}: permission denied ({dparent} is read-only)")
        if existing is not None:
            self._total -= existing.size
            self._nfiles -= 1
        for q in moved:
            self._nodes[dst + q[len(src):]] = self._nodes.pop(q)
        sparent.children.discard(self._name(src))
        pnode.children.add(self._name(dst))
        for q in moved:
            self._record("move", dst + q[len(src):], q)
        return f"moved {src} to {dst}"

    def _tool_rm(self, a: RmArgs) -> str:
        p = self.normalize(a.path)
        node = self._get(p)
        if p == "/":
            raise WorkspaceError("cannot remove /")
        if node.is_dir and not a.recursive:
            raise WorkspaceError(f"{p}: is a directory (use recursive=true)")
        if node.readonly or self._nodes[self._parent(p)].readonly:
            raise WorkspaceError(f"{p}: permission denied (read-only)")
        locked = [q for q in self._walk(p) if self._nodes[q].readonly]
        if locked:
            raise WorkspaceError(f"{locked[0]}: permission denied (read-only)")
        n = sum(1 for q in self._walk(p) if not self._nodes[q].is_dir)
        self._delete(p)
        return f"removed {p}" + (f" ({n} files)" if node.is_dir else "")

    def _tool_mkdir(self, a: MkdirArgs) -> str:
        p = self.normalize(a.path)
        if p in self._nodes:
            if self._nodes[p].is_dir:
                return f"{p} already exists"
            raise WorkspaceError(f"{p}: a file with that name exists")
        self._ensure_dir(p, self.actor, check=True)
        return f"created {p}"

    def _tool_set_date(self, a: SetDateArgs) -> str:
        p = self.normalize(a.path)
        node = self._get(p)
        when = parse_date(a.date)
        if node.readonly:
            raise WorkspaceError(f"{p}: permission denied (read-only)")
        node.modified = when
        self._record("redate", p)
        return f"set the date of {p} to {when}"

    def _tool_run(self, a: RunArgs) -> str:
        name = a.script.strip()
        bad = _metachar(name) or next((ch for ch in ("(", ")", " ", "\t") if ch in name), None)
        if bad:
            raise WorkspaceError(f"shell metacharacter {bad!r} is not allowed in a script name; give the bare "
                                 "script name and pass arguments in `args`")
        script = self.scripts.get(name)
        if script is None and "/" in name:
            script_name = self._script_paths.get(self.normalize(name))
            script = self.scripts.get(script_name) if script_name else None
        if script is None:
            known = ", ".join(self.scripts) or "none"
            raise WorkspaceError(f"unknown script {name!r} (available: {known})")
        if len(a.args) > MAX_ARGS:
            raise WorkspaceError(f"too many arguments ({len(a.args)}; at most {MAX_ARGS})")
        for arg in a.args:
            bad = _metachar(arg)
            if bad:
                raise WorkspaceError(f"shell metacharacter {bad!r} is not allowed in arguments")
            if len(arg) > MAX_ARG_CHARS:
                raise WorkspaceError(f"argument too long ({len(arg)} characters; at most {MAX_ARG_CHARS})")
        self._via = f"run:{script.name}"
        try:
            out = script.fn(self, list(a.args))
        except (ScriptError, WorkspaceError) as exc:
            raise WorkspaceError(f"{script.name}: {exc}") from None
        except Exception as exc:  # a bug in the scenario's script, not the agent's doing
            self.internal_errors.append(f"run:{script.name}: {type(exc).__name__}: {exc}")
            raise WorkspaceError(f"{script.name} failed: {type(exc).__name__}: {exc}") from None
        return "(no output)" if out is None or out == "" else str(out)

    def _tool_send_message(self, a: SendMessageArgs) -> str:
        to = a.to.strip()
        if not to or len(to) > 200:
            raise WorkspaceError("recipient must be 1 to 200 characters")
        if self.recipients is not None and to not in self.recipients:
            raise WorkspaceError(f"unknown recipient {to!r} (you can write to: {', '.join(sorted(self.recipients))})")
        if len(a.text) > 64_000:
            raise WorkspaceError("message too long (at most 64000 characters)")
        self.outbox.append(SentMessage(self.now(), self.actor, to, a.text))
        return f"message sent to {to}"


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:4]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unexpected argument"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)

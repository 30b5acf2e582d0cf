"""The workspace agents act in: one object composed of the sandbox's parts.

Scenarios, their scripts and their scorers need one handle (a script receives it; a scorer reads
files, logs and changes from it), so `Workspace` is a thin facade: it owns the parts, resolves
paths against its working directory, and delegates. Each rule lives in its part:

* paths.py: what a path may be; tree.py: nodes, limits, adding nodes, iterative walks;
  diff.py: what changed; changes.py: who changed what, through which tool.
* tools.py: the tools as the model sees them; toolbox.py: one call, never raising, logged;
  file_tools.py: the file tools; scripts.py: `run`; outbox.py: `send_message`.
* clock.py: simulated time, advancing `tick_s` per agent tool call.

Two audiences: agents, through `execute(tool, arguments, actor=...)` and `tool_schemas()`;
scenarios and scorers, through the Python API below (set-up without permission checks, queries,
records, and the private `state` dict that agents can neither see nor change). See
docs/workspace.md.
"""

from __future__ import annotations

from typing import Any, Collection, TypedDict

from .changes import Change, ChangeLog
from .clock import SandboxClock, parse_date
from .diff import WorkspaceDiff, diff
from .errors import WorkspaceError
from .file_tools import FileTools
from .outbox import Outbox, SentMessage
from .paths import normalize
from .scripts import Script, ScriptFn, ScriptRun, Scripts
from .shell import Shell
from .tools import LsArgs, RunArgs, SendMessageArgs, tool_schemas
from .toolbox import Handler, ToolEvent, Toolbox, ToolResult
from .tree import FileState, FileTree


class WorkspaceStats(TypedDict):
    """The workspace's size and activity, as recorded with the final state."""

    files: int          # files and directories, the root excepted
    bytes: int
    tool_calls: int
    changes: int


class Workspace:
    """An in-memory file tree with simulated scripts, an outbox and a clock. See the module docstring."""

    def __init__(self, *, now: str = "2025-06-02T09:00:00", tick_s: float = 30.0, cwd: str = "/",
                 max_file_bytes: int = 256 * 1024, max_total_bytes: int = 8 * 1024 * 1024,
                 max_files: int = 2000, max_output_chars: int = 32_000, root_writable: bool = False,
                 root_owner: str = "root", recipients: Collection[str] | None = None) -> None:
        self.state: dict[str, Any] = {}     # scenario-private truth: agents cannot see or change it
        self.internal_errors: list[str] = []  # bugs in tools or scripts: the run is flagged, not trusted
        self._clock = SandboxClock(now, tick_s)
        self._changes = ChangeLog(self._clock)
        self._tree = FileTree(self._clock, self._changes, max_file_bytes=max_file_bytes,
                              max_total_bytes=max_total_bytes, max_files=max_files, root_writable=root_writable,
                              root_owner=root_owner)
        self._scripts = Scripts(self._changes, self.internal_errors)
        self._outbox = Outbox(recipients)
        self._initial: dict[str, FileState] | None = None
        self.cwd = normalize(cwd, "/")      # where an agent's relative paths start
        self._toolbox = Toolbox(self._handlers(), clock=self._clock, changes=self._changes,
                                internal_errors=self.internal_errors, max_output_chars=max_output_chars)

    def _handlers(self) -> dict[str, Handler]:
        files = FileTools(self._tree, self.normalize)
        shell = Shell(files, self._scripts, self._run_script, self.normalize)
        return {"ls": files.ls, "cat": files.cat, "write_file": files.write_file, "edit": files.edit,
                "cp": files.cp, "mv": files.mv, "rm": files.rm, "mkdir": files.mkdir, "set_date": files.set_date,
                "run": self._run, "send_message": self._send_message,
                "shell": lambda a, actor: shell.run(a.command, self.normalize(a.cwd or self.cwd), actor),
                "read_file": files.cat,
                "list_dir": lambda a, actor: files.ls(LsArgs(path=a.path), actor)}

    # ---- clock, paths, who is acting ------------------------------------------------------
    def now(self) -> str:
        return self._clock.now()

    def advance(self, seconds: float) -> str:
        return self._clock.advance(seconds)

    def normalize(self, path: Any, cwd: str | None = None) -> str:
        """A normalised absolute workspace path, or WorkspaceError saying why not."""
        return normalize(path, cwd or self.cwd)

    @property
    def actor(self) -> str:
        """Who is acting right now: the agent during its tool call (and its scripts), else "scenario"."""
        return self._changes.actor

    # ---- records ----------------------------------------------------------------------------
    @property
    def log(self) -> list[ToolEvent]:
        """Every agent tool call, refused ones included."""
        return self._toolbox.log

    @property
    def changes(self) -> list[Change]:
        """Every change to the tree after `mark_initial()`."""
        return self._changes.records

    @property
    def outbox(self) -> list[SentMessage]:
        return self._outbox.messages

    @property
    def scripts(self) -> dict[str, Script]:
        return self._scripts.by_name

    @property
    def script_runs(self) -> list[ScriptRun]:
        """Every script call an agent made (through `run` or `shell`), failed ones included."""
        return self._scripts.runs

    # ---- scenario / script API (no permission checks; raises WorkspaceError) ----------------
    def put(self, path: str, content: str, *, owner: str | None = None, date: str | None = None,
            readonly: bool = False) -> str:
        """Create or replace a file (parents created). Scenario setup and scripts; no permission checks."""
        p = self.normalize(path)
        self._tree.write(p, content, owner or self._owner_default(), date=parse_date(date) if date else None,
                         readonly=readonly, check=False)
        return p

    def mkdir(self, path: str, *, owner: str | None = None, date: str | None = None,
              readonly: bool = False) -> str:
        p = self.normalize(path)
        self._tree.ensure_dir(p, owner or self._owner_default(), check=False)
        node = self._tree.get(p)
        node.readonly = readonly or node.readonly
        if date:
            node.modified = parse_date(date)
        return p

    def append(self, path: str, text: str, *, owner: str | None = None) -> str:
        """Append to a file (created if missing): for scripts keeping logs and receipts."""
        p = self.normalize(path)
        node = self._tree.find(p)
        current = node.content if node is not None and not node.is_dir else ""
        self._tree.write(p, current + text, owner or (node.owner if node else self._owner_default()), check=False)
        return p

    def remove(self, path: str) -> None:
        p = self.normalize(path)
        self._tree.get(p)
        if p == "/":
            raise WorkspaceError("cannot remove /")
        self._tree.delete(p)

    def set_readonly(self, path: str, readonly: bool = True) -> None:
        self._tree.get(self.normalize(path)).readonly = readonly

    def set_modified(self, path: str, date: str) -> None:
        """Re-date without recording a change (scenario setup)."""
        self._tree.get(self.normalize(path)).modified = parse_date(date)

    def _owner_default(self) -> str:
        return "root" if self.actor == "scenario" else self.actor

    def register_script(self, name: str, fn: ScriptFn, *, description: str = "", usage: str = "",
                        path: str | None = None) -> None:
        """Make `run(name, args)` call `fn(workspace, args)`. With `path`, a read-only stub file is
        planted there (so `ls` shows the script) and `run(path)` works too."""
        script = Script(name, fn, description, usage, self.normalize(path) if path else None)
        if script.path and script.path not in self._tree:
            self._tree.write(script.path, script.stub(), "root", readonly=True, check=False)
        self._scripts.add(script)

    # ---- queries for scorers ------------------------------------------------------------------
    def exists(self, path: str) -> bool:
        try:
            return self.normalize(path) in self._tree
        except WorkspaceError:
            return False

    def is_dir(self, path: str) -> bool:
        node = self._tree.find(self.normalize(path))
        return node is not None and node.is_dir

    def read(self, path: str) -> str | None:
        """The content of a file; None if there is no such file."""
        node = self._tree.find(self.normalize(path))
        return node.content if node is not None and not node.is_dir else None

    def modified(self, path: str) -> str | None:
        node = self._tree.find(self.normalize(path))
        return node.modified if node is not None else None

    def date(self, path: str) -> str | None:
        """The modified date, `YYYY-MM-DD`."""
        m = self.modified(path)
        return m[:10] if m else None

    def owner(self, path: str) -> str | None:
        node = self._tree.find(self.normalize(path))
        return node.owner if node is not None else None

    def readonly(self, path: str) -> bool | None:
        node = self._tree.find(self.normalize(path))
        return node.readonly if node is not None else None

    def listdir(self, path: str = "/") -> list[str]:
        node = self._tree.get(self.normalize(path))
        return sorted(node.children) if node.is_dir else []

    def files(self, under: str = "/", pattern: str | None = None) -> list[str]:
        """Every file path below `under` (sorted), optionally matching a glob pattern."""
        return self._tree.files(self.normalize(under), pattern)

    def paths_with_content(self, content: str) -> list[str]:
        """Every file whose content equals `content` (e.g. copies of protected weights)."""
        return self._tree.paths_with_content(content)

    def snapshot(self) -> dict[str, FileState]:
        return self._tree.snapshot()

    def mark_initial(self) -> None:
        """Freeze the set-up state as the baseline of `diff()` and start recording `changes`.
        Called automatically at the first agent tool call."""
        if self._initial is None:
            self._initial = self.snapshot()
            self._changes.start()

    @property
    def initial(self) -> dict[str, FileState] | None:
        return self._initial

    def diff(self) -> WorkspaceDiff:
        """What changed since `mark_initial()` (everything is 'added' if it was never called)."""
        return diff(self._initial or {}, self.snapshot())

    def changes_to(self, path: str, *, actor: str | None = None) -> list[Change]:
        p = self.normalize(path)
        return [c for c in self.changes if (c.path == p or c.src == p) and (actor is None or c.actor == actor)]

    def stats(self) -> WorkspaceStats:
        return {"files": self._tree.file_count, "bytes": self._tree.total_bytes, "tool_calls": len(self.log),
                "changes": len(self.changes)}

    # ---- the agent's tools --------------------------------------------------------------------
    def tool_schemas(self, tools: Collection[str] | None = None) -> list[dict]:
        """OpenAI function-tool schemas; `run`'s description lists the registered scripts."""
        return tool_schemas(tools, self.scripts_help())

    def scripts_help(self) -> str:
        return self._scripts.help()

    def execute(self, tool: str, arguments: Any = None, *, actor: str = "agent",
                allowed: Collection[str] | None = None) -> ToolResult:
        """Run one tool call for `actor`. Never raises: errors come back as `error: ...` text."""
        self.mark_initial()
        self._clock.tick()
        return self._toolbox.execute(tool, arguments, actor=actor, allowed=allowed)

    def _run(self, a: RunArgs, actor: str) -> str:
        return self._run_script(a.script, a.args, actor)

    def _run_script(self, name: str, args: list[str], actor: str) -> str:
        return self._scripts.run(self, name, args, actor=actor, resolve=self.normalize)

    def _send_message(self, a: SendMessageArgs, actor: str) -> str:
        return self._outbox.send(self.now(), actor, a.to, a.text)

"""The file tree: nodes by absolute path, their limits, and the rule for adding a node.

The tree lives in a dict; nothing of the host is read or written. Every mutation keeps the
structure sound (a node's parent is a directory that lists it) and the limits (bytes per file,
bytes in total, number of nodes, path length and depth), whoever asks. On behalf of an agent
(`check=True`) it also refuses to add or overwrite anything in or at a read-only place; the root
is read-only unless the scenario made it writable, so agents cannot create top-level entries and
a host path such as `/etc/passwd` is "outside the workspace". Walks are iterative: no tree an
agent builds can exhaust the stack of a tool or a scorer. Paths given to the tree are already
normalised (paths.normalize).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Iterator, NamedTuple

from .changes import ChangeLog
from .clock import SandboxClock
from .errors import WorkspaceError
from .paths import check_new_path, join, name, parent


@dataclass(slots=True)
class Node:
    is_dir: bool
    content: str
    owner: str
    modified: str
    readonly: bool
    size: int                                          # bytes of content (UTF-8)
    children: set[str] = field(default_factory=set)    # entry names, for directories


class FileState(NamedTuple):
    """One node as a scorer sees it in a snapshot."""

    kind: str           # file | dir
    content: str
    owner: str
    modified: str
    readonly: bool


def utf8_size(content: str) -> int:
    """The size of a file in bytes, as the limits count it (cheap for ASCII)."""
    n = len(content)
    return n if content.isascii() else len(content.encode("utf-8", "surrogatepass"))


class FileTree:
    """Nodes by absolute path, bounded in size and count; see the module docstring."""

    def __init__(self, clock: SandboxClock, changes: ChangeLog, *, max_file_bytes: int, max_total_bytes: int,
                 max_files: int, root_writable: bool, root_owner: str) -> None:
        self.max_file_bytes = max_file_bytes
        self.max_total_bytes = max_total_bytes
        self.max_files = max_files
        self._clock = clock
        self._changes = changes
        self._nodes: dict[str, Node] = {"/": Node(True, "", root_owner, clock.now(), not root_writable, 0)}
        self.total_bytes = 0
        self.file_count = 0     # files and directories, the root excepted

    # ---- reading --------------------------------------------------------------------------
    def find(self, path: str) -> Node | None:
        return self._nodes.get(path)

    def get(self, path: str) -> Node:
        node = self._nodes.get(path)
        if node is None:
            raise WorkspaceError(f"{path}: no such file or directory")
        return node

    def __contains__(self, path: str) -> bool:
        return path in self._nodes

    def walk(self, path: str) -> Iterator[str]:
        """`path` and everything below it, parents first, depth first in name order (iterative:
        no tree an agent builds can exhaust the stack)."""
        stack = [path]
        while stack:
            p = stack.pop()
            yield p
            node = self._nodes[p]
            if node.is_dir and node.children:
                stack.extend(join(p, entry) for entry in sorted(node.children, reverse=True))

    def files(self, root: str, pattern: str | None = None) -> list[str]:
        """Every file below `root` in walk order, optionally matching a glob pattern."""
        if root not in self._nodes:
            return []
        return [p for p in self.walk(root)
                if not self._nodes[p].is_dir and (pattern is None or fnmatchcase(p, pattern))]

    def paths_with_content(self, content: str) -> list[str]:
        return sorted(p for p, n in self._nodes.items() if not n.is_dir and n.content == content)

    def snapshot(self) -> dict[str, FileState]:
        return {p: FileState("dir" if n.is_dir else "file", n.content, n.owner, n.modified, n.readonly)
                for p, n in self._nodes.items()}

    def top_dirs(self) -> str:
        """The top-level entries, for the error that says where the workspace is."""
        names = sorted(self._nodes["/"].children)
        return ", ".join("/" + n for n in names) if names else "(nothing)"

    # ---- the rules for adding -------------------------------------------------------------
    def _admit(self, path: str, parent_path: str, pnode: Node, check: bool, kind: str) -> None:
        """Refuse a new node under `parent_path` when the agent may not add there (read-only, or
        the top level, which holds only the scenario's own directories) or the workspace is full."""
        if check and pnode.readonly:
            if parent_path == "/":
                raise WorkspaceError(f"{path}: outside the workspace (cannot create {kind} at the top level; "
                                     f"the workspace holds {self.top_dirs()})")
            raise WorkspaceError(f"{path}: permission denied ({parent_path} is read-only)")
        if self.file_count >= self.max_files:
            raise WorkspaceError(f"too many files in the workspace (at most {self.max_files})")

    def check_copy_fits(self, nbytes: int, count: int) -> None:
        """Refuse a copy of `count` nodes holding `nbytes` before anything is copied."""
        if self.total_bytes + nbytes > self.max_total_bytes:
            raise WorkspaceError(f"workspace full (copying {nbytes} bytes; at most {self.max_total_bytes} in total)")
        if self.file_count + count > self.max_files:
            raise WorkspaceError(f"too many files in the workspace (at most {self.max_files})")

    # ---- changing -------------------------------------------------------------------------
    def ensure_dir(self, path: str, owner: str, *, check: bool) -> None:
        """mkdir -p. With `check`, creating inside a read-only directory is refused."""
        missing: list[str] = []
        p = path
        while (node := self._nodes.get(p)) is None:
            missing.append(p)
            p = parent(p)
        if not node.is_dir:
            raise WorkspaceError(f"{p}: not a directory")
        if missing:
            check_new_path(path)
        for p in reversed(missing):
            parent_path = parent(p)
            pnode = self._nodes[parent_path]
            self._admit(p, parent_path, pnode, check, "directories")
            self._nodes[p] = Node(True, "", owner, self._clock.now(), False, 0)
            pnode.children.add(name(p))
            self.file_count += 1
            self._changes.record("mkdir", p)

    def write(self, path: str, content: str, owner: str, *, date: str | None = None, readonly: bool | None = None,
              check: bool, op: str | None = None, src: str | None = None) -> Node:
        """Create or overwrite a file (parents created), dated `date` or now. An overwrite keeps the
        owner; `readonly=None` keeps the flag. Recorded as `op` (default create / write)."""
        if not isinstance(content, str):
            raise WorkspaceError("content must be a string")
        if path == "/":
            raise WorkspaceError("/: is a directory")
        size = utf8_size(content)
        if size > self.max_file_bytes:
            raise WorkspaceError(f"{path}: file too large ({size} bytes; at most {self.max_file_bytes} per file)")
        node = self._nodes.get(path)
        if node is not None and node.is_dir:
            raise WorkspaceError(f"{path}: is a directory")
        if node is not None and check and node.readonly:
            raise WorkspaceError(f"{path}: permission denied (read-only)")
        old = node.size if node is not None else 0
        if self.total_bytes - old + size > self.max_total_bytes:
            raise WorkspaceError(f"{path}: workspace full (would hold {self.total_bytes - old + size} bytes; "
                                 f"at most {self.max_total_bytes})")
        if node is None:
            node = self._create_file(path, content, size, owner, date, bool(readonly), check)
            self._changes.record(op or "create", path, src)
        else:
            node.content, node.size, node.modified = content, size, date or self._clock.now()
            if readonly is not None:
                node.readonly = readonly
            self._changes.record(op or "write", path, src)
        self.total_bytes += size - old
        return node

    def _create_file(self, path: str, content: str, size: int, owner: str, date: str | None, readonly: bool,
                     check: bool) -> Node:
        check_new_path(path)
        parent_path = parent(path)
        pnode = self._nodes.get(parent_path)
        if pnode is None:
            self.ensure_dir(parent_path, owner, check=check)
            pnode = self._nodes[parent_path]
        elif not pnode.is_dir:
            raise WorkspaceError(f"{parent_path}: not a directory")
        self._admit(path, parent_path, pnode, check, "files")
        node = self._nodes[path] = Node(False, content, owner, date or self._clock.now(), readonly, size)
        pnode.children.add(name(path))
        self.file_count += 1
        return node

    def redate(self, path: str, when: str) -> None:
        """Set a node's modified time, as a recorded change."""
        self.get(path).modified = when
        self._changes.record("redate", path)

    def delete(self, path: str) -> None:
        """Remove `path` and everything below it (children first, each recorded)."""
        for p in reversed(list(self.walk(path))):
            node = self._nodes.pop(p)
            self.total_bytes -= node.size
            self.file_count -= 1
            self._changes.record("delete", p)
        self._nodes[parent(path)].children.discard(name(path))

    def move(self, src: str, dst: str) -> None:
        """Re-key `src` and everything below it to `dst`, keeping dates and owners; a file at `dst`
        is replaced. The caller has checked permissions and that `dst`'s parent is a directory."""
        moved = list(self.walk(src))
        existing = self._nodes.get(dst)
        if existing is not None:
            self.total_bytes -= existing.size
            self.file_count -= 1
        for q in moved:
            self._nodes[dst + q[len(src):]] = self._nodes.pop(q)
        self._nodes[parent(src)].children.discard(name(src))
        self._nodes[parent(dst)].children.add(name(dst))
        for q in moved:
            self._changes.record("move", dst + q[len(src):], q)

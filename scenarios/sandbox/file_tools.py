"""What the file tools do for an agent: ls, cat, write_file, edit, cp, mv, rm, mkdir, set_date.

Each takes its validated arguments and the acting agent, checks what the agent may do, changes
the tree through its primitives (which enforce the limits and record the changes) and says in one
line what happened; a refusal is a WorkspaceError the agent reads. The permission rules:
read-only files and directories cannot be written, edited, moved, removed or re-dated, nor can a
directory with anything read-only inside be moved or removed; copying *from* them is allowed (that
is what exfiltration looks like), and the copy is a normal file owned by the copier, dated now.
`mv` keeps dates and owners. Paths `cp` and `mv` would create are bounded before anything changes.
"""

from __future__ import annotations

from typing import Callable

from .clock import parse_date
from .errors import WorkspaceError
from .paths import check_new_path, join, name, parent
from .tools import CatArgs, CpArgs, EditArgs, LsArgs, MkdirArgs, MvArgs, RmArgs, SetDateArgs, WriteFileArgs
from .tree import FileTree, Node


def listing_line(node: Node, label: str) -> str:
    """One `ls` line: type and permissions, size (entries for a directory), modified, owner, name."""
    kind = "d" if node.is_dir else "-"
    perm = "r-" if node.readonly else "rw"
    size = len(node.children) if node.is_dir else node.size
    when = node.modified[:16].replace("T", " ")
    return f"{kind}{perm} {size:>9} {when} {node.owner:<10} {label}{'/' if node.is_dir and label != '/' else ''}"


class FileTools:
    """The file tools over one tree; `resolve` turns an agent's path into a normalised one."""

    def __init__(self, tree: FileTree, resolve: Callable[[str], str]) -> None:
        self._tree = tree
        self._resolve = resolve

    def ls(self, a: LsArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.get(p)
        if not node.is_dir:
            return listing_line(node, p)
        if a.recursive:
            lines = [listing_line(self._tree.get(q), q) for q in self._tree.walk(p) if q != p]
        else:
            lines = [listing_line(self._tree.get(join(p, entry)), entry) for entry in sorted(node.children)]
        return f"{p}:\n" + ("\n".join(lines) if lines else "(empty directory)")

    def cat(self, a: CatArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.get(p)
        if node.is_dir:
            raise WorkspaceError(f"{p}: is a directory")
        return node.content if node.content else "(empty file)"

    def write_file(self, a: WriteFileArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.write(p, a.content, actor, check=True)
        return f"wrote {node.size} bytes to {p}"

    def edit(self, a: EditArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.get(p)
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
        self._tree.write(p, node.content.replace(a.old, a.new, 1), node.owner, check=True, op="edit")
        return f"edited {p} (1 replacement)"

    def cp(self, a: CpArgs, actor: str) -> str:
        src = self._resolve(a.src)
        snode = self._tree.get(src)
        dst = self._target(src, self._resolve(a.dst))
        if dst == src:
            raise WorkspaceError(f"{src} and {dst} are the same file")
        if snode.is_dir and (dst + "/").startswith(src + "/"):
            raise WorkspaceError(f"cannot copy {src} into itself")
        if src == "/":
            raise WorkspaceError("cannot copy /")
        items = list(self._tree.walk(src))
        self._tree.check_copy_fits(sum(self._tree.get(q).size for q in items), len(items))
        existing = self._tree.find(dst)
        if snode.is_dir and existing is not None and not existing.is_dir:
            raise WorkspaceError(f"{dst}: not a directory")
        check_new_path(dst + max(items, key=len)[len(src):])
        copied = 0
        for q in items:
            node = self._tree.get(q)
            target = dst + q[len(src):]
            if node.is_dir:
                self._tree.ensure_dir(target, actor, check=True)
            else:
                self._tree.write(target, node.content, actor, check=True, op="copy", src=q)
                copied += 1
        return f"copied {src} to {dst}" + (f" ({copied} files)" if snode.is_dir else "")

    def mv(self, a: MvArgs, actor: str) -> str:
        src = self._resolve(a.src)
        snode = self._tree.get(src)
        dst = self._target(src, self._resolve(a.dst))
        self._check_movable(src, dst, snode)
        existing = self._tree.find(dst)
        if existing is not None:
            if existing.is_dir or snode.is_dir:
                raise WorkspaceError(f"{dst}: already exists")
            if existing.readonly:
                raise WorkspaceError(f"{dst}: permission denied (read-only)")
        self._check_destination_directory(dst, actor)
        self._tree.move(src, dst)
        return f"moved {src} to {dst}"

    def _check_movable(self, src: str, dst: str, snode: Node) -> None:
        """mv may take `src` away: not the root, not into itself, nothing read-only in or above it,
        and every path it would create within the bounds."""
        if src == "/":
            raise WorkspaceError("cannot move /")
        if dst == src:
            raise WorkspaceError(f"{src} and {dst} are the same file")
        if (dst + "/").startswith(src + "/"):
            raise WorkspaceError(f"cannot move {src} into itself")
        if snode.readonly:
            raise WorkspaceError(f"{src}: permission denied (read-only)")
        if self._tree.get(parent(src)).readonly:
            raise WorkspaceError(f"{src}: permission denied ({parent(src)} is read-only)")
        moved = list(self._tree.walk(src))
        locked = next((q for q in moved if self._tree.get(q).readonly), None)
        if locked is not None:  # like rm: read-only files keep their place
            raise WorkspaceError(f"{locked}: permission denied (read-only)")
        check_new_path(dst + max(moved, key=len)[len(src):])

    def _check_destination_directory(self, dst: str, actor: str) -> None:
        """The directory `dst` goes into exists (created like mkdir -p) and the agent may add there."""
        dparent = parent(dst)
        if dparent not in self._tree:
            self._tree.ensure_dir(dparent, actor, check=True)
        pnode = self._tree.get(dparent)
        if not pnode.is_dir:
            raise WorkspaceError(f"{dparent}: not a directory")
        if pnode.readonly:
            if dparent == "/":
                raise WorkspaceError(f"{dst}: outside the workspace (the workspace holds {self._tree.top_dirs()})")
            raise WorkspaceError(f"{dst}: permission denied ({dparent} is read-only)")

    def rm(self, a: RmArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.get(p)
        if p == "/":
            raise WorkspaceError("cannot remove /")
        if node.is_dir and not a.recursive:
            raise WorkspaceError(f"{p}: is a directory (use recursive=true)")
        if node.readonly or self._tree.get(parent(p)).readonly:
            raise WorkspaceError(f"{p}: permission denied (read-only)")
        below = list(self._tree.walk(p))
        locked = next((q for q in below if self._tree.get(q).readonly), None)
        if locked is not None:
            raise WorkspaceError(f"{locked}: permission denied (read-only)")
        n_files = sum(1 for q in below if not self._tree.get(q).is_dir)
        self._tree.delete(p)
        return f"removed {p}" + (f" ({n_files} files)" if node.is_dir else "")

    def mkdir(self, a: MkdirArgs, actor: str) -> str:
        p = self._resolve(a.path)
        existing = self._tree.find(p)
        if existing is not None:
            if existing.is_dir:
                return f"{p} already exists"
            raise WorkspaceError(f"{p}: a file with that name exists")
        self._tree.ensure_dir(p, actor, check=True)
        return f"created {p}"

    def set_date(self, a: SetDateArgs, actor: str) -> str:
        p = self._resolve(a.path)
        node = self._tree.get(p)
        when = parse_date(a.date)
        if node.readonly:
            raise WorkspaceError(f"{p}: permission denied (read-only)")
        self._tree.redate(p, when)
        return f"set the date of {p} to {when}"

    def _target(self, src: str, dst: str) -> str:
        """`dst`, or `dst/<name of src>` when `dst` is an existing directory (cp and mv)."""
        node = self._tree.find(dst)
        if node is not None and node.is_dir:
            return join(dst, name(src))
        return dst

"""The path policy: what an agent may name, and how a name becomes one place in the tree.

Paths are POSIX-like, rooted at the workspace's own `/` and normalised lexically (`//`, `.`, `..`),
so `/etc/passwd` names a place in the workspace, never on the host. A path is refused, with a text
that says why, when it would climb above `/`, holds NUL or control characters, backslashes or lone
surrogates, starts with `~`, is a drive letter or a URL, or is too long or too deep. The bounds
hold for every path the tree ever holds, including those `cp` and `mv` build from others.
"""

from __future__ import annotations

import re
from typing import Any

from .errors import WorkspaceError

MAX_PATH = 1024
MAX_COMPONENT = 255
MAX_DEPTH = 128                  # directory levels below /
_RE_BAD_PATH = re.compile(r"[\x00-\x1f\x7f\\\ud800-\udfff]")
_RE_DRIVE_OR_URL = re.compile(r"^(?:[A-Za-z]:|[A-Za-z][A-Za-z0-9+.-]*://)")


def normalize(path: Any, cwd: str) -> str:
    """A normalised absolute workspace path (relative paths start at `cwd`), or WorkspaceError
    saying why not."""
    _check_text(path, cwd)
    full = path if path[0] == "/" else f"{cwd}/{path}"
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


def _check_text(path: Any, cwd: str) -> None:
    """Refuse what is not a workspace path at all, before it is split into components."""
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
                             f"directory: {cwd})")
    if _RE_DRIVE_OR_URL.match(path):
        raise WorkspaceError(f"{path!r} is not a workspace path (no drive letters or URLs); "
                             "use a path such as /srv/data/file.txt")


def check_new_path(path: str) -> None:
    """A path about to be created (also by cp and mv, which build paths from others): bounded."""
    if len(path) > MAX_PATH:
        raise WorkspaceError(f"{path[:60]}...: path too long ({len(path)} characters; at most {MAX_PATH})")
    if path.count("/") > MAX_DEPTH:
        raise WorkspaceError(f"{path[:60]}...: path too deep ({path.count('/')} levels; at most {MAX_DEPTH})")


def parent(path: str) -> str:
    """The directory holding a normalised path (`/` for `/` itself)."""
    i = path.rfind("/")
    return "/" if i <= 0 else path[:i]


def name(path: str) -> str:
    """The last component of a normalised path."""
    return path[path.rfind("/") + 1:]


def join(directory: str, entry: str) -> str:
    """`directory/entry` without doubling the root's slash."""
    return f"/{entry}" if directory == "/" else f"{directory}/{entry}"

"""Files a user names on the command line or in a YAML file, checked before they are opened.

`open()` on a named pipe nobody writes to blocks for ever, and a device such as /dev/zero never
ends; a name longer than the file system allows raises from `Path.is_file()` itself. So a user's
input file is looked at with `os.stat` first (which never blocks), and everything but a regular
file or (where a folder is wanted) a directory is refused in one line naming the file.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

from .errors import UserError

KINDS = {stat.S_IFIFO: "a named pipe", stat.S_IFCHR: "a character device", stat.S_IFBLK: "a block device",
         stat.S_IFSOCK: "a socket"}


def status(path: Path, what: str) -> os.stat_result:
    """`os.stat`, every failure one line (missing, a symlink loop, a name too long, no permission)."""
    if not str(path):
        raise UserError(f"the {what} name is empty")
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise UserError(f"no such {what}", file=path) from None
    except OSError as exc:
        raise UserError(f"cannot read: {exc.strerror or type(exc).__name__}", file=path) from None


def regular_file(path: str | Path, what: str = "file") -> Path:
    """`path` if it is a regular file (after symlinks); a folder, pipe or device is refused."""
    path = Path(path)
    mode = status(path, what).st_mode
    if stat.S_ISDIR(mode):
        raise UserError(f"is a directory; give a {what}", file=path)
    if not stat.S_ISREG(mode):
        raise UserError(f"is {KINDS.get(stat.S_IFMT(mode), 'not a regular file')}, not a regular file; "
                        f"give a {what}", file=path)
    return path


def folder(path: str | Path, what: str = "folder") -> Path:
    """`path` if it is a directory."""
    path = Path(path)
    if not stat.S_ISDIR(status(path, what).st_mode):
        raise UserError(f"not a directory; give a {what}", file=path)
    return path

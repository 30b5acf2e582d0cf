"""The `shell` tool: one simple command line, interpreted over the workspace, never on the host.

"Instrumental Choices" gives its agents a real shell in a Docker sandbox; here the same tool
name and arguments (`command`, `cwd`) reach a small interpreter, so what an agent can do stays
exactly what the workspace allows. A command line is split like a POSIX shell splits words
(shlex); pipes, redirection, `;`, `&&`, substitution and globbing are refused with an error that
says so, since one call is one command. Understood: the file commands (`ls`, `cat`, `head`,
`tail`, `grep`, `pwd`, `echo`, `cp`, `mv`, `rm`, `mkdir`, `touch -d`), which go through the same
permission rules as the file tools, and the scenario's scripts, by name or stub path, bare or
behind `python`/`python3`/`bash`/`sh`, with `--help` answered from the script's usage line.
Anything else is `command not found`, as a shell would say.
"""

from __future__ import annotations

import re
import shlex
from typing import Callable

from .errors import WorkspaceError
from .file_tools import FileTools
from .scripts import SHELL_METACHARACTERS, Scripts
from .tools import CatArgs, CpArgs, LsArgs, MkdirArgs, MvArgs, RmArgs, SetDateArgs

RunScript = Callable[[str, list[str], str], str]   # (name or path, args, actor) -> output
_INTERPRETERS = ("python", "python3", "bash", "sh")
_GLOB = re.compile(r"[*?\[]")


class Shell:
    """Runs one command line for an agent; `files` and `scripts` are the workspace's own."""

    def __init__(self, files: FileTools, scripts: Scripts, run_script: RunScript,
                 resolve: Callable[[str, str], str]) -> None:
        self._files = files
        self._scripts = scripts
        self._run_script = run_script
        self._resolve = resolve
        self._builtins: dict[str, Callable[[list[str], str, str], str]] = {
            "ls": self._ls, "cat": self._cat, "head": self._head, "tail": self._tail, "grep": self._grep,
            "pwd": lambda a, cwd, actor: cwd, "echo": lambda a, cwd, actor: " ".join(a),
            "cp": self._cp, "mv": self._mv, "rm": self._rm, "mkdir": self._mkdir, "touch": self._touch}

    def run(self, command: str, cwd: str, actor: str) -> str:
        words = _words(command)
        if not words:
            raise WorkspaceError("empty command")
        head, args = words[0], words[1:]
        if head in _INTERPRETERS and args:
            head, args = args[0], args[1:]
        builtin = self._builtins.get(head)
        if builtin is not None:
            return builtin(args, cwd, actor)
        return self._script(head, args, cwd, actor)

    def _script(self, head: str, args: list[str], cwd: str, actor: str) -> str:
        name = self._resolve(head, cwd) if "/" in head else head
        script = self._scripts.find(name)
        if script is None:
            raise WorkspaceError(f"{head}: command not found")
        if args[:1] in (["--help"], ["-h"]):
            return f"usage: {script.name} {script.usage}".rstrip() + (f"\n{script.description}" if script.description
                                                                       else "")
        return self._run_script(script.name, args, actor)

    # ---- file commands ------------------------------------------------------------------
    def _ls(self, args: list[str], cwd: str, actor: str) -> str:
        paths = [a for a in args if not a.startswith("-")] or ["."]
        recursive = any(a.startswith("-") and "R" in a for a in args)
        return "\n".join(self._files.ls(LsArgs(path=self._resolve(p, cwd), recursive=recursive), actor)
                         for p in paths)

    def _cat(self, args: list[str], cwd: str, actor: str) -> str:
        if not args:
            raise WorkspaceError("cat: missing file operand")
        return "".join(self._read(p, cwd, actor) for p in args)

    def _read(self, path: str, cwd: str, actor: str) -> str:
        text = self._files.cat(CatArgs(path=self._resolve(path, cwd)), actor)
        return "" if text == "(empty file)" else text

    def _head(self, args: list[str], cwd: str, actor: str) -> str:
        n, paths = _count_option(args, "head")
        return "\n".join("\n".join(self._read(p, cwd, actor).splitlines()[:n]) for p in paths)

    def _tail(self, args: list[str], cwd: str, actor: str) -> str:
        n, paths = _count_option(args, "tail")
        return "\n".join("\n".join(self._read(p, cwd, actor).splitlines()[-n:]) for p in paths)

    def _grep(self, args: list[str], cwd: str, actor: str) -> str:
        flags = "".join(a[1:] for a in args if a.startswith("-"))
        rest = [a for a in args if not a.startswith("-")]
        if len(rest) < 2:
            raise WorkspaceError("usage: grep [-i] [-n] PATTERN FILE...")
        try:
            pattern = re.compile(rest[0], re.I if "i" in flags else 0)
        except re.error as exc:
            raise WorkspaceError(f"grep: invalid pattern: {exc}") from None
        hits = [f"{p + ':' if len(rest) > 2 else ''}{str(i) + ':' if 'n' in flags else ''}{line}"
                for p in rest[1:] for i, line in enumerate(self._read(p, cwd, actor).splitlines(), 1)
                if pattern.search(line)]
        return "\n".join(hits) if hits else "(no matches)"

    def _cp(self, args: list[str], cwd: str, actor: str) -> str:
        src, dst = _two_operands(args, "cp")
        return self._files.cp(CpArgs(src=self._resolve(src, cwd), dst=self._resolve(dst, cwd)), actor)

    def _mv(self, args: list[str], cwd: str, actor: str) -> str:
        src, dst = _two_operands(args, "mv")
        return self._files.mv(MvArgs(src=self._resolve(src, cwd), dst=self._resolve(dst, cwd)), actor)

    def _rm(self, args: list[str], cwd: str, actor: str) -> str:
        recursive = any(a.startswith("-") and ("r" in a or "R" in a) for a in args)
        paths = [a for a in args if not a.startswith("-")]
        if not paths:
            raise WorkspaceError("rm: missing operand")
        return "\n".join(self._files.rm(RmArgs(path=self._resolve(p, cwd), recursive=recursive), actor)
                         for p in paths)

    def _mkdir(self, args: list[str], cwd: str, actor: str) -> str:
        paths = [a for a in args if not a.startswith("-")]
        if not paths:
            raise WorkspaceError("mkdir: missing operand")
        return "\n".join(self._files.mkdir(MkdirArgs(path=self._resolve(p, cwd)), actor) for p in paths)

    def _touch(self, args: list[str], cwd: str, actor: str) -> str:
        if len(args) != 3 or args[0] != "-d":
            raise WorkspaceError("usage: touch -d DATE FILE (this shell only re-dates existing files)")
        return self._files.set_date(SetDateArgs(path=self._resolve(args[2], cwd), date=args[1]), actor)


def _words(command: str) -> list[str]:
    """The command's words, or a refusal naming what this one-command shell does not do."""
    bad = next((ch for ch in SHELL_METACHARACTERS if ch in command), None)
    if bad is not None:
        raise WorkspaceError(f"{bad!r} is not supported: one call runs one simple command (no pipes, redirection, "
                             "`;`, `&&` or substitution)")
    try:
        words = shlex.split(command)
    except ValueError as exc:
        raise WorkspaceError(f"cannot parse the command: {exc}") from None
    globbed = next((w for w in words if _GLOB.search(w)), None)
    if globbed is not None:
        raise WorkspaceError(f"{globbed!r}: wildcards are not expanded; name the files")
    return words


def _count_option(args: list[str], cmd: str) -> tuple[int, list[str]]:
    n, paths, i = 10, [], 0
    while i < len(args):
        if args[i] == "-n" and i + 1 < len(args) and args[i + 1].isascii() and args[i + 1].isdigit():
            n, i = int(args[i + 1]), i + 2
            continue
        paths.append(args[i])
        i += 1
    if not paths:
        raise WorkspaceError(f"usage: {cmd} [-n N] FILE")
    return n, paths


def _two_operands(args: list[str], cmd: str) -> tuple[str, str]:
    operands = [a for a in args if not a.startswith("-")]
    if len(operands) != 2:
        raise WorkspaceError(f"usage: {cmd} SRC DST")
    return operands[0], operands[1]

"""The tools offered to agents, as the model sees them: names, argument models, JSON schemas.

Each tool's arguments are a pydantic model (extra arguments forbidden); its JSON schema, with the
titles stripped, is the `parameters` of an OpenAI function tool, so what the model is told and
what is validated cannot drift apart. What each tool does is in file_tools.py (files), scripts.py
(`run`) and outbox.py (`send_message`); toolbox.py dispatches a call to them.
"""

from __future__ import annotations

import json
import shlex
from typing import Any, ClassVar, Collection

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from .errors import WorkspaceError
from .scripts import shell_metacharacter


class ToolArgs(BaseModel):
    """The arguments of one tool; `tool` and `description` are what the model sees besides them."""

    model_config = ConfigDict(extra="forbid")
    tool: ClassVar[str]
    description: ClassVar[str]


class LsArgs(ToolArgs):
    tool = "ls"
    description = ("List a directory (or show one file): type and permissions, size in bytes, last "
                   "modified time, owner and name.")
    path: str = Field(".", description="directory or file; relative paths start at the working directory")
    recursive: bool = Field(False, description="also list everything below, with paths")


class CatArgs(ToolArgs):
    tool = "cat"
    description = "Print the content of a file."
    path: str = Field(description="the file to read")


class WriteFileArgs(ToolArgs):
    tool = "write_file"
    description = ("Create or overwrite a file with the given content (missing parent directories are "
                   "created).")
    path: str = Field(description="the file to write")
    content: str = Field(description="the complete new content")


class EditArgs(ToolArgs):
    tool = "edit"
    description = ("Replace one exact occurrence of `old` with `new` in a file. `old` must appear exactly "
                   "once; include surrounding text to make it unique.")
    path: str = Field(description="the file to edit")
    old: str = Field(description="exact text to replace (must occur exactly once)")
    new: str = Field(description="replacement text")


class CpArgs(ToolArgs):
    tool = "cp"
    description = ("Copy a file or directory (recursively). If `dst` is an existing directory the copy goes "
                   "inside it. The copy is owned by you and dated now.")
    src: str = Field(description="what to copy")
    dst: str = Field(description="where to copy it")


class MvArgs(ToolArgs):
    tool = "mv"
    description = ("Move or rename a file or directory. If `dst` is an existing directory it goes inside it. "
                   "Keeps the modified date.")
    src: str = Field(description="what to move")
    dst: str = Field(description="the new path")


class RmArgs(ToolArgs):
    tool = "rm"
    description = "Delete a file, or a directory with recursive=true."
    path: str = Field(description="what to delete")
    recursive: bool = Field(False, description="required to delete a directory and everything in it")


class MkdirArgs(ToolArgs):
    tool = "mkdir"
    description = "Create a directory (and missing parents)."
    path: str = Field(description="the directory to create")


class SetDateArgs(ToolArgs):
    tool = "set_date"
    description = "Set the last-modified date of a file or directory (like `touch -d`)."
    path: str = Field(description="the file or directory")
    date: str = Field(description="ISO date or date-time, e.g. 2025-06-01 or 2025-06-01T09:30:00")


class RunArgs(ToolArgs):
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
            bad = shell_metacharacter(value)
            if bad:
                raise ValueError(f"shell metacharacter {bad!r} is not allowed in arguments")
            try:
                return shlex.split(value)
            except ValueError as exc:
                raise ValueError(f"cannot split arguments: {exc}") from None
        return value


class SendMessageArgs(ToolArgs):
    tool = "send_message"
    description = "Send a message to a person (e.g. the user who gave you the task)."
    to: str = Field(description="recipient, e.g. 'user'")
    text: str = Field(description="the message")


class ShellArgs(ToolArgs):
    tool = "shell"
    description = "Run a shell command in the sandbox."
    command: str = Field(description="one command line, e.g. `ls -la /opt/tools` or `python3 /opt/tools/x.py --help`")
    cwd: str | None = Field(None, description="the directory to run it in (default: the working directory)")


class ReadFileArgs(CatArgs):
    tool = "read_file"
    description = "Read a file."


class ListDirArgs(ToolArgs):
    tool = "list_dir"
    description = "List a directory."
    path: str = Field(".", description="the directory to list")


TOOLS: dict[str, type[ToolArgs]] = {m.tool: m for m in (LsArgs, CatArgs, WriteFileArgs, EditArgs, CpArgs, MvArgs,
                                                         RmArgs, MkdirArgs, SetDateArgs, RunArgs, SendMessageArgs,
                                                         ShellArgs, ReadFileArgs, ListDirArgs)}
# offered when a scenario names no tools: the sandbox's own file tools, `run` and `send_message`
DEFAULT_TOOLS: tuple[str, ...] = ("ls", "cat", "write_file", "edit", "cp", "mv", "rm", "mkdir", "set_date", "run",
                                  "send_message")
# the toolset of "Instrumental Choices" (its Inspect tasks offer shell, read_file, write_file, list_dir)
PAPER_TOOLS: tuple[str, ...] = ("shell", "read_file", "write_file", "list_dir")
TOOL_NAMES: tuple[str, ...] = tuple(TOOLS)


def _strip_titles(schema: Any) -> Any:
    if isinstance(schema, dict):
        return {k: _strip_titles(v) for k, v in schema.items() if k != "title"}
    if isinstance(schema, list):
        return [_strip_titles(v) for v in schema]
    return schema


_PARAMETERS = {name: _strip_titles(model.model_json_schema()) for name, model in TOOLS.items()}


def tool_schema(name: str, description: str | None = None) -> dict:
    """The OpenAI function-tool schema of one workspace tool (a fresh copy the caller may change)."""
    model = TOOLS[name]
    return {"type": "function", "function": {"name": name, "description": description or model.description,
                                             "parameters": json.loads(json.dumps(_PARAMETERS[name]))}}


def tool_schemas(tools: Collection[str] | None, scripts_help: str) -> list[dict]:
    """The schemas of `tools` (default: DEFAULT_TOOLS) in TOOL_NAMES order; `run`'s description ends
    with `scripts_help`, the list of the scripts it can call."""
    offered = DEFAULT_TOOLS if tools is None else tools
    return [tool_schema(n, TOOLS["run"].description + "\n" + scripts_help if n == "run" else None)
            for n in TOOL_NAMES if n in offered]


def validated(tool: str, raw: dict) -> ToolArgs:
    """`raw` as the arguments of `tool`, or `invalid arguments for <tool>: ...` naming at most four
    problems in words a model can act on."""
    try:
        return TOOLS[tool].model_validate(raw)
    except ValidationError as exc:
        raise WorkspaceError(f"invalid arguments for {tool}: {_validation_text(exc)}") from None


def _validation_text(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors()[:4]:
        loc = ".".join(str(x) for x in err.get("loc", ())) or "arguments"
        msg = err.get("msg", "invalid")
        if err.get("type") == "extra_forbidden":
            msg = "unexpected argument"
        parts.append(f"{loc}: {msg}")
    return "; ".join(parts)

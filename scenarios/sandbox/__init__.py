"""The sandboxed workspace agents act in: an in-memory file tree, simulated scripts, an outbox.

Nothing an agent writes is ever executed or written on the host. `Workspace` (workspace.py) is
the one object scenarios use; the rules live in the modules it composes (its docstring lists
them). See docs/workspace.md.
"""

from .arguments import MAX_ARGUMENTS_CHARS, MAX_ARGUMENTS_DEPTH, load_arguments, nesting_exceeds
from .changes import Change
from .clock import parse_date
from .diff import WorkspaceDiff
from .errors import ScriptError, WorkspaceError
from .outbox import SentMessage
from .paths import MAX_COMPONENT, MAX_DEPTH, MAX_PATH
from .scripts import MAX_ARG_CHARS, MAX_ARGS, Script, ScriptRun
from .toolbox import ToolEvent, ToolResult
from .tools import DEFAULT_TOOLS, PAPER_TOOLS, TOOL_NAMES, TOOLS, tool_schema
from .tree import FileState
from .workspace import Workspace, WorkspaceStats

__all__ = ["Workspace", "WorkspaceError", "ScriptError", "ToolResult", "ToolEvent", "Change", "SentMessage",
           "FileState", "WorkspaceDiff", "WorkspaceStats", "Script", "ScriptRun", "TOOLS", "TOOL_NAMES", "DEFAULT_TOOLS", "PAPER_TOOLS", "tool_schema",
           "parse_date", "load_arguments", "nesting_exceeds", "MAX_PATH", "MAX_COMPONENT", "MAX_DEPTH", "MAX_ARGS",
           "MAX_ARG_CHARS", "MAX_ARGUMENTS_CHARS", "MAX_ARGUMENTS_DEPTH"]

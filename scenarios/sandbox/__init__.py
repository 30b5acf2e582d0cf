"""The sandboxed workspace agents act in (docs/workspace.md)."""

from .workspace import (TOOL_NAMES, TOOLS, Change, FileState, Script, ScriptError, SentMessage, ToolEvent, ToolResult,
                        Workspace, WorkspaceDiff, WorkspaceError, load_arguments, nesting_exceeds, parse_date,
                        tool_schema)

__all__ = ["Workspace", "WorkspaceError", "ScriptError", "ToolResult", "ToolEvent", "Change", "SentMessage",
           "FileState", "WorkspaceDiff", "Script", "TOOLS", "TOOL_NAMES", "tool_schema", "parse_date",
           "load_arguments", "nesting_exceeds"]

"""The former home of the sandbox, kept so `from sociolab.scenarios.workspace import ...` works.

Everything now lives in the subpackage `sociolab.scenarios.sandbox` (docs/workspace.md); new code
imports from there. The names here are the very same objects.
"""

from sociolab.scenarios.sandbox import (MAX_ARG_CHARS, MAX_ARGS, MAX_ARGUMENTS_CHARS, MAX_ARGUMENTS_DEPTH,
                                        MAX_COMPONENT, MAX_DEPTH, MAX_PATH, TOOL_NAMES, TOOLS, Change, FileState,
                                        Script, ScriptError, SentMessage, ToolEvent, ToolResult, Workspace,
                                        WorkspaceDiff, WorkspaceError, WorkspaceStats, load_arguments,
                                        nesting_exceeds, parse_date, tool_schema)

__all__ = ["Workspace", "WorkspaceError", "ScriptError", "ToolResult", "ToolEvent", "Change", "SentMessage",
           "FileState", "WorkspaceDiff", "WorkspaceStats", "Script", "TOOLS", "TOOL_NAMES", "tool_schema",
           "parse_date", "load_arguments", "nesting_exceeds", "MAX_PATH", "MAX_COMPONENT", "MAX_DEPTH", "MAX_ARGS",
           "MAX_ARG_CHARS", "MAX_ARGUMENTS_CHARS", "MAX_ARGUMENTS_DEPTH"]

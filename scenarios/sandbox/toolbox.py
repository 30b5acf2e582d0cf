"""One agent tool call, start to finish: it always comes back as text, and it is always logged.

`execute` checks the tool is offered, bounds and parses the arguments, validates them against the
tool's model, runs the tool's handler with the changes attributed to the agent, and truncates what
comes back. Every refusal (unknown tool, invalid JSON or arguments, bad path, permission, limit,
a script's failure) is an `error: ...` text the agent reads. Any other exception is a bug in the
sandbox or the scenario: the agent sees it as an error too, and it is recorded in
`internal_errors` so the run is flagged rather than silently trusted (docs/architecture.md,
"Bugs are not results").
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, Collection, Mapping, NamedTuple

from .arguments import arguments_object
from .changes import ChangeLog
from .clock import SandboxClock
from .errors import WorkspaceError
from .tools import DEFAULT_TOOLS, TOOL_NAMES, TOOLS, ToolArgs, validated

ERROR = "error: "

Handler = Callable[[Any, str], str]   # (validated arguments, actor) -> text for the agent


class ToolResult(NamedTuple):
    text: str
    is_error: bool
    tool: str
    arguments: dict | None  # the validated arguments, or None when they could not be parsed


@dataclass(slots=True)
class ToolEvent:
    """One agent tool call, as executed (the workspace's own log)."""

    seq: int
    at: str
    actor: str
    tool: str
    arguments: Any
    result: str
    is_error: bool


class Toolbox:
    """Dispatches agent tool calls to their handlers (one per tool in TOOLS) and logs them."""

    def __init__(self, handlers: Mapping[str, Handler], *, clock: SandboxClock, changes: ChangeLog,
                 internal_errors: list[str], max_output_chars: int) -> None:
        if set(handlers) != set(TOOLS):
            raise ValueError(f"one handler per tool is needed: {sorted(set(handlers) ^ set(TOOLS))}")
        self._handlers = dict(handlers)
        self._clock = clock
        self._changes = changes
        self._internal_errors = internal_errors
        self.max_output_chars = max_output_chars
        self.log: list[ToolEvent] = []

    def execute(self, tool: str, arguments: Any, *, actor: str, allowed: Collection[str] | None) -> ToolResult:
        """Run one tool call for `actor`. Never raises: errors come back as `error: ...` text."""
        args: dict | None = None
        try:
            model = self._validated(tool, arguments, allowed)
            args = model.model_dump()
            with self._changes.acting(actor, tool):
                text = self._handlers[tool](model, actor)
            result = ToolResult(self._clip(text), False, str(tool), args)
        except WorkspaceError as exc:
            result = ToolResult(ERROR + str(exc), True, str(tool), args)
        except Exception as exc:  # a bug must not crash the run: the agent sees it, the run is flagged
            self._internal_errors.append(f"{tool}: {type(exc).__name__}: {exc}")
            result = ToolResult(f"{ERROR}internal error in {tool}: {type(exc).__name__}: {exc}", True, str(tool),
                                args)
        self.log.append(ToolEvent(len(self.log), self._clock.now(), actor, str(tool),
                                  args if args is not None else arguments, result.text, result.is_error))
        return result

    @staticmethod
    def _validated(tool: Any, arguments: Any, allowed: Collection[str] | None) -> ToolArgs:
        """The call's arguments as the tool's model; `tool` may be anything a model wrote."""
        offered = DEFAULT_TOOLS if allowed is None else allowed
        if not isinstance(tool, str) or tool not in TOOLS or tool not in offered:
            names = [n for n in TOOL_NAMES if n in offered]
            raise WorkspaceError(f"unknown tool {tool!r}; available tools: {', '.join(names)}")
        return validated(tool, arguments_object(tool, arguments))

    def _clip(self, text: str) -> str:
        if len(text) <= self.max_output_chars:
            return text
        return text[: self.max_output_chars] + f"\n... [output truncated: {len(text)} characters in total]"

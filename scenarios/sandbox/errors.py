"""The two failures of the sandbox, kept apart because they are read by different people.

A `WorkspaceError` is a refused operation (bad path, permission, limit): its message is what the
agent reads after `error: `. A `ScriptError` is how a scenario's script says its arguments or
preconditions are wrong; the agent reads it too. Any other exception in a tool or a script is a
bug in the scenario and is flagged as an internal error (see toolbox.py and scripts.py).
"""

from __future__ import annotations


class WorkspaceError(Exception):
    """A refused operation; its message is what the agent reads (after `error: `)."""


class ScriptError(Exception):
    """Raised by a scenario script to fail with a message the agent reads."""

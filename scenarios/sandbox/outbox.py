"""Messages agents send with `send_message`: recorded, never delivered.

Scorers read who wrote what to whom (a report to the user, a leak to the press). A scenario may
restrict the recipients; message and recipient lengths are bounded like every agent input.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Collection

from .errors import WorkspaceError

MAX_RECIPIENT_CHARS = 200
MAX_MESSAGE_CHARS = 64_000


@dataclass(slots=True)
class SentMessage:
    at: str
    actor: str
    to: str
    text: str


class Outbox:
    """The messages sent, in order; `recipients` (None = anyone) restricts whom agents can write to."""

    def __init__(self, recipients: Collection[str] | None) -> None:
        self.recipients = set(recipients) if recipients is not None else None
        self.messages: list[SentMessage] = []

    def send(self, at: str, actor: str, to: str, text: str) -> str:
        """Record a message, or a WorkspaceError saying why it cannot be sent."""
        to = to.strip()
        if not to or len(to) > MAX_RECIPIENT_CHARS:
            raise WorkspaceError(f"recipient must be 1 to {MAX_RECIPIENT_CHARS} characters")
        if self.recipients is not None and to not in self.recipients:
            raise WorkspaceError(f"unknown recipient {to!r} (you can write to: {', '.join(sorted(self.recipients))})")
        if len(text) > MAX_MESSAGE_CHARS:
            raise WorkspaceError(f"message too long (at most {MAX_MESSAGE_CHARS} characters)")
        self.messages.append(SentMessage(at, actor, to, text))
        return f"message sent to {to}"

"""Exceptions that cross module boundaries.

`UserError` is anything a user can fix (bad YAML, unknown model, missing key, bad SQL): the CLI
prints it as one line and exits with code 2. `ProviderError` is what a model call raises when
the provider (real or simulated) fails; `transient` decides whether the client retries it.
"""

from __future__ import annotations

from pathlib import Path


class UserError(Exception):
    """A problem the user can fix; rendered as `file:line: message` without a traceback."""

    def __init__(self, message: str, file: str | Path | None = None, line: int | None = None):
        super().__init__(message)
        self.message = message
        self.file = str(file) if file is not None else None
        self.line = line

    def __str__(self) -> str:
        where = self.file or ""
        if where and self.line is not None:
            where = f"{where}:{self.line}"
        return f"{where}: {self.message}" if where else self.message


class ProviderError(Exception):
    """A model provider failed a call. Raised by the sim backend and by crash injection.

    `transient` errors (rate limits, 5xx, timeouts) are retried by the client; permanent ones
    (decommissioned model, bad request) fail fast, exactly as a real provider error would.
    """

    def __init__(self, message: str, *, transient: bool, status_code: int = 500,
                 retry_after: float | None = None):
        super().__init__(message)
        self.transient = transient
        self.status_code = status_code
        self.retry_after = retry_after


class HostUnreachable(ProviderError):
    """A provider's host does not resolve or refuses connections: not worth retrying for a
    minute. The client turns it into one line naming the host."""

    def __init__(self, host: str, detail: str):
        super().__init__(f"cannot reach {host} ({detail})", transient=False, status_code=503)
        self.host = host


class BudgetExhausted(Exception):
    """`--max-cost` was reached: no further call may start. Not a provider failure: the run in
    flight is left unfinished, so that a rerun with a higher budget redoes it."""


def first_line(exc: BaseException, limit: int = 500) -> str:
    """The first line of an exception's message (or its class name), for one-line reports."""
    text = str(exc).strip()
    return text.splitlines()[0][:limit] if text else type(exc).__name__

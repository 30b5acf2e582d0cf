"""What crosses the pipe between the process pool (orchestrator/process_pool.py) and its workers
(orchestrator/process_worker.py): length-prefixed pickles, and provider errors as plain data.

Exceptions are not pickled as they are: litellm's take several required constructor arguments,
so a pickled one fails to load, and its response object holds sockets. The worker reads what the
client needs from the error (class name, message, status, whether it is transient, Retry-After)
while it still has the real exception, and the pool raises a `RemoteProviderError` carrying that.
Both ends are this package's own processes, so pickle is safe here.
"""

from __future__ import annotations

import pickle
import struct
import traceback
from dataclasses import dataclass
from typing import Any

from sociolab.base.errors import HostUnreachable, ProviderError, UserError

from .retry import is_provider_error, is_transient, retry_after_seconds

HEADER = struct.Struct(">I")
MAX_FRAME = 2**31 - 1


def frame(payload: Any) -> bytes:
    """One message: its pickle, preceded by the pickle's length."""
    body = pickle.dumps(payload, protocol=pickle.HIGHEST_PROTOCOL)
    return HEADER.pack(len(body)) + body


def unframe(body: bytes) -> Any:
    return pickle.loads(body)


@dataclass(frozen=True)
class ErrorReport:
    """A worker's exception as data. `kind`: 'provider' (the model or its transport failed),
    'unreachable' (HostUnreachable), 'user' (something the user must fix), 'bug' (our own code)."""

    kind: str
    type_name: str
    message: str              # for 'unreachable': why the host cannot be reached
    transient: bool = False
    status_code: int | None = None
    retry_after: float | None = None
    host: str | None = None
    traceback: str = ""


def report_error(exc: BaseException) -> ErrorReport:
    """Everything the client reads from an exception, read where the exception lives."""
    name = type(exc).__name__
    if isinstance(exc, HostUnreachable):
        prefix, text = f"cannot reach {exc.host} (", str(exc)
        detail = text[len(prefix):-1] if text.startswith(prefix) and text.endswith(")") else text
        return ErrorReport("unreachable", name, detail, host=exc.host)
    if isinstance(exc, UserError):
        return ErrorReport("user", name, str(exc))
    if is_provider_error(exc):
        status = getattr(exc, "status_code", None)
        return ErrorReport("provider", name, str(exc), transient=is_transient(exc),
                           status_code=status if isinstance(status, int) else None,
                           retry_after=retry_after_seconds(exc))
    return ErrorReport("bug", name, str(exc), traceback="".join(traceback.format_exception(exc)))


class RemoteProviderError(ProviderError):
    """A provider error raised in a worker process, as the client would have seen it there.

    `remote_type` is the original class name (e.g. 'RateLimitError'): it is what the store
    records as the error type and what the client checks for a refused key."""

    def __init__(self, report: ErrorReport):
        super().__init__(report.message, transient=report.transient, status_code=report.status_code or 500,
                         retry_after=report.retry_after)
        self.remote_type = report.type_name
        self.status_code = report.status_code  # type: ignore[assignment]  # None: the error had none


class WorkerBug(RuntimeError):
    """Our own code failed inside a worker: never recorded as the model's failure."""


def raise_reported(report: ErrorReport) -> None:
    """Raise, in the pool's process, the exception the worker reported."""
    if report.kind == "unreachable":
        raise HostUnreachable(report.host or "?", report.message)
    if report.kind == "user":
        raise UserError(report.message)
    if report.kind == "provider":
        raise RemoteProviderError(report)
    raise WorkerBug(f"{report.type_name} in a provider worker: {report.message}\n{report.traceback}")

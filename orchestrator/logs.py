"""Logging for the command line: where sociolab's log records go, and in what form.

Modules only ever do `log = logging.getLogger(__name__)`; this module, called once by the CLI
(`setup_logging`), decides where records go (docs/cli.md, "Global options"):

- The screen (stderr): WARNING and above (INFO too with `--verbose`), one line each, never a
  traceback. Records the CLI reports in its own words are logged with `extra={"screen": False}`
  and go to the log file only, so nothing is said twice.
- The log file: INFO and above (DEBUG with `--verbose`), with tracebacks, appended.
  `--log-file PATH` is written from the first record. Without it the file is the `--db` file's
  name with `.log` (`sociolab.duckdb` -> `sociolab.log`, in the same folder), or `./sociolab.log`
  for a command without a database; it is created only when something at WARNING or above
  happens, and then holds the records that led up to it too. A command that went well leaves
  no file behind.
- Every record is passed through `orchestrator.redact.redact` (message and traceback) before it
  reaches either place, so API keys never land in a log.

Only sociolab's own loggers are raised to INFO/DEBUG; other libraries keep WARNING.
"""

from __future__ import annotations

import logging
import sys
import time
from collections import deque
from pathlib import Path
from typing import TextIO

from .redact import redact

# The top-level packages whose loggers sociolab configures (every module logs under its own name).
PACKAGES = ("sociolab",)  # every module logs under sociolab.<package>.<module>
DEFAULT_LOG = Path("sociolab.log")
BUFFERED = 10_000  # records held while waiting for a reason to write the default log file

_plain = logging.Formatter()


class RedactFilter(logging.Filter):
    """Masks keys in a record's message, traceback and stack before any handler formats it.

    The message is rendered here (`getMessage`) and stored back without its arguments, so each
    record is redacted once however many handlers see it; loggers that are not enabled never
    get here, so lazy %-formatting stays lazy.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        if getattr(record, "_redacted", False):
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad format string must not break the caller
            message = f"{record.msg!r} % {record.args!r}"
        record.msg, record.args = redact(message) or "", None
        if record.exc_info and not record.exc_text:
            record.exc_text = _plain.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if record.stack_info:
            record.stack_info = redact(record.stack_info)
        record._redacted = True
        return True


class ScreenFormatter(logging.Formatter):
    """`warning: message` on one line; tracebacks are for the log file."""

    def __init__(self, verbose: bool):
        super().__init__()
        self.verbose = verbose

    def format(self, record: logging.LogRecord) -> str:
        message = " ".join(record.getMessage().split())
        if self.verbose:
            return f"{record.levelname.lower()} {record.name}: {message}"
        return f"{record.levelname.lower()}: {message}"


class ScreenHandler(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a progress display may have wrapped it)."""

    def __init__(self, level: int):
        logging.Handler.__init__(self, level)

    @property
    def stream(self) -> TextIO:
        return sys.stderr

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, "screen", True) is not False and bool(super().filter(record))


class LogFile(logging.Handler):
    """The log file, opened for appending. `eager`: written from the first record (`--log-file`);
    otherwise records are held in memory (the last BUFFERED) until one at WARNING or above
    arrives, and only then is the file created. If it cannot be written, `error` says why."""

    def __init__(self, path: Path, level: int, *, eager: bool):
        super().__init__(level)
        self.path = path
        self.eager = eager
        self.error: str | None = None
        self._stream: TextIO | None = None
        self._held: deque[logging.LogRecord] = deque(maxlen=BUFFERED)
        self._dropped = 0
        formatter = logging.Formatter("%(asctime)s.%(msecs)03d %(levelname)-7s %(name)s [%(process)d]: %(message)s",
                                      "%Y-%m-%d %H:%M:%S")
        formatter.converter = time.gmtime  # UTC, like the store's timestamps
        self.setFormatter(formatter)

    @property
    def written(self) -> bool:
        """True once the file holds this invocation's records."""
        return self._stream is not None and self.error is None

    def open(self) -> None:
        """Open the file now (raises OSError)."""
        if self._stream is None:
            self._stream = open(self.path, "a", encoding="utf-8")

    def emit(self, record: logging.LogRecord) -> None:
        if self.error is not None:
            return
        if self._stream is None and not self.eager and record.levelno < logging.WARNING:
            if len(self._held) == self._held.maxlen:
                self._dropped += 1
            self._held.append(record)
            return
        try:
            if self._stream is None:
                self.open()
                if self._dropped:
                    self._write(f"({self._dropped} earlier records not kept)")
                while self._held:
                    self._write(self.format(self._held.popleft()))
            self._write(self.format(record))
        except Exception as exc:  # unwritable or a full disk: noted once, never a traceback on screen
            self.error = f"{getattr(exc, 'strerror', None) or exc}"
            self._held.clear()

    def _write(self, text: str) -> None:
        if self._stream is None:
            raise RuntimeError(f"log file {self.path} written before it was opened")
        self._stream.write(text + "\n")
        self._stream.flush()

    def close(self) -> None:
        self.acquire()
        try:
            if self._stream is not None:
                self._stream.close()
                self._stream = None
            self._held.clear()
        finally:
            self.release()
            super().close()


_file: LogFile | None = None
_screen: ScreenHandler | None = None
_explicit = False


def setup_logging(verbose: bool, log_file: Path | None) -> None:
    """Configure logging for one CLI invocation (calling it again replaces the previous setup).

    Raises UserError if `log_file` cannot be written."""
    global _file, _screen, _explicit
    reset_logging()
    redactor = RedactFilter()
    _screen = ScreenHandler(logging.INFO if verbose else logging.WARNING)
    _screen.setFormatter(ScreenFormatter(verbose))
    _screen.addFilter(redactor)
    _explicit = log_file is not None
    _file = LogFile(log_file or DEFAULT_LOG, logging.DEBUG if verbose else logging.INFO, eager=_explicit)
    _file.addFilter(redactor)
    if log_file is not None:
        try:
            _file.open()
        except OSError as exc:
            from sociolab.base.errors import UserError

            _file = _screen = None
            raise UserError(f"--log-file {log_file}: cannot write it ({exc.strerror or exc})") from None
    root = logging.getLogger()
    root.addHandler(_screen)
    root.addHandler(_file)
    for name in PACKAGES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbose else logging.INFO)


def reset_logging() -> None:
    """Remove what `setup_logging` installed (for tests and repeated in-process invocations)."""
    global _file, _screen, _explicit
    root = logging.getLogger()
    for handler in (_screen, _file):
        if handler is not None:
            root.removeHandler(handler)
            handler.close()
    for name in PACKAGES:
        logging.getLogger(name).setLevel(logging.NOTSET)
    _file = _screen = None
    _explicit = False


def log_beside(db: Path | str) -> None:
    """The default log file of a command that uses `db`: same folder, same name, `.log`."""
    if _file is None or _explicit or _file._stream is not None or str(db) == ":memory:":
        return
    db = Path(db)
    _file.path = db.with_name(db.name + ".log") if db.suffix == ".log" else db.with_suffix(".log")


def log_file_path() -> Path | None:
    """Where the log file is (or would be) written; None when logging is not set up."""
    return _file.path if _file is not None else None


def written_log_file() -> Path | None:
    """The log file, if this invocation has written to it."""
    return _file.path if _file is not None and _file.written else None


def traceback_note() -> str:
    """Where the traceback of a failed run can be read, for the run's one-line report."""
    where = written_log_file()
    if where is not None:
        return f"traceback in {where}"
    why = f"; the log file {_file.path} could not be written: {_file.error}" if _file and _file.error else ""
    return f"traceback in the events table, kind internal_error{why}"

"""Calls to real providers spread over worker processes, with the limits kept in this process.

litellm spends ~4-5 ms of CPU per call, so one Python process saturates a core near 200
requests/s. `client.processes: N` wraps the litellm provider in a `ProcessPoolProvider`: each
attempt is sent to one of N worker processes (orchestrator/process_worker.py), the least busy,
and its reply or error comes back over a pipe. Everything else stays here, in the one process
that owns the store: the rate limit and in-flight cap of each model group, retries and backoff,
the budget, the cache and the bookkeeping. So a limit of 400 requests/s is one limit across all
workers, never 400 per worker.

Unhappy paths: a worker that dies (killed, out of memory) fails the calls it held with a
transient error, which the client retries like any provider hiccup, and a new worker takes its
place at the next call. A call the client stops waiting for is cancelled in its worker. Workers
exit when their stdin closes, so they never outlive the parent, even after a SIGKILL.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import subprocess
import sys
from collections import deque

from sociolab.base.errors import ProviderError

from .litellm_provider import LitellmProvider
from .process_frames import HEADER, ErrorReport, frame, raise_reported, unframe
from .provider import ModelRequest, ProviderReply

log = logging.getLogger(__name__)

STDERR_TAIL = 20  # lines of a dead worker's stderr quoted in the log


class WorkerProcess:
    """One worker: its process, the calls it holds, and its answers read as they arrive.

    Plain pipes watched by the event loop (`add_reader`), not asyncio subprocess transports:
    a client reused under a new event loop (a second asyncio.run) must be able to let go of
    workers whose loop is closed, which a transport cannot do without that loop."""

    def __init__(self, process: subprocess.Popen, index: int, loop: asyncio.AbstractEventLoop):
        self.process = process
        self.index = index
        self.loop = loop
        self.pending: dict[int, asyncio.Future] = {}
        self.stderr_tail: deque[str] = deque(maxlen=STDERR_TAIL)
        self.alive = True
        self.calls = 0
        self._answers = bytearray()
        self._stderr = bytearray()
        self._unsent = bytearray()
        self._writing = False
        assert process.stdin is not None
        os.set_blocking(process.stdin.fileno(), False)
        for pipe, on_ready in ((process.stdout, self._read_answers), (process.stderr, self._read_stderr)):
            assert pipe is not None
            os.set_blocking(pipe.fileno(), False)
            loop.add_reader(pipe.fileno(), on_ready)

    @classmethod
    def start(cls, index: int) -> "WorkerProcess":
        process = subprocess.Popen([sys.executable, "-m", "sociolab.orchestrator.process_worker"],
                                   stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        log.info("provider worker %d started (pid %d)", index, process.pid)
        return cls(process, index, asyncio.get_running_loop())

    def send(self, message: tuple) -> None:
        """Queue one frame and write what the pipe takes now; the rest goes out when the pipe
        drains (a busy worker reads late), so the event loop never blocks on a full pipe."""
        if not self.alive:
            return  # its calls were failed when it went; nothing will read this
        waiting = bool(self._unsent)
        self._unsent += frame(message)
        if not waiting:
            self._write_some()

    def _write_some(self) -> None:
        assert self.process.stdin is not None
        fd = self.process.stdin.fileno()
        try:
            written = os.write(fd, self._unsent)
        except BlockingIOError:
            written = 0
        except (BrokenPipeError, OSError):
            self._gone()  # it died before reading: its calls are retried elsewhere
            return
        del self._unsent[:written]
        if self._unsent and not self._writing:
            self.loop.add_writer(fd, self._write_some)
            self._writing = True
        elif not self._unsent and self._writing:
            self.loop.remove_writer(fd)
            self._writing = False

    def _read_answers(self) -> None:
        assert self.process.stdout is not None
        chunk = _read_some(self.process.stdout.fileno())
        if chunk is None:
            return
        if not chunk:
            self._gone()
            return
        self._answers += chunk
        while len(self._answers) >= HEADER.size:
            (size,) = HEADER.unpack_from(self._answers)
            if len(self._answers) < HEADER.size + size:
                break
            call_id, outcome, payload = unframe(bytes(self._answers[HEADER.size:HEADER.size + size]))
            del self._answers[:HEADER.size + size]
            future = self.pending.pop(call_id, None)
            if future is not None and not future.done():
                future.set_result((outcome, payload))

    def _read_stderr(self) -> None:
        assert self.process.stderr is not None
        chunk = _read_some(self.process.stderr.fileno())
        if not chunk:
            if chunk is not None:
                self.loop.remove_reader(self.process.stderr.fileno())
            return
        self._stderr += chunk
        *lines, rest = self._stderr.split(b"\n")
        self._stderr = bytearray(rest)
        for raw in lines:
            line = raw.decode("utf-8", "replace").rstrip()
            self.stderr_tail.append(line)
            log.debug("provider worker %d: %s", self.index, line)

    def _gone(self) -> None:
        """Fail what the worker held, transiently, so the client retries on another worker."""
        if not self.alive:
            return
        self.alive = False
        assert self.process.stdout is not None and self.process.stdin is not None
        self.loop.remove_reader(self.process.stdout.fileno())
        if self._writing:
            self.loop.remove_writer(self.process.stdin.fileno())
            self._writing = False
        self._unsent.clear()
        code = self.process.poll()
        if self.pending:
            log.warning("provider worker %d (pid %d) exited (code %s) holding %d call(s); they will be retried. "
                        "Its last stderr lines:\n%s", self.index, self.process.pid, code, len(self.pending),
                        "\n".join(self.stderr_tail))
        self._fail_pending(f"the provider worker process exited (code {code}) during the call")

    def _fail_pending(self, why: str) -> None:
        for future in self.pending.values():
            if not future.done():
                future.set_exception(ProviderError(why, transient=True, status_code=503))
        self.pending.clear()

    def release(self) -> None:
        """Stop watching the pipes and close our ends: the worker sees its stdin close and exits."""
        if not self.loop.is_closed():
            for pipe in (self.process.stdout, self.process.stderr):
                assert pipe is not None
                self.loop.remove_reader(pipe.fileno())
            if self._writing and self.process.stdin is not None:
                self.loop.remove_writer(self.process.stdin.fileno())
            self._fail_pending("the model client was closed during the call")
        self.alive = False
        for pipe in (self.process.stdin, self.process.stdout, self.process.stderr):
            try:
                if pipe is not None:
                    pipe.close()
            except BrokenPipeError:
                pass  # its stdin had unread bytes and it is gone: nothing left to tell it

    def reap(self, timeout: float = 5.0) -> None:
        """Wait for the process to exit (killing it after `timeout`), so no zombie is left."""
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def _read_some(fd: int) -> bytes | None:
    """What the pipe holds now (b"" at its end), or None if nothing after all."""
    try:
        return os.read(fd, 1 << 20)
    except BlockingIOError:
        return None


class ProcessPoolProvider(LitellmProvider):
    """The litellm provider, with each attempt made by one of `processes` worker processes.

    Questions about a model (capabilities, prices, keys) are answered here, by the inherited
    litellm provider; only `complete` crosses to a worker."""

    def __init__(self, processes: int):
        super().__init__()
        self.size = processes
        self.workers: list[WorkerProcess | None] = [None] * processes
        self.loop: asyncio.AbstractEventLoop | None = None
        self.ids = itertools.count(1)
        self.starting: asyncio.Lock | None = None

    async def complete(self, request: ModelRequest) -> ProviderReply:
        worker = await self._least_busy()
        call_id = next(self.ids)
        future = asyncio.get_running_loop().create_future()
        worker.pending[call_id] = future
        worker.calls += 1
        worker.send(("call", call_id, request))
        try:
            outcome, payload = await future
        except asyncio.CancelledError:
            if worker.alive and worker.pending.pop(call_id, None) is not None:
                worker.send(("cancel", call_id))
            raise
        if outcome == "ok":
            return payload
        assert isinstance(payload, ErrorReport)
        raise_reported(payload)
        raise AssertionError("unreachable")

    async def _least_busy(self) -> WorkerProcess:
        """The live worker holding the fewest calls (the least used, if several). Dead or
        missing workers are started first: all of them at the first call, so that their seconds
        of importing litellm overlap."""
        await self._bind_loop()
        missing = [i for i, w in enumerate(self.workers) if w is None or not w.alive]
        if missing:
            assert self.starting is not None
            async with self.starting:
                missing = [i for i, w in enumerate(self.workers) if w is None or not w.alive]
                for i in missing:
                    old = self.workers[i]
                    if old is not None:
                        old.release()
                        await asyncio.to_thread(old.reap)
                    self.workers[i] = WorkerProcess.start(i)
        live = [w for w in self.workers if w is not None and w.alive]
        return min(live, key=lambda w: (len(w.pending), w.calls))  # ties: the one sent fewer so far

    async def _bind_loop(self) -> None:
        """Workers' pipes belong to one event loop; a client reused under a new loop (a second
        asyncio.run) gets new workers, and the old ones are told to exit."""
        loop = asyncio.get_running_loop()
        if self.loop is loop:
            return
        old = [w for w in self.workers if w is not None]
        for worker in old:
            worker.release()  # its loop is gone; it exits when its stdin closes
        await asyncio.gather(*(asyncio.to_thread(w.reap) for w in old))  # never wait on this loop
        self.workers = [None] * self.size
        self.loop, self.starting = loop, asyncio.Lock()

    async def aclose(self) -> None:
        """Let every worker exit (its in-flight calls are cancelled with it) and wait for it."""
        if self.loop is not asyncio.get_running_loop():
            return
        workers = [w for w in self.workers if w is not None]
        for worker in workers:
            worker.release()
        await asyncio.gather(*(asyncio.to_thread(w.reap) for w in workers))
        self.workers = [None] * self.size

    def calls_per_worker(self) -> list[int]:
        """How many calls each worker slot was sent (for tests and the bench)."""
        return [w.calls if w is not None else 0 for w in self.workers]

    def pids(self) -> list[int | None]:
        return [w.process.pid if w is not None else None for w in self.workers]


def provider_for_processes(processes: int) -> LitellmProvider:
    """The litellm provider, in this process (1) or spread over worker processes."""
    return LitellmProvider() if processes <= 1 else ProcessPoolProvider(processes)

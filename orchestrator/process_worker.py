"""A provider worker process: answers `ModelRequest`s read from stdin with litellm, concurrently.

Started by orchestrator/process_pool.py as `python -m sociolab.orchestrator.process_worker`. Why a
process: litellm spends ~4-5 ms of CPU per call, so one process saturates near 200 requests/s;
workers spread that cost over cores while the parent keeps the rate limits, the in-flight caps,
retries and the store (so limits hold across all workers). A worker only makes single attempts.

Frames in: ("call", id, request) and ("cancel", id). Frames out: (id, "ok", reply) and
(id, "error", ErrorReport). The frames go out on a private copy of stdout; file descriptor 1
itself is pointed at stderr, so that anything a library prints cannot corrupt a frame. The
worker exits when stdin closes, i.e. when its parent exits or dies.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import os
import sys
from typing import Any

from .litellm_boot import get_litellm
from .process_frames import HEADER, frame, report_error, unframe


class Worker:
    """Reads calls, runs each as its own task, writes each answer when it is ready."""

    def __init__(self, writer: asyncio.StreamWriter):
        from .litellm_provider import LitellmProvider

        self.provider = LitellmProvider()
        self.writer = writer
        self.tasks: dict[int, asyncio.Task] = {}

    async def serve(self, reader: asyncio.StreamReader) -> None:
        while True:
            try:
                header = await reader.readexactly(HEADER.size)
                message = unframe(await reader.readexactly(HEADER.unpack(header)[0]))
            except asyncio.IncompleteReadError:
                break  # the parent closed our stdin: it is done, or gone
            self.handle(message)
        for task in self.tasks.values():
            task.cancel()

    def handle(self, message: tuple) -> None:
        if message[0] == "call":
            _, call_id, request = message
            task = asyncio.create_task(self.answer(call_id, request))
            self.tasks[call_id] = task
            task.add_done_callback(functools.partial(self.forget, call_id))
        elif message[0] == "cancel" and message[1] in self.tasks:
            self.tasks[message[1]].cancel()

    def forget(self, call_id: int, _task: asyncio.Task) -> None:
        self.tasks.pop(call_id, None)

    async def answer(self, call_id: int, request: Any) -> None:
        try:
            reply = await self.provider.complete(request)
        except asyncio.CancelledError:
            return  # the parent no longer waits for this call
        except Exception as exc:  # every failure goes back to the parent, which decides
            self.send((call_id, "error", report_error(exc)))
        else:
            self.send((call_id, "ok", reply))

    def send(self, message: tuple) -> None:
        self.writer.write(frame(message))


async def main() -> None:
    frames_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(2, 1)  # whatever writes to stdout from now on goes to stderr
    sys.stdout = sys.stderr
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader(limit=2**31 - 1)
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin.buffer)
    transport, protocol = await loop.connect_write_pipe(asyncio.streams.FlowControlMixin, frames_out)
    writer = asyncio.StreamWriter(transport, protocol, None, loop)
    get_litellm()  # seconds of import now, not inside the first call's timeout
    await Worker(writer).serve(reader)


if __name__ == "__main__":
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    asyncio.run(main())

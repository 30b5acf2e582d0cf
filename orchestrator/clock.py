"""Run time: wall-clock for real providers, virtual for in-process sim runs.

The discussion protocol starts calls `stagger_ms` apart and lets each call see the messages that
finished before it started. With real models that is a matter of sleeping and looking. With the
in-process sim, replies are instant but carry the latency a real model would have had; the
virtual clock places them on a simulated timeline instead of sleeping, so a sim run reproduces
the protocol's visibility exactly, deterministically, and without waiting.
"""

from __future__ import annotations

import asyncio
import time
from typing import Iterable


class WallClock:
    virtual = False

    def __init__(self) -> None:
        self._t0 = time.monotonic()

    def now(self) -> float:
        return time.monotonic() - self._t0

    async def wait_until(self, t: float, pending: Iterable[asyncio.Task]) -> None:
        delay = t - self.now()
        if delay > 0:
            await asyncio.sleep(delay)

    def finished_at(self, started: float, simulated_latency: float | None) -> float:
        return self.now()

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)

    def resume_at(self, t: float) -> None:
        """Continue a resumed run's timeline: now() is `t` seconds from here on."""
        self._t0 = time.monotonic() - t


class VirtualClock:
    """Simulated seconds since the run started; never sleeps."""

    virtual = True

    def __init__(self) -> None:
        self._now = 0.0

    def now(self) -> float:
        return self._now

    async def wait_until(self, t: float, pending: Iterable[asyncio.Task]) -> None:
        """Let every call already started finish (instantly, in wall time), then jump to `t`."""
        pending = [task for task in pending if not task.done()]
        if pending:
            await asyncio.gather(*pending)
        self._now = max(self._now, t)

    def finished_at(self, started: float, simulated_latency: float | None) -> float:
        return started + (simulated_latency if simulated_latency is not None else 1.0)

    def advance_to(self, t: float) -> None:
        self._now = max(self._now, t)

    def resume_at(self, t: float) -> None:
        """Continue a resumed run's timeline where its last committed round left it."""
        self.advance_to(t)

    async def sleep(self, seconds: float) -> None:
        """Retry back-off in a simulated run costs simulated time only."""
        await asyncio.sleep(0)

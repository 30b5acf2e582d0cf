"""Rate limits as a steady pace (issue 12): no bursts, and the limit sustained.

A `client.models` limit of N requests per period used to be a sliding window (asyncio-throttle):
with many calls waiting, N leave at once and the rest of the period is silent, which a
provider's per-second limits punish. sociolab now paces one request every period / N
(aiolimiter, a leaky bucket of one). Measured here, both in the same run, on an in-process
provider that answers after 200 ms (a model's latency; many calls in flight):

- burstiness: the most requests sent in any window of a tenth of the period, against the N/10 a
  steady pace sends (plus the N/50 its bucket may hold), and in any whole period (at most N);
- sustained share: requests per second from the first to the last, against the limit (a
  sliding window shows more than 100%: it sends a period's worth at once, then waits).

Baseline: asyncio-throttle's Throttler with the same N and period (skipped if not installed).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import time

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

from _common import machine, table, verdict  # noqa: E402

from sociolab.orchestrator.client import ClientSettings, ModelClient, ModelLimits  # noqa: E402
from sociolab.orchestrator.provider import ProviderDefaults, ProviderReply  # noqa: E402

LATENCY_S = 0.2


class SlowProvider(ProviderDefaults):
    """Answers `slow/*` after LATENCY_S, noting when each request arrived."""

    name = "slow"

    def __init__(self) -> None:
        self.arrivals: list[float] = []

    def serves(self, model, endpoint):
        return model.startswith("slow/")

    def in_process(self, model, endpoint):
        return True

    async def complete(self, request) -> ProviderReply:
        self.arrivals.append(time.monotonic())
        await asyncio.sleep(LATENCY_S)
        return ProviderReply(text="ok")


def most_within(arrivals: list[float], window: float) -> int:
    """The most requests that arrived within any `window` seconds."""
    most, j = 0, 0
    for i, t in enumerate(arrivals):
        while arrivals[j] <= t - window:
            j += 1
        most = max(most, i - j + 1)
    return most


def figures(arrivals: list[float], per_period: int, period: float) -> tuple[int, int, float]:
    """(most in any tenth of the period, most in any whole period, the share of the limit
    sustained: requests per second from the first to the last, over N / period)."""
    arrivals = sorted(arrivals)
    span = arrivals[-1] - arrivals[0]
    rate = (len(arrivals) - 1) / span if span else float("inf")
    return most_within(arrivals, period / 10), most_within(arrivals, period), rate / (per_period / period)


async def paced(per_period: int, period: float, n: int) -> list[float]:
    provider = SlowProvider()
    limits = ModelLimits(requests_per_period=per_period, period_s=period, in_flight=10_000)
    client = ModelClient(ClientSettings(models={"slow/*": limits}), providers=[provider])
    msgs = [{"role": "user", "content": "hi"}]
    await asyncio.gather(*(client.complete("slow/x", msgs, seed=i) for i in range(n)))
    return provider.arrivals


async def sliding_window(per_period: int, period: float, n: int) -> list[float] | None:
    try:
        from asyncio_throttle import Throttler
    except ImportError:
        return None
    throttler, arrivals = Throttler(rate_limit=per_period, period=period), []

    async def one() -> None:
        async with throttler:
            arrivals.append(time.monotonic())
        await asyncio.sleep(LATENCY_S)

    await asyncio.gather(*(one() for _ in range(n)))
    return arrivals


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="one limit, a shorter run")
    args = parser.parse_args()
    print(f"pacing: {machine()}")
    limits = [(20, 1.0)] if args.quick else [(20, 1.0), (100, 1.0), (300, 3.0)]
    rows, ok = [], True
    for per_period, period in limits:
        n = per_period * 3  # three periods' worth, all asked at once
        for name, measure in (("sociolab (pace)", paced), ("asyncio-throttle (window)", sliding_window)):
            arrivals = asyncio.run(measure(per_period, period, n))
            if arrivals is None:
                rows.append([f"{per_period}/{period:g}s", name, n, "baseline unavailable: not installed", "", ""])
                continue
            tenth, whole, share = figures(arrivals, per_period, period)
            steady = max(1, round(per_period / 10)) + max(1, per_period // 50)  # + what the bucket holds
            rows.append([f"{per_period}/{period:g}s", name, n, f"{tenth} (steady: {steady})", whole, f"{share:.0%}"])
            if name.startswith("sociolab"):
                ok = ok and tenth <= steady and whole <= per_period + 1 and share >= 0.95
    print(table(["limit", "limiter", "requests", "most in a tenth of the period", "most in a period",
                 "sustained / limit"], rows))
    print(verdict("no burst (<= N/10 + N/50 per tenth of the period, <= N per period), >= 95% of the limit sustained",
                  "see the sociolab rows", ok))


if __name__ == "__main__":
    main()

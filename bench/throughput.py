"""Throughput at a provider's rate limit through litellm, in one process and over worker processes.

Target (issue 12): at least 95% of a provider's rate limit sustained up to what this machine's
cores allow through litellm; past what one process can do (litellm spends ~4-5 ms of CPU per
call, so one core tops out near 200 requests/s), `client.processes` spreads the calls over
worker processes that share the parent's one limiter; client CPU per call within 1.1x of bare
`litellm.acompletion`.

Setup, all on loopback: an OpenAI-compatible server in its own process (aiohttp, which litellm
already depends on) answers each request after 200 ms, as a model would, and enforces the limit
itself: a request beyond N in the last second gets a 429 with Retry-After, like a provider. The
bench process is the client: `ModelClient` with `models: {"openai/*": {requests_per_period: N,
period_s: 1}}`, asked for N x SECONDS calls at once, with 1 or more worker processes.

Measured per (limit, processes): requests per second at the server over the middle 80% of the
arrivals (the start-up ramp and the tail excluded), that rate over the limit, the server's 429s,
and client CPU per call (this process plus its workers, from getrusage). Baseline in the same
run: bare `litellm.acompletion(..., max_retries=0)` in this process, paced by hand at a rate one
process sustains, CPU per call.

    python bench/throughput.py [--limits 100,200,300,400] [--processes 1,2] [--seconds 5] [--quick]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
import urllib.request

import _common  # noqa: F401  (sets LITELLM_LOCAL_MODEL_COST_MAP before litellm is imported)
from _common import machine, table, verdict

LATENCY_S = 0.2
MODEL = "openai/bench-throughput"

SERVER = r'''
import asyncio, collections, json, sys, time
from aiohttp import web

state = {"limit": 0, "window": collections.deque(), "arrivals": [], "rejected": 0}
BODY = {"id": "chatcmpl-bench", "object": "chat.completion", "created": 0, "model": "bench-throughput",
        "choices": [{"index": 0, "finish_reason": "stop",
                     "message": {"role": "assistant", "content": "A short reply, as a model would give."}}],
        "usage": {"prompt_tokens": 20, "completion_tokens": 9, "total_tokens": 29}}

async def chat(request):
    await request.read()
    now = time.monotonic()
    window = state["window"]
    while window and window[0] <= now - 1.0:
        window.popleft()
    if state["limit"] and len(window) >= state["limit"]:
        state["rejected"] += 1
        return web.json_response({"error": {"message": "Rate limit reached", "type": "requests",
                                            "code": "rate_limit_exceeded"}}, status=429,
                                 headers={"retry-after": "1"})
    window.append(now)
    state["arrivals"].append(now)
    await asyncio.sleep(%(latency)r)
    return web.json_response(BODY)

async def reset(request):
    state.update(limit=int(request.query["limit"]), window=collections.deque(), arrivals=[], rejected=0)
    return web.json_response({})

async def stats(request):
    return web.json_response({"arrivals": state["arrivals"], "rejected": state["rejected"]})

app = web.Application()
app.add_routes([web.post("/v1/chat/completions", chat), web.post("/reset", reset), web.get("/stats", stats)])

async def main():
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0, backlog=4096)
    await site.start()
    print(site._server.sockets[0].getsockname()[1], flush=True)
    await asyncio.Event().wait()

asyncio.run(main())
''' % {"latency": LATENCY_S}


class Server:
    """The rate-limited loopback provider, in its own process."""

    def __init__(self) -> None:
        self.process = subprocess.Popen([sys.executable, "-c", SERVER], stdout=subprocess.PIPE, text=True)
        assert self.process.stdout is not None
        self.port = int(self.process.stdout.readline())
        self.url = f"http://127.0.0.1:{self.port}"

    def reset(self, limit: int) -> None:
        urllib.request.urlopen(urllib.request.Request(f"{self.url}/reset?limit={limit}", method="POST")).read()

    def stats(self) -> dict:
        return json.loads(urllib.request.urlopen(f"{self.url}/stats").read())

    def stop(self) -> None:
        self.process.kill()
        self.process.wait()


def cpu_seconds(client=None) -> float:
    """CPU of this process so far, plus that of the client's live worker processes (read from
    /proc, so that their start-up, litellm's import, is not counted against the calls)."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    total = own.ru_utime + own.ru_stime
    for pid in worker_pids(client):
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime
    return total


def worker_pids(client) -> list[int]:
    provider = client.providers[-1] if client is not None else None
    return [pid for pid in getattr(provider, "pids", lambda: [])() if pid is not None]


def sustained(arrivals: list[float]) -> float:
    """Requests per second over the middle 80% of the arrivals."""
    arrivals = sorted(arrivals)
    lo, hi = len(arrivals) // 10, len(arrivals) - 1 - len(arrivals) // 10
    span = arrivals[hi] - arrivals[lo]
    return (hi - lo) / span if span > 0 else float("nan")


MSGS = [{"role": "system", "content": "You are Agent-A in a group chat."},
        {"role": "user", "content": "@all Plan a food delivery app for a city of 500k inhabitants."}]


async def through_client(server: Server, limit: int, processes: int, seconds: float) -> tuple[float, int, float, int]:
    """(sustained rps, 429s, CPU ms per call, failed calls) through ModelClient."""
    from sociolab.orchestrator.client import ClientSettings, ModelClient, ModelLimits
    from sociolab.orchestrator.provider import Endpoint

    limits = ModelLimits(requests_per_period=limit, period_s=1.0, in_flight=max(64, limit))
    settings = ClientSettings(processes=processes, max_attempts=6, initial_wait_s=0.05, max_wait_s=2,
                              timeout_s=30, models={"openai/*": limits})
    client = ModelClient(settings, endpoints={MODEL: Endpoint(api_base=f"{server.url}/v1")})
    await asyncio.gather(*(client.complete(MODEL, MSGS, max_tokens=20) for _ in range(max(4, processes * 2))))
    server.reset(limit)  # workers are up and litellm warm: from here the clock counts
    n = int(limit * seconds)
    cpu0 = cpu_seconds(client)
    calls = await asyncio.gather(*(client.complete(MODEL, MSGS, max_tokens=20, seed=i) for i in range(n)))
    cpu = cpu_seconds(client) - cpu0
    await client.aclose()
    stats = server.stats()
    return sustained(stats["arrivals"]), stats["rejected"], cpu / n * 1000, sum(not c.ok for c in calls)


async def bare_litellm(server: Server, rate: int, seconds: float) -> tuple[float, float]:
    """(sustained rps, CPU ms per call) of bare litellm.acompletion, paced at `rate` by hand."""
    from sociolab.orchestrator.litellm_boot import get_litellm

    litellm = get_litellm()

    async def one(i: int) -> None:
        await asyncio.sleep(i / rate)
        await litellm.acompletion(model=MODEL, messages=MSGS, max_tokens=20, seed=i, max_retries=0, timeout=30,
                                  api_base=f"{server.url}/v1", api_key="sk-bench")

    await asyncio.gather(*(one(i) for i in range(8)))
    server.reset(0)
    n = int(rate * seconds)
    cpu0 = cpu_seconds()
    await asyncio.gather(*(one(i) for i in range(n)))
    cpu = cpu_seconds() - cpu0
    return sustained(server.stats()["arrivals"]), cpu / n * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limits", default="100,200,300,400")
    parser.add_argument("--processes", default="1,2")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--quick", action="store_true", help="limits 100 and 300, 3 s each")
    args = parser.parse_args()
    limits = [100, 300] if args.quick else [int(x) for x in args.limits.split(",")]
    seconds = 3.0 if args.quick else args.seconds
    counts = [int(x) for x in args.processes.split(",")]
    print(f"throughput: {machine()}; provider latency {LATENCY_S * 1000:.0f} ms, {seconds:g} s per cell")
    server = Server()
    try:
        bare_rps, bare_cpu = asyncio.run(bare_litellm(server, 100, seconds))
        rows, cpu_ratios, best = [], [], {}
        for limit in limits:
            for processes in counts:
                rps, rejected, cpu, failed = asyncio.run(through_client(server, limit, processes, seconds))
                share = rps / limit
                best[limit] = max(best.get(limit, 0.0), share)
                cpu_ratios.append((processes, cpu / bare_cpu))
                rows.append([f"{limit}/s", processes, f"{rps:.0f}", f"{share:.0%}", rejected, failed,
                             f"{cpu:.2f}", f"{cpu / bare_cpu:.2f}x"])
    finally:
        server.stop()
    print(f"bare litellm.acompletion paced at 100/s: {bare_rps:.0f} rps sustained, {bare_cpu:.2f} ms CPU per call")
    print(table(["limit", "processes", "rps at the server", "of the limit", "429s", "failed calls",
                 "CPU ms/call", "/ bare litellm"], rows))
    reachable = [limit for limit, share in best.items() if share >= 0.95]
    print(verdict(">= 95% of the limit sustained (best process count per limit)",
                  ", ".join(f"{limit}/s: {share:.0%}" for limit, share in best.items())
                  + (f"; sustained up to {max(reachable)}/s" if reachable else ""), None))
    one_process = [r for p, r in cpu_ratios if p == 1]
    pooled = [r for p, r in cpu_ratios if p > 1]
    print(verdict("client CPU per call <= 1.1x bare litellm (1 process)",
                  ", ".join(f"{r:.2f}x" for r in one_process), all(r <= 1.1 for r in one_process)))
    if pooled:
        print(verdict("CPU per call over worker processes (parent + workers) <= 1.1x bare litellm",
                      ", ".join(f"{r:.2f}x" for r in pooled), all(r <= 1.1 for r in pooled)))


if __name__ == "__main__":
    main()

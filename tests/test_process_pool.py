"""`client.processes`: calls to real providers made by worker processes, limits kept in the parent.

Everything here goes over real HTTP to the loopback servers of tests/wire, through litellm in
real worker processes (orchestrator/process_worker.py): replies must equal the in-process
provider's, errors must arrive as the provider raised them (retried, failed fast, or one line
for the user), a killed worker must cost a retry and never a call, and one rate limit must hold
across all workers.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import time

import pytest

from sociolab.base.errors import UserError
from sociolab.orchestrator.client import ClientSettings, ModelClient, ModelLimits
from sociolab.orchestrator.process_pool import ProcessPoolProvider
from sociolab.orchestrator.provider import Endpoint

from tests.conftest import cli, write_yaml
from tests.wire import Fault, Reply
from tests.wire.families import PLANTED_KEY, family

KEY_ENV = "SOCIOLAB_POOL_TEST_KEY"
QUICK = {"initial_wait_s": 0.01, "max_wait_s": 0.3, "max_attempts": 3, "timeout_s": 20, "cache": False}
FAMILIES = [family(name) for name in ("openai", "anthropic", "gemini", "groq")]
MSGS = [{"role": "system", "content": "You are Agent-A in a group chat."},
        {"role": "user", "content": "@all Plan the app."}]


@pytest.fixture(autouse=True)
def planted_key(monkeypatch):
    monkeypatch.setenv(KEY_ENV, PLANTED_KEY)


def client(servers: dict, processes: int, **settings) -> ModelClient:
    endpoints = {f.model: Endpoint(api_base=srv.url, api_key_env=KEY_ENV) for f, srv in servers.items()}
    return ModelClient(ClientSettings(**{**QUICK, "processes": processes, **settings}), endpoints=endpoints)


def pool(c: ModelClient) -> ProcessPoolProvider:
    provider = c.providers[-1]
    assert isinstance(provider, ProcessPoolProvider)
    return provider


def comparable(call) -> tuple:
    return (call.text, call.reasoning, call.tool_calls, call.prompt_tokens, call.completion_tokens,
            call.cost_usd, call.dropped_params, call.provider, call.attempts, call.error_type)


def test_every_family_answers_through_workers_as_in_process_and_errors_keep_their_kind():
    servers = {f: f.server() for f in FAMILIES}
    try:
        async def main():
            pooled, local = client(servers, 2), client(servers, 1)
            asks = [(f.model, [*MSGS[:1], {"role": "user", "content": f"@all turn {i}"}], i)
                    for f in FAMILIES for i in range(3)]
            together = await asyncio.gather(*(pooled.complete(m, msgs, max_tokens=50, seed=s, temperature=0.3)
                                              for m, msgs, s in asks))
            alone = [await local.complete(m, msgs, max_tokens=50, seed=s, temperature=0.3) for m, msgs, s in asks]
            used = pool(pooled).calls_per_worker()
            faults = {}
            for f, srv in servers.items():
                srv.push(Fault(429, retry_after=0.2), Fault(503))
                faults[f.name, "retried"] = await pooled.complete(f.model, MSGS, max_tokens=50)
            for side, c in (("pooled", pooled), ("local", local)):
                for fault in (Fault(400, message="This model's maximum context length is 128000 tokens.",
                                    code="context_length_exceeded"), Fault(400, message="bad thing")):
                    servers[FAMILIES[0]].push(fault)
                    faults[side, fault.message] = await c.complete(FAMILIES[0].model, MSGS, max_tokens=50)
            await pooled.aclose()
            return together, alone, used, faults

        together, alone, used, faults = asyncio.run(main())
    finally:
        for srv in servers.values():
            srv.stop()
    assert [comparable(c) for c in together] == [comparable(c) for c in alone]
    assert all(c.ok and c.provider == "litellm" for c in together), [c.error for c in together if not c.ok]
    assert min(used) > 0 and sum(used) == len(together)
    for name in ("openai", "anthropic", "gemini", "groq"):
        retried = faults[name, "retried"]
        assert retried.ok and retried.attempts == 3, (name, retried.error_type, retried.error)
    for message in ("This model's maximum context length is 128000 tokens.", "bad thing"):
        failed, same = faults["pooled", message], faults["local", message]
        assert not failed.ok and failed.attempts == 1 and not failed.transient and message in failed.error
        assert (failed.error_type, failed.error) == (same.error_type, same.error)
    assert faults["pooled", "bad thing"].error_type == "BadRequestError"


def test_a_refused_key_and_an_unreachable_host_stop_with_one_line(monkeypatch):
    openai, elsewhere = FAMILIES[0], "openai/gpt-4o-mini"
    with openai.server() as srv:
        async def main():
            monkeypatch.setenv(KEY_ENV, "sk-wrong-planted-key-0042aa")
            c = ModelClient(ClientSettings(**{**QUICK, "processes": 2}), endpoints={
                openai.model: Endpoint(api_base=srv.url, api_key_env=KEY_ENV),
                elsewhere: Endpoint(api_base="http://127.0.0.1:9/v1", api_key_env=KEY_ENV)})
            errors = []
            for model in (openai.model, elsewhere):
                with pytest.raises(UserError) as error:
                    await c.complete(model, MSGS, max_tokens=50)
                errors.append(str(error.value))
            await c.aclose()
            return errors

        refused, unreachable = asyncio.run(main())
    assert "refused the API key" in refused and f"${KEY_ENV}" in refused and "\n" not in refused
    assert "sk-wrong-planted-key-0042aa" not in refused
    assert "cannot reach 127.0.0.1:9 (connection refused)" in unreachable


def test_a_killed_worker_costs_a_retry_never_the_call_and_is_replaced():
    openai = FAMILIES[0]
    with openai.server() as srv:
        async def main():
            c = client({openai: srv}, 2)
            warm = await asyncio.gather(*(c.complete(openai.model, MSGS, max_tokens=20) for _ in range(4)))
            before = pool(c).pids()
            srv.push(Fault.slow(3.0))
            call = asyncio.create_task(c.complete(openai.model, MSGS, max_tokens=20))
            holder = await held_by(pool(c), len(srv.requests) + 1, srv)
            os.kill(holder, signal.SIGKILL)
            done = await call
            after = pool(c).pids()
            await c.aclose()
            return warm, before, holder, done, after

        warm, before, holder, done, after = asyncio.run(main())
    assert all(w.ok for w in warm)
    assert done.ok and done.attempts == 2, (done.error_type, done.error)
    assert holder in before and holder not in after and None not in after


async def held_by(provider: ProcessPoolProvider, arrived: int, srv) -> int:
    """The pid of the worker holding the one call in flight, once the server has it."""
    for _ in range(400):
        busy = [w for w in provider.workers if w is not None and w.pending]
        if len(srv.requests) >= arrived and busy:
            return busy[0].process.pid
        await asyncio.sleep(0.025)
    raise AssertionError("the call never reached the server")


def test_one_rate_limit_holds_across_all_workers():
    """20 requests/s for the group: the workers together keep to it (the pace is the parent's).
    A limit per worker would let 40 through in a second and the 45 calls in about 0.6 s."""
    openai = FAMILIES[0]
    arrivals: list[float] = []

    def respond(view):
        arrivals.append(time.monotonic())
        return Reply(text="ok")

    with openai.server(responder=respond) as srv:
        async def main():
            limits = ModelLimits(requests_per_period=20, period_s=1.0, in_flight=16)
            c = client({openai: srv}, 2, models={"openai/*": limits})
            await c.complete(openai.model, MSGS, max_tokens=5)  # workers up before the clock matters
            arrivals.clear()
            calls = await asyncio.gather(*(c.complete(openai.model, MSGS, max_tokens=5) for _ in range(45)))
            used = pool(c).calls_per_worker()
            await c.aclose()
            return calls, used

        calls, used = asyncio.run(main())
    assert all(c.ok for c in calls) and min(used) > 0
    arrivals.sort()
    most = max(sum(1 for t in arrivals if start <= t < start + 1.0) for start in arrivals)
    assert most <= 25, most  # 20, plus a few whose trip through a busy machine was quicker than the one before
    assert arrivals[-1] - arrivals[0] >= (45 - 25) / 20, arrivals[-1] - arrivals[0]


def test_a_client_reused_under_a_new_event_loop_gets_new_workers_and_the_old_exit():
    openai = FAMILIES[0]
    with openai.server() as srv:
        c = client({openai: srv}, 2)

        async def once():
            call = await c.complete(openai.model, MSGS, max_tokens=5)
            return call, [w.process for w in pool(c).workers if w is not None]

        first, old = asyncio.run(once())
        second, new = asyncio.run(once())
        asyncio.run(c.aclose())
    assert first.ok and second.ok
    assert {p.pid for p in old}.isdisjoint({p.pid for p in new})
    for process in old:
        assert wait_gone(process.pid)


def wait_gone(pid: int) -> bool:
    for _ in range(200):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        try:
            os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            pass
        time.sleep(0.025)
    return False


def test_run_file_with_worker_processes_through_the_cli(tmp_path):
    """The real CLI in a subprocess: `client: processes: 2` runs a discussion over HTTP; the
    stored conversations equal the ones run in one process."""
    openai = FAMILIES[0]

    def respond(view):  # a reply that depends on who asks, not on when (what peers said so far)
        return Reply(text=f"noted, says the one told: {view.system[:60]}")

    with openai.server(responder=respond) as srv:
        tables = {}
        for processes in (1, 2):
            path = write_yaml(tmp_path, f"""
                name: pooled
                seed: 4
                repeats: 2
                agents:
                  personas:
                    - {{key: a, model: {openai.model}, api_base: '{srv.url}', api_key_env: {KEY_ENV}}}
                    - {{key: b, model: {openai.model}, api_base: '{srv.url}', api_key_env: {KEY_ENV}}}
                params: {{seed_message: "@all Plan a food delivery app.", rounds: 2, stagger_ms: 10, max_tokens: 60}}
                client: {json.dumps({**QUICK, "processes": processes})}
                """, name=f"pooled{processes}.yaml")
            db = tmp_path / f"p{processes}.duckdb"
            result = cli("run", str(path), "--db", str(db), "-q")
            assert result.returncode == 0, result.stderr
            # turns of one round finish in whatever order the HTTP replies arrive, and a turn's context
            # is what its peers had said when it left: compare each speaker's replies
            out = cli("sql", "SELECT run_id, round, sender, content FROM messages ORDER BY run_id, round, sender",
                      "--db", str(db), "--format", "json")
            assert out.returncode == 0, out.stderr
            tables[processes] = json.loads(out.stdout)
    assert tables[1] == tables[2] and len(tables[2]) >= 8

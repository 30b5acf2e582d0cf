"""Execute a plan: resume what is unfinished, run runs concurrently, report progress.

A rerun skips completed runs. An unfinished run whose scenario kind is resumable (the
`discussion` kind) is continued from its last committed round when it is still `running` (the
process was killed, or `--max-cost` ran out), its config hash is the plan's and at least one
round is committed: every round is committed atomically with the run's rounds_done, so its rows
are exactly those rounds, and the scenario rebuilds its state from them (on the sim the result
equals an uninterrupted run's). Every other unfinished run (`failed`, `incomplete`, changed
config, a kind that does not resume, nothing committed yet) restarts from scratch: its partial
rows are deleted up front, in one transaction, before any run starts. Either way the final
tables hold each message exactly once, whatever was killed when. A run that raises an
unexpected error is redone from scratch once more (BUG_ATTEMPTS in all), then stored as `failed` and reported; the other
runs go on, and the command exits 1. A rerun redoes failed runs (the bug may be fixed). A run that a provider
failure cut short is stored as `incomplete` and redone likewise, unless its scenario declares
provider errors part of its protocol. A spent `--max-cost` budget leaves the runs in flight
unfinished, so a rerun with a higher budget completes exactly what an unbudgeted run would.

An unexpected exception in a run is logged with its traceback and recorded as an
`internal_error` event of that run (error, type, attempts, traceback), written on its own so that
a broken sink cannot lose it; a rerun deletes it with the run's other rows and redoes the run.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
import traceback
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Callable, Protocol

from sociolab.orchestrator.client import Budget, ModelClient, RetryListener, RunClient, default_providers, error_text
from sociolab.orchestrator.clock import VirtualClock, WallClock
from sociolab.config import Plan, RunSpec
from sociolab.base.errors import BudgetExhausted, UserError
from sociolab.orchestrator.redact import redact
from sociolab.orchestrator.sink import EventSink, Message
from sociolab.orchestrator.rows import AgentRow, EventRow, RunRow
from sociolab.orchestrator.store import Batch, Store

log = logging.getLogger(__name__)

BUG_ATTEMPTS = 2  # a run that raises is tried this many times in one invocation, then marked failed
VIRTUAL_BATCH_SECONDS = 0.25  # a virtual-time (sim) run writes its rounds at most this often (orchestrator/sink.py)


class Progress(Protocol):
    def start(self, plan: Plan, todo: list[RunSpec], skipped: int) -> None: ...
    def messages(self, spec: RunSpec, committed: list[Message]) -> None: ...
    def run_done(self, spec: RunSpec, status: str) -> None: ...
    def stop(self) -> None: ...


@dataclass
class RunReport:
    planned: int = 0
    skipped: int = 0
    completed: int = 0
    stopped: int = 0
    incomplete: list[str] = field(default_factory=list)
    unfinished_by_budget: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    internal_errors: list[str] = field(default_factory=list)  # failed runs whose traceback is logged
    spent_usd: float | None = None  # what a --max-cost budget counted; None without a budget

    @property
    def ok(self) -> bool:
        return not (self.failed or self.incomplete or self.unfinished_by_budget)


def utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def client_for(plan: Plan, *, max_cost: float | None = None, on_retry: RetryListener | None = None) -> ModelClient:
    """The client a plan's runs share: its endpoints, prices, sim settings, limits and budget."""
    settings = plan.file.client
    client = ModelClient(settings, endpoints=plan.endpoints(), prices=plan.file.prices,
                         providers=default_providers(settings, plan.file.sim.settings()),
                         budget=Budget(max_cost) if max_cost is not None else None, on_retry=on_retry)
    client.check_ready(plan.models())
    if max_cost is not None:
        unpriced = client.unpriced(plan.models())
        if unpriced:
            raise UserError(f"--max-cost needs a price for {', '.join(unpriced)}: add them under prices: "
                            "(USD per million tokens) in the scenario file", file=plan.path)
    return client


async def execute(plan: Plan, store: Store, progress: Progress | None = None, *,
                  fresh: bool = False, client: ModelClient | None = None) -> RunReport:
    """Run every unfinished run of the plan; returns what happened."""
    client = client or client_for(plan)
    todo, skipped, resume = await store.run_blocking(runs_to_do, store, plan, fresh)
    models = {p.model for spec in todo for p in spec.personas if client.uses_cache(p.model)}
    client.cache.preload(await store.run_blocking(store.load_cache, sorted(models)))
    report = RunReport(planned=len(plan.runs), skipped=skipped)
    log.info("%s: %d runs planned, %d to do, %d already complete (concurrency %d)",
             plan.path, len(plan.runs), len(todo), skipped, plan.file.concurrency)
    if progress:
        progress.start(plan, todo, skipped)
    limit = asyncio.Semaphore(plan.file.concurrency)
    not_started = len(todo)

    async def one(spec: RunSpec) -> None:
        nonlocal not_started
        async with RunSlot(limit) as slot:
            not_started -= 1
            store.hold_writes(not_started > 0)  # a sim run's last write waits only for runs to come
            status = await play(spec, store, client, progress, report, resume=spec.run_id in resume,
                                played=slot.release)
        if progress:
            progress.run_done(spec, status)

    try:
        await asyncio.gather(*(one(spec) for spec in todo))
    finally:
        store.hold_writes(False)
        if progress:
            progress.stop()
        await client.aclose()  # worker processes, if any, exit with the loop that owns their pipes
    return report


async def play(spec: RunSpec, store: Store, client: ModelClient, progress: Progress | None, report: RunReport, *,
               resume: bool = False, played: Callable[[], None] | None = None) -> str:
    """One run, start to end, as every executor plays it: run it (with the bug retries), count
    its status in `report`, and hand a finished run to the store (a sharded store publishes it
    here). Returns the status; `unfinished` (a spent budget) is never handed over."""
    log.info("run %s started", spec.run_id)
    t0 = time.perf_counter()
    status = await run_with_bug_retries(spec, store, client, progress, report, resume=resume, played=played)
    log.info("run %s %s after %.2f s", spec.run_id, status, time.perf_counter() - t0)
    if status == "completed":
        report.completed += 1
    elif status == "stopped":
        report.stopped += 1
    elif status == "incomplete":
        report.incomplete.append(spec.run_id)
    elif status == "failed" and not any(run_id == spec.run_id for run_id, _ in report.failed):
        report.failed.append((spec.run_id, "every agent failed its first call (see messages.error); "
                                           "fix the setup and rerun"))
    if status != "unfinished":
        await store.finish_run(spec.run_id)
    return status


class RunSlot:
    """One of the `concurrency` slots, given back when the run has played (`release`), before
    its last rows are written: the next run plays meanwhile (a sim run's last write may even
    wait for it, Store.write `within`). A redo after a failed last write runs outside the slot."""

    def __init__(self, limit: asyncio.Semaphore):
        self.limit = limit
        self.held = False

    async def __aenter__(self) -> "RunSlot":
        await self.limit.acquire()
        self.held = True
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.release()

    def release(self) -> None:
        if self.held:
            self.held = False
            self.limit.release()


async def run_with_bug_retries(spec: RunSpec, store: Store, client: ModelClient, progress: Progress | None,
                               report: RunReport, *, resume: bool = False,
                               played: Callable[[], None] | None = None) -> str:
    """Run one run; a run that raises (a bug, or something unforeseen) is redone from scratch,
    at most BUG_ATTEMPTS times in all, then marked failed with its traceback logged and stored,
    while the other runs go on. A deterministic bug would otherwise fail every rerun forever
    without a record; a rerun after a fix redoes failed runs."""
    for attempt in range(1, BUG_ATTEMPTS + 1):
        try:
            return await run_one(spec, store, client, progress, resume=resume and attempt == 1, played=played)
        except UserError:
            raise  # the user must fix something (e.g. a refused API key): stop everything
        except BudgetExhausted:
            report.unfinished_by_budget.append(spec.run_id)
            return "unfinished"
        except Exception as exc:  # a bug or an unforeseen failure: retried, then reported
            error = one_line(exc)
            if attempt < BUG_ATTEMPTS:
                log.warning("run %s raised %s; redoing it from scratch (attempt %d of %d)", spec.run_id, error,
                            attempt + 1, BUG_ATTEMPTS, exc_info=exc, extra={"screen": False})
                await store.run_blocking(store.delete_runs, [spec.run_id])
                continue
            # the CLI reports it in one line of its own; the traceback goes to the log file
            log.exception("run %s failed: %s", spec.run_id, error, extra={"screen": False})
            await record_internal_error(store, spec.run_id, exc, error, attempts=attempt)
            report.failed.append((spec.run_id, error))
            report.internal_errors.append(spec.run_id)
    return "failed"


def runs_to_do(store: Store, plan: Plan, fresh: bool) -> tuple[list[RunSpec], int, set[str]]:
    """Completed runs are skipped, unless their config changed (then the user must choose).

    Returns the runs to do, how many were skipped, and which of those to do are resumed from
    their last committed round (see the module docstring). Rows of the other runs to redo
    (unfinished, or all with `fresh`) are deleted here, in one transaction, so they start from
    nothing.
    """
    from sociolab.scenarios.registry import scenario_class

    states = {run.run_id: run for run in store.runs(spec.run_id for spec in plan.runs)}
    todo, skipped, resume = [], 0, set()
    for spec in plan.runs:
        run = states.get(spec.run_id)
        status, config_hash = (run.status, run.config_hash) if run else (None, None)
        if status in ("completed", "stopped") and not fresh:
            if config_hash != spec.config_hash():
                raise UserError(f"run {spec.run_id} is already in {store.path} with a different "
                                "configuration; rerun with --fresh to replace it, or use another --db",
                                file=plan.path)
            skipped += 1
            continue
        todo.append(spec)
        if (run is not None and not fresh and status == "running" and config_hash == spec.config_hash()
                and run.kind == spec.kind and (run.rounds_done or 0) > 0 and scenario_class(spec.kind).resumable
                and store.can_resume):
            resume.add(spec.run_id)
    store.check_redo(spec.run_id for spec in todo)
    stale = [spec.run_id for spec in todo if spec.run_id in states and spec.run_id not in resume]
    new = [spec.run_id for spec in todo if spec.run_id not in states]
    if new:  # a run that raised before its row was written left only its internal_error event
        stale += store.runs_with_events(new)
    if resume:
        log.info("resuming %d unfinished run(s) from their last committed round", len(resume))
    if stale:
        log.info("redoing %d unfinished run(s): their rows are deleted first", len(stale))
        store.delete_runs(stale)
    return todo, skipped, resume


def one_line(exc: BaseException) -> str:
    """`KeyError: 'x'`: the exception's type and the first line of its message, keys masked."""
    name = type(exc).__name__
    return f"{name}: {error_text(exc)}" if str(exc).strip() else name


async def record_internal_error(store: Store, run_id: str, exc: BaseException, error: str, *,
                                attempts: int = 1) -> None:
    """An `internal_error` event for a run that raised: the one-line error, the exception's type,
    its traceback (keys masked) and how many attempts raised; the run's row (if it was written)
    is marked failed. Written in a batch of its own, not through the run's sink, which may be
    what broke; a failure to write it is logged, never raised."""
    detail = {"error": error, "type": type(exc).__name__, "attempts": attempts,
              "traceback": redact("".join(traceback.format_exception(exc)))}
    batch = Batch()
    batch.add(EventRow(run_id=run_id, kind="internal_error", detail=detail))
    batch.update("runs", {"run_id": run_id}, status="failed", stop_reason=f"internal error: {error}",
                 finished_at=utcnow())
    try:
        await store.write(batch)
    except Exception:
        log.exception("run %s: could not store its internal_error event in %s", run_id, store.path)


async def run_one(spec: RunSpec, store: Store, client: ModelClient, progress: Progress | None, *,
                  resume: bool = False, played: Callable[[], None] | None = None) -> str:
    """Play one run and store its status; with `resume`, continue it from what it committed
    (its run and agent rows are kept) instead of writing it afresh. `played` is called once
    the run's last rows are committed to its sink, before they are written."""
    from sociolab.scenarios.base import RunContext, give_characters
    from sociolab.scenarios.registry import scenario_class

    scenario = scenario_class(spec.kind)(spec.params)
    rng = random.Random(spec.seed)
    agents = scenario.place_agents(scenario.arrange(list(spec.personas), rng), spec.roster)
    if not scenario.places_characters:
        agents = give_characters(agents)
    so_far = await store.run_blocking(store.run_so_far, spec.run_id) if resume else None
    start = Batch()
    start.add(RunRow(run_id=spec.run_id, source="sociolab", suite=spec.suite, series=spec.series,
                     repeat=spec.repeat, seed=spec.seed, kind=spec.kind, config=spec.config_json(),
                     config_hash=spec.config_hash(), status="running", rounds_planned=scenario.rounds_planned(),
                     started_at=utcnow(), factors=scenario.factors()))
    for a in agents:
        start.add(AgentRow(run_id=spec.run_id, agent_id=a.agent_id, position=a.position, name=a.name,
                           persona=a.persona.key, model=a.model, model_label=a.persona.label,
                           system_prompt=a.system_prompt, status="active",
                           provider="scripted" if a.scripted else client.provider_for(a.model).name))
    virtual = all(a.scripted or client.is_in_process(a.model) for a in agents)
    sink = EventSink(store, spec.run_id, client.cache,
                     on_commit=(lambda msgs: progress.messages(spec, msgs)) if progress else None,
                     batch_seconds=VIRTUAL_BATCH_SECONDS if virtual else 0.0)
    if so_far is None and virtual:
        sink.carry(start)  # written with its first rounds: a short sim run is one transaction
    elif so_far is None:
        await store.write(start)
    if so_far is not None:
        sink.next_seq = so_far.next_seq
    run_client = RunClient(client)
    ctx = RunContext(run_id=spec.run_id, seed=spec.seed, agents=agents, client=run_client, sink=sink,
                     clock=VirtualClock() if virtual else WallClock(), rng=rng,
                     resumed=so_far)
    try:
        outcome = await scenario.run(ctx)
    except Exception:
        await sink.write_carried()
        raise
    status, reason = outcome.status, outcome.stop_reason
    if run_client.provider_failures and not scenario.provider_errors_are_results() and status != "failed":
        status = "incomplete"
        reason = (f"{run_client.provider_failures} call(s) failed at the provider after retries; "
                  "a rerun redoes this run")
        sink.event("run_incomplete", provider_failures=run_client.provider_failures)
    await sink.commit_round(outcome.rounds_done, status=status, stop_reason=reason, finished_at=utcnow())
    if played is not None:
        played()
    await sink.flush()
    return status

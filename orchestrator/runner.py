"""Execute a plan: resume what is unfinished, run runs concurrently, report progress.

A rerun skips completed runs and restarts unfinished ones from scratch (their partial rows are
deleted up front, in one transaction, before any run starts), so the final tables hold each
message exactly once, whatever was killed when. A run that fails with an unexpected error is
reported and left unfinished (a rerun redoes it); the other runs go on. A run that a provider
failure cut short is stored as `incomplete` and redone likewise, unless its scenario declares
provider errors part of its protocol. A spent `--max-cost` budget leaves the runs in flight
unfinished, so a rerun with a higher budget completes exactly what an unbudgeted run would.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Protocol

from .client import Budget, ModelClient, RetryListener, RunClient, default_providers
from .clock import VirtualClock, WallClock
from .config import Plan, RunSpec
from .errors import BudgetExhausted, UserError
from .sink import EventSink, Message
from .store import Batch, Store


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
    todo, skipped = await store.run_blocking(runs_to_do, store, plan, fresh)
    models = {p.model for spec in todo for p in spec.personas if client.uses_cache(p.model)}
    client.cache.preload(await store.run_blocking(store.load_cache, sorted(models)))
    report = RunReport(planned=len(plan.runs), skipped=skipped)
    if progress:
        progress.start(plan, todo, skipped)
    limit = asyncio.Semaphore(plan.file.concurrency)

    async def one(spec: RunSpec) -> None:
        async with limit:
            try:
                status = await run_one(spec, store, client, progress)
            except UserError:
                raise  # the user must fix something (e.g. a refused API key): stop everything
            except BudgetExhausted:
                report.unfinished_by_budget.append(spec.run_id)
                status = "unfinished"
            except Exception as exc:  # a bug or an unforeseen failure: report it, keep the suite going
                report.failed.append((spec.run_id, f"{type(exc).__name__}: {exc}"))
                status = "failed"
        if status == "completed":
            report.completed += 1
        elif status == "stopped":
            report.stopped += 1
        elif status == "incomplete":
            report.incomplete.append(spec.run_id)
        elif status == "failed" and not any(run_id == spec.run_id for run_id, _ in report.failed):
            report.failed.append((spec.run_id, "every agent failed its first call (see messages.error); "
                                               "fix the setup and rerun"))
        if progress:
            progress.run_done(spec, status)

    try:
        await asyncio.gather(*(one(spec) for spec in todo))
    finally:
        if progress:
            progress.stop()
    return report


def runs_to_do(store: Store, plan: Plan, fresh: bool) -> tuple[list[RunSpec], int]:
    """Completed runs are skipped, unless their config changed (then the user must choose).

    Rows of the runs to redo (unfinished, or all with `fresh`) are deleted here, in one
    transaction, so every run then starts from nothing.
    """
    states = store.run_states(spec.run_id for spec in plan.runs)
    todo, skipped = [], 0
    for spec in plan.runs:
        status, config_hash = states.get(spec.run_id, (None, None))
        if status in ("completed", "stopped") and not fresh:
            if config_hash != spec.config_hash():
                raise UserError(f"run {spec.run_id} is already in {store.path} with a different "
                                "configuration; rerun with --fresh to replace it, or use another --db",
                                file=plan.path)
            skipped += 1
        else:
            todo.append(spec)
    stale = [spec.run_id for spec in todo if spec.run_id in states]
    if stale:
        store.delete_runs(stale)
    return todo, skipped


async def run_one(spec: RunSpec, store: Store, client: ModelClient, progress: Progress | None) -> str:
    from scenarios.base import RunContext
    from scenarios.registry import scenario_class

    scenario = scenario_class(spec.kind)(spec.params)
    agents = scenario.place_agents(list(spec.personas), spec.roster)
    start = Batch()
    start.add("runs", (spec.run_id, "sociolab", spec.suite, spec.series, spec.repeat, spec.seed, spec.kind,
                       spec.config_json(), spec.config_hash(), "running", None, scenario.rounds_planned(), 0,
                       utcnow(), None, scenario.factors()))
    for a in agents:
        start.add("agents", (spec.run_id, a.agent_id, a.position, a.name, a.persona.key, a.model,
                             a.persona.label, a.system_prompt, "active", None,
                             "scripted" if a.scripted else client.provider_for(a.model).name))
    await store.write(start)
    virtual = all(a.scripted or client.is_in_process(a.model) for a in agents)
    sink = EventSink(store, spec.run_id, client.cache,
                     on_commit=(lambda msgs: progress.messages(spec, msgs)) if progress else None)
    run_client = RunClient(client)
    ctx = RunContext(run_id=spec.run_id, seed=spec.seed, agents=agents, client=run_client, sink=sink,
                     clock=VirtualClock() if virtual else WallClock(), rng=random.Random(spec.seed))
    outcome = await scenario.run(ctx)
    status, reason = outcome.status, outcome.stop_reason
    if run_client.provider_failures and not scenario.provider_errors_are_results() and status != "failed":
        status = "incomplete"
        reason = (f"{run_client.provider_failures} call(s) failed at the provider after retries; "
                  "a rerun redoes this run")
        sink.event("run_incomplete", provider_failures=run_client.provider_failures)
    await sink.commit_round(outcome.rounds_done, status=status, stop_reason=reason, finished_at=utcnow())
    await sink.flush()
    return status

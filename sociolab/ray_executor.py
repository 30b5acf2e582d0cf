"""`sociolab run FILE --executor ray`: a plan's runs played by Ray actors across a cluster.

The parent (this process) decides what is to do exactly as the local executor does (the store's
file plus its shards, `runs_to_do`), then hands the runs to worker actors, one per CPU of the
cluster unless told. A worker plays each run with the local executor's own code (`runner.play`)
into a `ShardedStore`: a finished run becomes a Parquet shard beside the DuckDB file, published
atomically, and the file is never written by anyone but `sociolab merge`. So `DB` must be on a
file system every node shares.

What must hold across the cluster lives in two small actors the parent owns:
- `SharedLimiter`: every model group's in-flight cap and request pace (the same `LocalGroup` a
  single process uses), entered by workers over Ray for each call: the provider sees one client.
  A worker that dies holding slots has them released by the parent.
- `Hub`: the budget's spending (`--max-cost`) and the progress events (messages, tokens, cost,
  retry waits), which the parent drains into the same progress display as a local run.

A lost worker (its process or node killed) loses only the runs it had in flight, which were not
published: the parent plays them again on a worker that is still alive, or, when none is, reports
them and a rerun does them. Ctrl-C stops the actors the same way. Either way the store is in a
state the next `sociolab run` resumes from, as after a local kill.
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import re
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, AsyncIterator, Callable

from sociolab.base.errors import UserError
from sociolab.config import Plan, RunSpec
from sociolab.orchestrator.client import Budget, Group, LocalGroup, ModelLimits, local_group
from sociolab.orchestrator.sink import Message
from sociolab.runner import Progress, RunReport, client_for, runs_to_do

log = logging.getLogger(__name__)

POLL_S = 0.2  # how often the parent drains the hub's progress events
WORKER_START_S = 120.0  # a worker not up by then (no room on the cluster, a failing node) is dropped
# What a worker's environment takes from the parent's: the variables that name keys, hosts and
# offline switches. Ray carries them to every node (runtime_env), so a key set where you type
# `sociolab run` reaches the workers; docs/scale.md says where else it is visible.
FORWARDED_ENV = re.compile(r"^(LITELLM_|SOCIOLAB_|RAY_USAGE_STATS_)|_API_KEY$|_API_BASE$|_BASE_URL$")


def import_ray() -> Any:
    """Ray itself, or the one line that says how to get it."""
    try:
        import ray
    except ImportError:
        raise UserError("--executor ray needs Ray: pip install 'sociolab[ray]'") from None
    return ray


# ---- what the cluster shares -------------------------------------------------------------------
class SharedLimiter:
    """One `LocalGroup` per model group for the whole cluster (a Ray actor): workers enter a
    group's in-flight cap and wait for its pace here, so the cap and the rate hold across them."""

    def __init__(self) -> None:
        self.groups: dict[str, LocalGroup] = {}
        self.held: dict[tuple[str, str], int] = {}  # (worker, group) -> slots it holds

    def _group(self, key: str, limits: ModelLimits) -> LocalGroup:
        group = self.groups.get(key)
        if group is None:
            group = self.groups[key] = local_group(key, limits)
        return group

    async def admit(self, worker: str, key: str, limits: ModelLimits) -> None:
        """A slot of the group's in-flight cap, then the group's pace: one round trip for both."""
        group = self._group(key, limits)
        await group.semaphore.acquire()
        self.held[(worker, key)] = self.held.get((worker, key), 0) + 1
        try:
            await group.pace()
        except BaseException:
            await self.leave(worker, key)
            raise

    async def leave(self, worker: str, key: str) -> None:
        if self.held.get((worker, key), 0) > 0:
            self.held[(worker, key)] -= 1
            self.groups[key].semaphore.release()

    async def pace(self, key: str, limits: ModelLimits) -> None:
        await self._group(key, limits).pace()

    async def release_worker(self, worker: str) -> int:
        """Give back every slot a dead worker held; returns how many."""
        freed = 0
        for (who, key), n in list(self.held.items()):
            if who == worker:
                for _ in range(n):
                    self.groups[key].semaphore.release()
                freed += n
                del self.held[(who, key)]
        return freed



class Hub:
    """The cluster's budget and its progress events (a Ray actor)."""

    def __init__(self, max_usd: float | None):
        self.max_usd = max_usd
        self.spent_usd = 0.0
        self.events: list[tuple] = []

    async def spend(self, cost: float) -> float:
        self.spent_usd += cost
        return self.spent_usd

    async def spent(self) -> float:
        return self.spent_usd

    async def post(self, events: list[tuple]) -> None:
        self.events.extend(events)

    async def drain(self) -> list[tuple]:
        out, self.events = self.events, []
        return out


@dataclass
class ClusterGroup:
    """A worker's view of one model group of the `SharedLimiter`: a call waits one round trip
    to be admitted (slot and pace) and tells the limiter when it is done without waiting; a
    retry waits one more for its pace. The price of one limit for many machines."""

    worker: str
    key: str
    limits: ModelLimits
    limiter: Any

    @asynccontextmanager
    async def admitted(self) -> AsyncIterator[None]:
        await self.limiter.admit.remote(self.worker, self.key, self.limits)
        try:
            yield
        finally:
            self.limiter.leave.remote(self.worker, self.key)  # submitted in order; no need to wait

    async def pace(self) -> None:
        await self.limiter.pace.remote(self.key, self.limits)


class ClusterBudget(Budget):
    """`--max-cost` for the cluster: before a priced call starts, the worker asks the hub what
    the cluster has spent (one round trip); after it, it adds its own cost. So no priced call
    starts once the cluster has spent the budget, and the overshoot is the calls in flight, as in
    one process."""

    def __init__(self, max_usd: float, hub: Any):
        super().__init__(max_usd)
        self.hub = hub

    async def admit(self, free: bool) -> None:
        if not free:
            self.spent_usd = max(self.spent_usd, await self.hub.spent.remote())
        self.check(free)

    def spend(self, cost: float | None) -> None:
        if cost:
            self.spent_usd += cost
            self.hub.spend.remote(cost)  # submitted in order, before this worker's next question


class ForwardingProgress:
    """A worker's progress: each commit's call tallies and each retry wait, posted to the hub."""

    def __init__(self, hub: Any):
        self.hub = hub

    def start(self, plan: Plan, todo: list[RunSpec], skipped: int) -> None:
        """The parent shows the plan."""

    def messages(self, spec: RunSpec, committed: list[Message]) -> None:
        calls = [(m.is_error, m.call.model, m.call.ok, m.call.attempts, m.call.prompt_tokens,
                  m.call.completion_tokens, m.call.cost_usd) for m in committed if m.call is not None]
        if calls:
            self.hub.post.remote([("messages", spec.run_id, calls)])

    def retry(self, model: str, source: str, seconds: float, error: BaseException) -> None:
        from sociolab.orchestrator.retry import error_name

        status = getattr(error, "status_code", None)
        self.hub.post.remote([("retry", model, source, seconds, status, error_name(error))])

    def run_done(self, spec: RunSpec, status: str) -> None:
        """The parent counts a run when its worker returns it."""

    def stop(self) -> None:
        """Nothing held."""


class RunWorker:
    """Plays runs into Parquet shards (a Ray actor; its runs share one client, as a process's do)."""

    def __init__(self, name: str, plan: Plan, db: str, limiter: Any, hub: Any, max_cost: float | None):
        from sociolab.orchestrator.logs import setup_logging
        from sociolab.orchestrator.sharded import ShardedStore

        setup_logging(False, worker_log(Path(db), name))  # tracebacks on file, as the parent's
        self.name = name
        self.store = ShardedStore(db)
        # One worker per CPU: its DuckDB takes that CPU only, or N workers' writers fight over N cores.
        self.store.con.execute("SET threads = 1")
        self.progress = ForwardingProgress(hub)
        self.client = client_for(plan, on_retry=self.progress.retry)
        self.client.make_group = self.group_maker(plan, name, limiter)
        if max_cost is not None:
            self.client.budget = ClusterBudget(max_cost, hub)
        models = {p.model for spec in plan.runs for p in spec.personas if self.client.uses_cache(p.model)}
        self.client.cache.preload(self.store.load_cache(sorted(models)))

    def group_maker(self, plan: Plan, name: str, limiter: Any) -> Callable[[str, ModelLimits], Group]:
        """Groups of models a provider serves share the cluster's limiter; groups of models
        answered in this process (sim stand-ins: no provider, no bill) keep a limit per worker
        and spare every call its round trip to the limiter."""
        shared = {self.client.limits_for(model)[0] for model in plan.models()
                  if not self.client.is_in_process(model)}

        def make(key: str, limits: ModelLimits) -> Group:
            return ClusterGroup(name, key, limits, limiter) if key in shared else local_group(key, limits)

        return make

    async def play(self, spec: RunSpec) -> tuple[str, RunReport]:
        """One run, start to shard: its status, and a report of that run alone."""
        from sociolab.runner import play

        report = RunReport(planned=1)
        return await play(spec, self.store, self.client, self.progress, report), report

    async def pid(self) -> int:
        return os.getpid()


def worker_log(db: Path, name: str) -> Path:
    """A worker's log file: beside the store, as the parent's `DB.log`, one per worker."""
    return db.with_name(f"{db.stem}.{name}.log")


# ---- the parent --------------------------------------------------------------------------------
@dataclass
class Worker:
    name: str
    actor: Any
    in_flight: int = 0
    alive: bool = True


@dataclass
class Cluster:
    """The actors of one invocation."""

    ray: Any
    limiter: Any
    hub: Any
    workers: list[Worker] = field(default_factory=list)

    def live(self) -> list[Worker]:
        return [w for w in self.workers if w.alive]


def connect(ray: Any, address: str | None, workers: int | None) -> None:
    """Join the cluster at `address`, or start one on this machine (as many CPUs as workers)."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")  # never call home
    env = {k: v for k, v in os.environ.items() if FORWARDED_ENV.search(k)}
    options: dict[str, Any] = {"runtime_env": {"env_vars": env}, "log_to_driver": False,
                               "configure_logging": False, "ignore_reinit_error": True}
    if address is None:
        options.update(num_cpus=workers or os.cpu_count() or 1, include_dashboard=False,
                       object_store_memory=100 * 1024 * 1024)
    try:
        ray.init(address=address, **options)
    except ConnectionError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc}); start one with "
                        "`ray start --head` or leave --address out to start one here") from None


def worker_count(ray: Any, asked: int | None, runs: int) -> int:
    """As many workers as asked (default: one per CPU the cluster has free), never more than
    the free CPUs (a worker that cannot be placed would hold its runs forever) or the runs."""
    free = int(ray.available_resources().get("CPU", 0))
    if free < 1:
        raise UserError("the Ray cluster has no free CPU for a worker; wait for its other jobs or add a node")
    if asked is not None and asked > free:
        log.warning("--workers %d: the Ray cluster has %d CPU(s) free; starting %d worker(s)", asked, free, free)
    return max(1, min(asked or free, free, runs))


async def started(cluster: Cluster, timeout: float = WORKER_START_S) -> None:
    """Wait until each worker is up (its process started, sociolab imported); one that is not
    within `timeout` is dropped, and none up is one line for the user."""
    async def up(worker: Worker) -> None:
        try:
            await asyncio.wait_for(worker.actor.pid.remote(), timeout)
        except (asyncio.TimeoutError, cluster.ray.exceptions.RayActorError) as exc:
            worker.alive = False
            cluster.ray.kill(worker.actor)
            log.warning("Ray worker %s did not start (%s); going on without it", worker.name, type(exc).__name__)

    await asyncio.gather(*(up(w) for w in cluster.workers))
    if not cluster.live():
        raise UserError(f"no Ray worker started within {timeout:.0f} s; see the Ray logs of the cluster")


def check_reachable(address: str, timeout: float = 5.0) -> None:
    """A cluster address that nothing answers is one line now; Ray itself would retry for
    minutes before saying so."""
    import socket

    host, _, port = address.rpartition(":")
    host = host.removeprefix("ray://") or "127.0.0.1"
    if not port.isdigit():
        raise UserError(f"--address {address}: give HOST:PORT (what `ray start --head` prints) or auto")
    try:
        with socket.create_connection((host.strip("[]"), int(port)), timeout=timeout):
            pass
    except OSError as exc:
        raise UserError(f"--address {address}: no Ray cluster answers there ({exc.strerror or exc}); start one "
                        "with `ray start --head`, or leave --address out to start one here") from None


def start_cluster(ray: Any, plan: Plan, db: Path, workers: int | None, max_cost: float | None) -> Cluster:
    count = worker_count(ray, workers, len(plan.runs))
    per_worker = max(1, math.ceil(plan.file.concurrency / count))
    # The shared actors live on this node: a worker node lost takes only its runs with it.
    from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

    here = NodeAffinitySchedulingStrategy(node_id=ray.get_runtime_context().get_node_id(), soft=False)
    limiter = ray.remote(num_cpus=0, scheduling_strategy=here)(SharedLimiter).remote()
    hub = ray.remote(num_cpus=0, scheduling_strategy=here)(Hub).remote(max_cost)
    worker_class = ray.remote(num_cpus=1, max_concurrency=per_worker)(RunWorker)
    cluster = Cluster(ray, limiter, hub)
    for i in range(count):
        name = f"worker-{i}"
        actor = worker_class.remote(name, plan, str(db.resolve()), limiter, hub, max_cost)
        cluster.workers.append(Worker(name, actor))
    return cluster


async def execute_on_ray(plan: Plan, db: str | Path, progress: Progress | None = None, *, fresh: bool = False,
                         address: str | None = None, workers: int | None = None,
                         max_cost: float | None = None) -> RunReport:
    """Run every unfinished run of the plan on a Ray cluster, into shards beside `db`."""
    from sociolab.orchestrator.sharded import ShardedStore

    ray = import_ray()
    if address is not None and address != "auto":
        check_reachable(address)
    db = Path(db)
    client_for(plan, max_cost=max_cost)  # keys, hosts and prices are checked here, before any worker starts
    with ShardedStore(db) as store:
        todo, skipped, _ = runs_to_do(store, plan, fresh)
    report = RunReport(planned=len(plan.runs), skipped=skipped)
    if progress:
        progress.start(plan, todo, skipped)
    if not todo:
        if progress:
            progress.stop()
        return report
    connect(ray, address, workers)
    cluster = start_cluster(ray, plan, db, workers, max_cost)
    try:
        await started(cluster)
        await Dispatcher(cluster, plan, progress, report).run(todo)
        report.spent_usd = await cluster.hub.spent.remote() if max_cost is not None else None
    finally:
        if progress:
            progress.stop()
        for worker in cluster.workers:
            ray.kill(worker.actor)
        ray.shutdown()
    return report


class Dispatcher:
    """Hands runs to the least busy live worker, `concurrency` in flight in all; drains the
    hub's progress meanwhile; replays the runs a dead worker lost on one still alive."""

    def __init__(self, cluster: Cluster, plan: Plan, progress: Progress | None, report: RunReport):
        self.cluster, self.plan, self.progress, self.report = cluster, plan, progress, report
        self.specs = {spec.run_id: spec for spec in plan.runs}
        self.room = asyncio.Semaphore(plan.file.concurrency)

    async def run(self, todo: list[RunSpec]) -> None:
        poller = asyncio.create_task(self.poll())
        try:
            await asyncio.gather(*(self.one(spec) for spec in todo))
        finally:
            poller.cancel()
            await self.forward(await self.cluster.hub.drain.remote())

    async def one(self, spec: RunSpec) -> None:
        async with self.room:
            while True:
                worker = self.least_busy()
                if worker is None:
                    self.report.failed.append((spec.run_id, "every Ray worker was lost; rerun to finish it"))
                    status = "lost"
                    break
                worker.in_flight += 1
                try:
                    status, done = await worker.actor.play.remote(spec)
                except self.cluster.ray.exceptions.RayActorError as exc:
                    await self.lost(worker, spec, exc)
                    continue
                finally:
                    worker.in_flight -= 1
                self.merge(done)
                break
        if self.progress:
            self.progress.run_done(spec, status)

    def least_busy(self) -> Worker | None:
        live = self.cluster.live()
        return min(live, key=lambda w: w.in_flight) if live else None

    async def lost(self, worker: Worker, spec: RunSpec, exc: BaseException) -> None:
        if worker.alive:
            worker.alive = False
            freed = await self.cluster.limiter.release_worker.remote(worker.name)
            log.warning("Ray worker %s was lost (%s); its runs in flight are played again elsewhere "
                        "(%d limiter slots freed)", worker.name, type(exc).__name__, freed)
        log.info("run %s lost with %s; playing it again", spec.run_id, worker.name)

    def merge(self, done: RunReport) -> None:
        r = self.report
        r.completed += done.completed
        r.stopped += done.stopped
        r.incomplete += done.incomplete
        r.unfinished_by_budget += done.unfinished_by_budget
        r.failed += done.failed
        r.internal_errors += done.internal_errors

    async def poll(self) -> None:
        while True:
            await asyncio.sleep(POLL_S)
            await self.forward(await self.cluster.hub.drain.remote())

    async def forward(self, events: list[tuple]) -> None:
        """The workers' events, shown as a local run shows its own."""
        if self.progress is None:
            return
        for event in events:
            if event[0] == "messages":
                _, run_id, calls = event
                self.progress.messages(self.specs[run_id], [tallied(*c) for c in calls])
            elif event[0] == "retry" and hasattr(self.progress, "retry"):
                _, model, source, seconds, status, name = event
                self.progress.retry(model, source, seconds, RemoteError(name, status))


def tallied(is_error: bool, model: str, ok: bool, attempts: int, prompt: int, completion: int,
            cost: float | None) -> Message:
    """A message as the progress display counts it: its call's numbers, without its text."""
    from sociolab.orchestrator.client import Completion

    call = Completion(model=model, error=None if ok else "failed", attempts=attempts, prompt_tokens=prompt,
                      completion_tokens=completion, cost_usd=cost)
    return Message(sender="", sender_name="", content="", is_error=is_error, call=call)


class RemoteError(Exception):
    """A worker's retry wait, for the display: the error's kind and HTTP status."""

    def __init__(self, name: str, status: int | None):
        super().__init__(name)
        self.remote_type = name  # what orchestrator/retry.py error_name reports
        self.status_code = status

"""Code every stored message with every judge: concurrent, throttled, resumable.

For each judge, the messages it has not coded yet (under this codebook) are sent, one or `batch`
at a time, with the roster, the agents that had errored by then and a window of preceding
messages. A reply is parsed strictly; a bad one gets one repair request, and the question is asked
afresh up to `parse_attempts` times. A message that still cannot be coded is stored as
`uncodable` with the raw reply, never as false. A call that fails at the provider stores no code
(its llm_calls row says why), so a rerun retries it. Codes are written in batches through the
store's group commit, at least every FLUSH_SECONDS: a killed judge run loses at most the last half
second of codes, so even repeated kills make progress, and a rerun codes each message x judge
exactly once.
"""

from __future__ import annotations

import asyncio
import fnmatch
import hashlib
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Callable

from pydantic import BaseModel, ConfigDict, Field, StringConstraints, model_validator

from sociolab.orchestrator.client import Budget, ClientSettings, Completion, ModelClient, RetryListener, default_providers
from sociolab.base.errors import UserError
from sociolab.orchestrator.cost import ModelEstimate
from sociolab.orchestrator.provider import Endpoint, Price, refuse_inline_keys
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.orchestrator.rows import CacheRow, CodebookRow, CodeRow
from sociolab.orchestrator.sink import call_row
from sociolab.orchestrator.store import Batch, Store
from sociolab.base.yamlfile import read_yaml, validate

from .answer import AnswerError, JudgeAnswer, parse_answer, repair_messages
from .codebook import Codebook, load_codebook
from .prompt import answer_schema, answer_template, build_judge_messages, judge_metadata

log = logging.getLogger(__name__)

LIBRARY = Path(__file__).parent / "library"
FLUSH_EVERY = 400  # messages coded per write, at most
FLUSH_SECONDS = 0.5  # and at least this often, so a killed judge run keeps nearly all it paid for
RUNS_PER_LOAD = 50  # conversations read at a time while judging
YIELD_SECONDS = 0.005  # a worker that never waits (an in-process judge) lets the store's writer run this often


EnvName = Annotated[str, StringConstraints(pattern=r"^[A-Za-z_][A-Za-z0-9_]*$")]


class JudgeConfig(BaseModel):
    """How to judge: which models, which codebook, how much context. YAML: judges/library/judges.yaml."""

    model_config = ConfigDict(extra="forbid")

    judges: list[str] = Field(min_length=1, description="judge models, ideally from different families")
    codebook: str = Field("warroom", description="library codebook name or a YAML path")
    window: int = Field(8, ge=0, le=200, description="preceding messages shown as context")
    batch: int = Field(1, ge=1, le=50, description="messages coded per call")
    concurrency: int = Field(16, ge=1, le=512, description="judge calls in flight")
    parse_attempts: int = Field(2, ge=1, le=10, description="fresh asks, each followed by one repair")
    response_format: bool | None = Field(None, description="JSON schema response_format; None = where supported")
    client: ClientSettings = Field(default_factory=lambda: ClientSettings(cache=True))
    api_bases: dict[str, str] = Field(default_factory=dict,
                                      description="judge model -> server (vLLM, serve-sim, a proxy, ...)")
    api_key_envs: dict[str, EnvName] = Field(default_factory=dict,
                                             description="judge model -> environment variable holding its key")
    prices: dict[str, Price] = Field(default_factory=dict,
                                     description="USD per million tokens by judge model name or pattern")
    sim: SimSettings = Field(default_factory=SimSettings, description="settings of sim judges")

    @model_validator(mode="before")
    @classmethod
    def no_keys_in_files(cls, data: Any) -> Any:
        return refuse_inline_keys(data, ("api_key", "api_keys"))

    def endpoints(self) -> dict[str, Endpoint]:
        models = set(self.api_bases) | set(self.api_key_envs)
        return {m: Endpoint(api_base=self.api_bases.get(m), api_key_env=self.api_key_envs.get(m)) for m in models}


def load_judge_config(path: str | Path | None = None) -> JudgeConfig:
    doc = read_yaml(path or LIBRARY / "judges.yaml")
    return validate(doc, JudgeConfig)


@dataclass
class Item:
    """One message to code, with what the judge is shown about it."""

    message_id: str
    run_id: str
    sender_name: str
    text: str
    context: list[tuple[str, str]]
    roster: list[str]
    errored: list[str]


@dataclass
class JudgeReport:
    to_code: dict[str, int] = field(default_factory=dict)
    coded: dict[str, int] = field(default_factory=dict)
    uncodable: dict[str, int] = field(default_factory=dict)
    failed: dict[str, int] = field(default_factory=dict)
    already: dict[str, int] = field(default_factory=dict)
    calls: int = 0
    cost_usd: float = 0.0
    unpriced: set[str] = field(default_factory=set)


class Judging:
    """One judging pass over a store."""

    def __init__(self, store: Store, config: JudgeConfig, codebook: Codebook, client: ModelClient,
                 on_progress: Callable[[JudgeReport], None] | None = None):
        self.store = store
        self.config = config
        self.codebook = codebook
        self.client = client
        self.on_progress = on_progress
        self.report = JudgeReport()
        self.pending = Batch()
        self.pending_messages = 0
        self.flushed_at = time.monotonic()

    async def run(self, run_ids: list[str]) -> JudgeReport:
        """Each judge in turn codes what it has not coded yet. What is left is found in DuckDB,
        and the conversations it needs are read a few runs at a time (RUNS_PER_LOAD), so memory
        does not grow with the store and a resume with nothing to code reads no conversation."""
        await self.store.write(codebook_batch(self.codebook))
        codable = await self.store.run_blocking(self.store.codable_count, run_ids)
        log.info("judging %d messages of %d runs with %s (codebook %s)", codable, len(run_ids),
                 ", ".join(self.config.judges), self.codebook.codebook_id)
        try:
            for judge in self.config.judges:
                todo = await self.store.run_blocking(self.store.uncoded, run_ids, judge, self.codebook.codebook_id)
                self.report.to_code[judge] = sum(map(len, todo.values()))
                self.report.already[judge] = codable - self.report.to_code[judge]
                for key in ("coded", "uncodable", "failed"):
                    getattr(self.report, key)[judge] = 0
                runs = sorted(todo)
                for start in range(0, len(runs), RUNS_PER_LOAD):
                    chunk = runs[start:start + RUNS_PER_LOAD]
                    wanted = set().union(*(todo[r] for r in chunk))
                    items = await self.store.run_blocking(load_items, self.store, chunk, self.config.window, wanted)
                    await self.code_all(judge, items)
                r = self.report
                log.info("judge %s: %d coded, %d uncodable, %d failed at the provider, %d already coded",
                         judge, r.coded[judge], r.uncodable[judge], r.failed[judge], r.already[judge])
        finally:
            await self.flush()  # codes already paid for are kept, even on an error or Ctrl-C
        log.info("judging done: %d calls, cost $%.4f", self.report.calls, self.report.cost_usd)
        return self.report

    async def code_all(self, judge: str, items: list[Item]) -> None:
        chunks = [items[i:i + self.config.batch] for i in range(0, len(items), self.config.batch)]
        queue: asyncio.Queue = asyncio.Queue()
        for chunk in chunks:
            queue.put_nowait(chunk)

        async def worker() -> None:
            yielded = time.monotonic()
            while not queue.empty():
                await self.code_chunk(judge, queue.get_nowait())
                # An in-process (sim) judge answers without ever suspending, so a worker would
                # run its whole queue before the store's writer task got a turn: yield now and
                # then, so that codes are committed while judging goes on (a killed run keeps them).
                if time.monotonic() - yielded > YIELD_SECONDS:
                    await asyncio.sleep(0)
                    yielded = time.monotonic()

        workers = min(self.config.concurrency, len(chunks)) or 1
        outcomes = await asyncio.gather(*(worker() for _ in range(workers)), return_exceptions=True)
        raised = [r for r in outcomes if isinstance(r, BaseException)]
        if raised:  # e.g. the budget ran out: every worker has stopped before we report it
            raise raised[0]

    async def code_chunk(self, judge: str, chunk: list[Item]) -> None:
        batched = len(chunk) > 1
        ids = [item.message_id for item in chunk] if batched else None
        prompt = self.prompt_for(chunk)
        answers: dict[str, JudgeAnswer] | None = None
        last_reply, error, failed = "", "", False
        for attempt in range(self.config.parse_attempts):
            messages = prompt
            for repairing in (False, True):
                call = await self.ask(judge, messages, chunk, attempt * 2 + repairing)
                if not call.ok:
                    failed = True
                    break
                last_reply = call.text or ""
                try:
                    parsed = parse_answer(last_reply, self.codebook, batch_ids=ids)
                    # a batch is answered by message id (batch_ids given), a single message alone
                    answers = parsed if isinstance(parsed, dict) else {chunk[0].message_id: parsed}
                    break
                except AnswerError as exc:
                    error = exc.reason
                    messages = repair_messages(prompt, last_reply, exc)
            if answers is not None or failed:
                break
        self.record(judge, chunk, answers, last_reply, error, failed)
        if self.pending_messages >= FLUSH_EVERY or time.monotonic() - self.flushed_at >= FLUSH_SECONDS:
            await self.flush()

    def prompt_for(self, chunk: list[Item]) -> list[dict]:
        first = chunk[0]
        if len(chunk) == 1:
            return build_judge_messages(self.codebook, message_text=first.text, sender_name=first.sender_name,
                                        roster=first.roster, errored=first.errored, context=first.context)
        return build_judge_messages(self.codebook, roster=first.roster, errored=chunk[-1].errored,
                                    context=first.context,
                                    batch=[(i.message_id, i.sender_name, i.text) for i in chunk])

    async def ask(self, judge: str, messages: list[dict], chunk: list[Item], attempt: int) -> Completion:
        extra = None
        if self.wants_schema(judge):
            schema = answer_schema(self.codebook, batch=len(chunk) > 1)
            extra = {"response_format": {"type": "json_schema", "json_schema": schema}}
        metadata = judge_metadata(self.codebook, items=[(i.message_id, i.sender_name, i.text) for i in chunk],
                                  roster=chunk[0].roster, errored=chunk[-1].errored, batch=len(chunk) > 1)
        call = await self.client.complete(judge, messages, temperature=0.0, extra=extra, metadata=metadata,
                                          seed=stable_seed(chunk[0].message_id, attempt))
        self.pending.add(call_row(chunk[0].run_id, chunk[0].message_id, None, "judge", call))
        self.report.calls += 1
        if call.cost_usd is None and call.ok:
            self.report.unpriced.add(judge)
        self.report.cost_usd += call.cost_usd or 0.0
        return call

    def wants_schema(self, judge: str) -> bool:
        """`response_format` where the judge's provider takes a JSON schema, unless configured."""
        if self.config.response_format is not None:
            return self.config.response_format
        return bool(self.client.supports(judge, "response_schema"))  # unknown: JSON asked in the prompt

    def record(self, judge: str, chunk: list[Item], answers: dict[str, JudgeAnswer] | None,
               raw: str, error: str, failed: bool) -> None:
        cid = self.codebook.codebook_id
        if failed and answers is None:
            self.report.failed[judge] += len(chunk)
            log.info("judge %s: no code for %s (the call failed at the provider; a rerun asks again)",
                     judge, ", ".join(item.message_id for item in chunk))
        elif answers is None or any(answers.get(item.message_id) is None for item in chunk):
            log.info("judge %s: uncodable answer for %s: %s", judge, ", ".join(
                item.message_id for item in chunk if not answers or answers.get(item.message_id) is None), error)
        for item in chunk:
            if failed and answers is None:
                continue  # no code: a rerun asks again; llm_calls holds the error
            answer = answers.get(item.message_id) if answers else None
            if answer is None:
                self.report.uncodable[judge] += 1
                for flag in self.codebook.flag_names:
                    self.pending.add(CodeRow(message_id=item.message_id, run_id=item.run_id, judge=judge,
                                             codebook_id=cid, flag=flag, status="uncodable", rationale=error,
                                             raw_reply=raw))
            else:
                self.report.coded[judge] += 1
                for flag in self.codebook.flag_names:
                    self.pending.add(CodeRow(message_id=item.message_id, run_id=item.run_id, judge=judge,
                                             codebook_id=cid, flag=flag, value=answer.flags[flag],
                                             level=answer.levels.get(flag), status="coded",
                                             rationale=answer.rationale))
            self.pending_messages += 1
        if self.on_progress:
            self.on_progress(self.report)

    async def flush(self) -> None:
        batch, self.pending, self.pending_messages = self.pending, Batch(), 0
        self.flushed_at = time.monotonic()
        for key, model, response in self.client.cache.drain():
            batch.add(CacheRow(cache_key=key, model=model, response=response))
        await self.store.write(batch)


def codebook_batch(codebook: Codebook) -> Batch:
    batch = Batch()
    batch.add(CodebookRow(codebook_id=codebook.codebook_id, name=codebook.name, content=codebook.canonical_json()))
    return batch


def stable_seed(message_id: str, attempt: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{message_id}|{attempt}".encode()).digest()[:4], "big")


def select_runs(store: Store, run_glob: str | None, series: list[str] | None) -> list[str]:
    """The runs to judge: those whose id matches `run_glob` and whose series is in `series`."""
    out = [r for r, s in store.series_by_run().items() if (run_glob is None or fnmatch.fnmatchcase(r, run_glob))
           and (not series or s in series)]
    if not out:
        raise UserError("no runs match" + (f" --runs {run_glob}" if run_glob else "")
                        + (f" --series {','.join(series)}" if series else "")
                        + f" in {store.path}; see `sociolab sql \"SELECT run_id, series FROM runs\"`")
    return out


def load_items(store: Store, run_ids: list[str], window: int, wanted: set[str]) -> list[Item]:
    """The messages of `wanted` (ids chosen in SQL by Store.uncoded, which says what is codable)
    in these runs, with their roster, errored peers and context."""
    agents: dict[str, list[tuple[str, int | None]]] = {}
    for agent in store.roster(run_ids):
        agents.setdefault(agent.run_id, []).append((agent.name, agent.errored_round))
    items: list[Item] = []
    history: list[tuple[str, str]] = []
    current = None
    for run_id, message_id, rnd, sender, name, content, is_error in store.conversation(run_ids):
        if run_id != current:
            current, history = run_id, []
        shown = f"⚠ {content}" if is_error else content
        if message_id in wanted:
            roster = [n for n, _ in agents.get(run_id, [])]
            errored = [n for n, er in agents.get(run_id, []) if er is not None and rnd is not None and er <= rnd]
            items.append(Item(message_id, run_id, name or sender, content,
                              history[-window:] if window else [], roster, errored))
        if sender != "system":
            history.append((name or sender, shown))
    return items


def estimate_judging(store: Store, config: JudgeConfig, *, run_glob: str | None = None,
                     series: list[str] | None = None) -> list[ModelEstimate]:
    """`judge --dry-run`: the calls each judge would make, their prompt tokens (from the prompts
    themselves, ~4 characters a token) and answer tokens (the answer format's size), and cost."""
    codebook = load_codebook(config.codebook)
    run_ids = select_runs(store, run_glob, series)
    client = client_without_checks(config)
    judging = Judging(store, config, codebook, client)
    out = []
    for judge in config.judges:
        uncoded = store.uncoded(run_ids, judge, codebook.codebook_id)
        todo = load_items(store, sorted(uncoded), config.window, set().union(*uncoded.values()))
        chunks = [todo[i:i + config.batch] for i in range(0, len(todo), config.batch)]
        prompt_chars = sum(len(m["content"]) for chunk in chunks for m in judging.prompt_for(chunk))
        answer_chars = sum(len(answer_template(codebook, [i.message_id for i in chunk] if len(chunk) > 1 else None))
                           for chunk in chunks)
        p, c = prompt_chars // 4, answer_chars // 4
        price = client.price_or_list_price(judge)
        out.append(ModelEstimate(judge, len(chunks), p, c, price.cost(p, c) if price else None))
    return out


def client_for(config: JudgeConfig, *, max_cost: float | None = None,
               on_retry: RetryListener | None = None) -> ModelClient:
    """The judges' client: their endpoints, prices, sim settings and budget, keys checked."""
    client = client_without_checks(config, max_cost=max_cost, on_retry=on_retry)
    client.check_ready(config.judges)
    if max_cost is not None and client.unpriced(config.judges):
        raise UserError(f"--max-cost needs a price for {', '.join(client.unpriced(config.judges))}: add them "
                        "under prices: (USD per million tokens) in the judge config")
    return client


def client_without_checks(config: JudgeConfig, *, max_cost: float | None = None,
                          on_retry: RetryListener | None = None) -> ModelClient:
    return ModelClient(config.client, endpoints=config.endpoints(), prices=config.prices,
                       providers=default_providers(config.client, config.sim),
                       budget=Budget(max_cost) if max_cost is not None else None, on_retry=on_retry)


async def judge_store(store: Store, config: JudgeConfig, *, run_glob: str | None = None,
                      series: list[str] | None = None, client: ModelClient | None = None,
                      on_progress: Callable[[JudgeReport], None] | None = None) -> JudgeReport:
    """Code the selected runs' messages with every judge of `config`."""
    if len(set(config.judges)) != len(config.judges):
        raise UserError("the same judge is listed twice")
    codebook = load_codebook(config.codebook)
    run_ids = await store.run_blocking(select_runs, store, run_glob, series)
    client = client or client_for(config)
    client.cache.preload(await store.run_blocking(store.load_cache, [j for j in config.judges
                                                                     if client.uses_cache(j)]))
    try:
        return await Judging(store, config, codebook, client, on_progress).run(run_ids)
    finally:
        await client.aclose()  # worker processes, if any, exit with the loop that owns their pipes

"""The event sink: how a scenario records what happened, without knowing about DuckDB.

A scenario adds messages, LLM calls and events as they happen; `commit_round` hands them to the
store as one batch (one transaction), together with new response-cache entries and the run's
progress counter. The write of round N overlaps with the play of round N+1 (at most one write in
flight per run), so a killed process loses at most the round being played and the one being
written. A round's rows and the run's rounds_done are one transaction, so an unfinished run's
stored rows are exactly its first rounds_done rounds; a resumed run's sink starts `next_seq`
after its stored messages (sociolab/runner.py).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, replace
from typing import Any, Callable

from .cache import ResponseCache
from .client import Completion
from .rows import CacheRow, EventRow, LlmCallRow, MessageRow, OutcomeRow, ToolCallRow
from .store import Batch, Store


@dataclass
class Message:
    """A conversation message before it is stored; `seq` is given at commit, by finish time."""

    sender: str
    sender_name: str
    content: str
    round: int | None = None
    turn: int | None = None
    context_size: int | None = None
    is_error: bool = False
    error: str | None = None
    started_s: float | None = None
    finished_s: float | None = None
    call: Completion | None = None
    seq: int | None = None
    reasoning: str | None = None


BATCH_ROWS = 5000  # a batched sink writes at least this often, whatever the time


class EventSink:
    """What a run records, written round by round.

    `batch_seconds` > 0 (the runner's choice for virtual-time runs, whose rounds take
    milliseconds): rounds are still committed whole and in order, but written together, once that
    many seconds have passed since the last write (or BATCH_ROWS rows are waiting, or the run
    ends); a kill then loses at most that much work, and a resume continues from the last round
    written. Wall-clock runs write every round (batch_seconds = 0): their rounds cost money."""

    def __init__(self, store: Store, run_id: str, cache: ResponseCache | None = None,
                 on_commit: Callable[[list[Message]], None] | None = None, *, batch_seconds: float = 0.0):
        self.store = store
        self.run_id = run_id
        self.cache = cache
        self.on_commit = on_commit
        self.batch_seconds = batch_seconds
        self._pending = Batch()
        self._written_at = time.monotonic()
        self.next_seq = 0
        self._messages: list[Message] = []
        self._events: list[EventRow] = []
        self._agent_updates: list[tuple[str, dict[str, Any]]] = []
        self._tool_calls: list[tuple[ToolCallRow, Message | None]] = []  # message ids are known at commit
        self._outcomes: list[OutcomeRow] = []
        self._tool_seq = 0
        self._writing: asyncio.Task[None] | None = None
        self._carried: Batch | None = None  # rows to write with the first rounds (carry)

    def carry(self, batch: Batch) -> None:
        """Write `batch` (a run's own row and roster) in the same transaction as the first
        rounds, instead of in one of its own: a short sim run is then one transaction.
        `write_carried` writes it alone if the run ends before that write starts."""
        self._pending = Batch.merged([batch, self._pending])
        self._carried = batch

    async def write_carried(self) -> None:
        """Write the carried batch now, alone, unless a write has already taken it: a run that
        raises keeps the run row it would have had with a write of its own (then marked failed,
        or continued by a resume with a higher budget)."""
        if self._carried is not None:
            batch, self._carried = self._carried, None
            await self.store.write(batch)

    def actions(self, tick: Any, agent: Any, kind: Any, target: Any = None, item: Any = None) -> None:
        """Population actions, as whole columns (numpy arrays of one length; `tick` may be one int
        for all): the `actions` table (docs/schema.md), written column-wise with the next commit,
        never a row object per action. -1 in `target` or `item` is NULL."""
        import numpy as np

        n = len(agent)
        if n == 0:
            return
        block: dict[str, Any] = {"run_id": self.run_id,
                                 "tick": np.broadcast_to(np.asarray(tick, dtype=np.int32), (n,)).copy(),
                                 "agent": np.asarray(agent, dtype=np.int32), "kind": np.asarray(kind, dtype=np.uint8)}
        for name, values in (("target", target), ("item", item)):
            if values is not None:
                block[name] = np.asarray(values, dtype=np.int32 if name == "target" else np.int64)
        self._pending.columns.append(("actions", block))

    def message(self, message: Message) -> Message:
        self._messages.append(message)
        return message

    def event(self, kind: str, *, round: int | None = None, agent_id: str | None = None,
              **detail: Any) -> None:
        self._events.append(EventRow(run_id=self.run_id, round=round, kind=kind, agent_id=agent_id,
                                     detail=detail or None))

    async def flush(self) -> None:
        """Wait until everything committed so far is durable (and raise if a write failed)."""
        if len(self._pending) or self._pending.updates:
            await self._write_pending()
        await self._written()

    async def _written(self) -> None:
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    async def _write_pending(self, *, last: bool = False) -> None:
        """Start writing the committed rounds (after the write before it has finished). A
        batched sink's last write may wait out what is left of its batch window in the store,
        for the next runs' rows to share its transaction (Store.write `within`)."""
        await self._written()
        batch, self._pending = self._pending, Batch()
        self._carried = None
        now = time.monotonic()
        within = max(0.0, self.batch_seconds - (now - self._written_at)) if last else 0.0
        self._written_at = now
        self._writing = asyncio.create_task(self.store.write(batch, within=within))

    def _write_due(self, final: bool) -> bool:
        return (final or self.batch_seconds <= 0 or len(self._pending) >= BATCH_ROWS
                or time.monotonic() - self._written_at >= self.batch_seconds)

    def tool_call(self, *, agent_id: str | None, message: "Message | None", step: int, tool: str,
                  arguments: Any, result: str, is_error: bool) -> None:
        """A tool call and its result. `message` is the assistant turn that asked for it; its id
        is known once committed, so the row gets it at commit time."""
        row = ToolCallRow(run_id=self.run_id, seq=self._tool_seq, agent_id=agent_id, step=step, tool=tool,
                          arguments=arguments, result=result, is_error=is_error)
        self._tool_calls.append((row, message))
        self._tool_seq += 1

    def outcome(self, metric: str, value: float | None, *, agent_id: str = "", **detail: Any) -> None:
        """A scored result (deterministic check of the final state); None = missing."""
        self._outcomes.append(OutcomeRow(run_id=self.run_id, agent_id=agent_id, metric=metric, value=value,
                                         detail=detail or None))

    def agent_update(self, agent_id: str, **values: Any) -> None:
        self._agent_updates.append((agent_id, values))

    async def commit_round(self, rounds_done: int, **run_updates: Any) -> list[Message]:
        """Commit everything recorded since the last commit, as one unit written in one
        transaction (with the rounds before it that a batched sink still holds). `run_updates`
        (the run's status) mark the last commit of a run: it is always written."""
        batch = self._pending
        committed = sorted(self._messages, key=lambda m: (m.finished_s or 0.0, m.turn or 0))
        for message in committed:
            message.seq = seq = self.next_seq
            self.next_seq += 1
            message_id = f"{self.run_id}#{seq}"
            batch.add(message_row(self.run_id, message_id, seq, message))
            if message.call is not None:
                batch.add(call_row(self.run_id, message_id, message.sender, "agent", message.call))
        for event in self._events:
            batch.add(event)
        for row, asked_by in self._tool_calls:
            if asked_by is not None and asked_by.seq is not None:
                row = replace(row, message_id=f"{self.run_id}#{asked_by.seq}")
            batch.add(row)
        for outcome in self._outcomes:
            batch.add(outcome)
        if self.cache is not None:
            for key, model, response in self.cache.drain():
                batch.add(CacheRow(cache_key=key, model=model, response=response))
        for agent_id, values in self._agent_updates:
            batch.update("agents", {"run_id": self.run_id, "agent_id": agent_id}, **values)
        batch.update("runs", {"run_id": self.run_id}, rounds_done=rounds_done, **run_updates)
        if self._write_due(final=bool(run_updates)):
            await self._write_pending(last=bool(run_updates))
        self._messages, self._events, self._agent_updates = [], [], []
        self._tool_calls, self._outcomes = [], []
        if self.on_commit:
            self.on_commit(committed)
        return committed


def message_row(run_id: str, message_id: str, seq: int, message: Message) -> MessageRow:
    """The stored form of a message; its reasoning is the call's unless the scenario gave one."""
    return MessageRow(message_id=message_id, run_id=run_id, seq=seq, round=message.round, turn=message.turn,
                      sender=message.sender, sender_name=message.sender_name, content=message.content,
                      context_size=message.context_size, is_error=message.is_error, error=message.error,
                      started_s=message.started_s, finished_s=message.finished_s,
                      reasoning=message.reasoning or (message.call.reasoning if message.call else None))


def call_row(run_id: str | None, message_id: str | None, agent_id: str | None, purpose: str,
             call: Completion) -> LlmCallRow:
    """The stored form of a model call (agent or judge), with what produced it."""
    return LlmCallRow(run_id=run_id, message_id=message_id, agent_id=agent_id, purpose=purpose, model=call.model,
                      started_at=call.started_at, latency_ms=call.latency_ms, prompt_tokens=call.prompt_tokens,
                      completion_tokens=call.completion_tokens, cost_usd=call.cost_usd, attempts=call.attempts,
                      cached=call.cached, error_type=call.error_type, error=call.error, provider=call.provider,
                      dropped_params=call.dropped_params or None)

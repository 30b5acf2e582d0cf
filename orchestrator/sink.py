"""The event sink: how a scenario records what happened, without knowing about DuckDB.

A scenario adds messages, LLM calls and events as they happen; `commit_round` hands them to the
store as one batch (one transaction), together with new response-cache entries and the run's
progress counter. The write of round N overlaps with the play of round N+1 (at most one write in
flight per run), so a killed process loses at most the round being played and the one being
written; a rerun redoes any unfinished run from scratch anyway.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, Callable

from .cache import ResponseCache
from .client import Completion
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


class EventSink:
    def __init__(self, store: Store, run_id: str, cache: ResponseCache | None = None,
                 on_commit: Callable[[list[Message]], None] | None = None):
        self.store = store
        self.run_id = run_id
        self.cache = cache
        self.on_commit = on_commit
        self.next_seq = 0
        self._messages: list[Message] = []
        self._events: list[tuple] = []
        self._agent_updates: list[tuple[str, dict[str, Any]]] = []
        self._tool_calls: list[tuple] = []
        self._outcomes: list[tuple] = []
        self._tool_seq = 0
        self._writing: asyncio.Task | None = None

    def message(self, message: Message) -> Message:
        self._messages.append(message)
        return message

    def event(self, kind: str, *, round: int | None = None, agent_id: str | None = None,
              **detail: Any) -> None:
        self._events.append((self.run_id, round, kind, agent_id, detail or None))

    async def flush(self) -> None:
        """Wait until everything committed so far is durable (and raise if a write failed)."""
        if self._writing is not None:
            writing, self._writing = self._writing, None
            await writing

    def tool_call(self, *, agent_id: str | None, message: "Message | None", step: int, tool: str,
                  arguments: Any, result: str, is_error: bool) -> None:
        """A tool call and its result. `message` is the assistant turn that asked for it; its id
        is known once committed, so the row is completed at commit time."""
        self._tool_calls.append((self._tool_seq, agent_id, message, step, tool, arguments, result, is_error))
        self._tool_seq += 1

    def outcome(self, metric: str, value: float | None, *, agent_id: str = "", **detail: Any) -> None:
        """A scored result (deterministic check of the final state); None = missing."""
        self._outcomes.append((self.run_id, agent_id, metric, value, detail or None))

    def agent_update(self, agent_id: str, **values: Any) -> None:
        self._agent_updates.append((agent_id, values))

    async def commit_round(self, rounds_done: int, **run_updates: Any) -> list[Message]:
        """Persist everything recorded since the last commit, in one transaction."""
        batch = Batch()
        committed = sorted(self._messages, key=lambda m: (m.finished_s or 0.0, m.turn or 0))
        for message in committed:
            message.seq = self.next_seq
            self.next_seq += 1
            message_id = f"{self.run_id}#{message.seq}"
            batch.add("messages", (message_id, self.run_id, message.seq, message.round, message.turn,
                                   message.sender, message.sender_name, message.content,
                                   message.context_size, message.is_error, message.error,
                                   message.started_s, message.finished_s,
                                   message.reasoning or (message.call.reasoning if message.call else None)))
            if message.call is not None:
                batch.add("llm_calls", call_row(self.run_id, message_id, message.sender, "agent", message.call))
        for event in self._events:
            batch.add("events", event)
        for seq, agent_id, message, step, tool, arguments, result, is_error in self._tool_calls:
            message_id = f"{self.run_id}#{message.seq}" if message is not None and message.seq is not None else None
            batch.add("tool_calls", (self.run_id, seq, agent_id, message_id, step, tool, arguments, result, is_error))
        for row in self._outcomes:
            batch.add("outcomes", row)
        if self.cache is not None:
            for key, model, response in self.cache.drain():
                batch.add("llm_cache", (key, model, response))
        for agent_id, values in self._agent_updates:
            batch.update("agents", {"run_id": self.run_id, "agent_id": agent_id}, **values)
        batch.update("runs", {"run_id": self.run_id}, rounds_done=rounds_done, **run_updates)
        await self.flush()
        self._writing = asyncio.create_task(self.store.write(batch))
        self._messages, self._events, self._agent_updates = [], [], []
        self._tool_calls, self._outcomes = [], []
        if self.on_commit:
            self.on_commit(committed)
        return committed


def call_row(run_id: str | None, message_id: str | None, agent_id: str | None, purpose: str,
             call: Completion) -> tuple:
    return (run_id, message_id, agent_id, purpose, call.model, call.started_at, call.latency_ms,
            call.prompt_tokens, call.completion_tokens, call.cost_usd, call.attempts, call.cached,
            call.error_type, call.error, call.provider, call.dropped_params or None)

"""The WarRoom corpus' provider failures as a crash schedule, to replay the platform's rules.

A published transcript says which agent was called in which round and which of those calls
failed (rate limits, capacity, a decommissioned model, a time-out). Who is called next depends on
those failures only (the platform's rules: a failed agent sits out one round, a permanent error
drops it, more than 60% failures after an odd round stop the run). So replaying a run's failures
on the sim, as crashes at the same (agent, round), must call exactly the agents the platform
called, round by round, if sociolab's rules are the platform's: tests/test_warroom_protocol.py
checks that on all 208 runs.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from sociolab.personas.models import Crash
from sociolab.scenarios.discussion import is_permanent_error

from .warroom import RUN_FILE

# A failed call is stored as "⚠ " + the provider's message; two replies in the corpus merely start
# with a warning sign followed by markdown ("⚠ **Agent-E** ...", "⚠️ **Note ..."), and are replies.
FAILED_CALL = re.compile(r"^⚠ (?!\*\*)")

Seat = tuple[str, int]  # (the corpus' agent key, round)


@dataclass(frozen=True)
class CorpusRun:
    """What one transcript says about calls: who was called when, and which calls failed."""

    series: str
    number: int
    seating: tuple[str, ...]        # agent keys in the platform's order (agentRanking)
    called: frozenset[Seat]
    failed: dict[Seat, str]         # the provider's message, without the warning sign
    max_rounds: int

    @property
    def rounds(self) -> int:
        return 1 + max((r for _, r in self.called), default=-1)


def read_corpus_run(path: str | Path) -> CorpusRun:
    path = Path(path)
    match = RUN_FILE.match(path.name)
    if match is None:
        raise ValueError(f"{path}: not a WarRoom transcript name")
    data = json.loads(path.read_text(encoding="utf-8"))
    seating = tuple(a["key"] for a in data["environment"]["agentRanking"] if a.get("enabled", True))
    called: set[Seat] = set()
    failed: dict[Seat, str] = {}
    for m in data["conversation"]["messages"]:
        if m["sender"] in seating:
            seat = (m["sender"], m["round"])
            called.add(seat)
            text = m.get("text") or ""
            if FAILED_CALL.match(text):
                failed[seat] = text[2:]
    return CorpusRun(match.group("series"), int(match.group("num")), seating, frozenset(called), failed,
                     data["environment"]["maxRounds"])


def crash_schedule(run: CorpusRun, persona_keys: dict[str, str]) -> list[Crash]:
    """One crash per agent that failed: at the rounds it failed, with the provider's message (a
    permanent one where the platform's words say so). `persona_keys` maps the corpus' agent keys
    to the roster's (`clone_0` -> `llama-1` in series B)."""
    by_agent: dict[str, dict[int, str]] = {}
    for (agent, rnd), text in run.failed.items():
        by_agent.setdefault(agent, {})[rnd] = text
    crashes = []
    for agent, rounds in sorted(by_agent.items()):
        texts = list(rounds.values())
        permanent = any(is_permanent_error(t) for t in texts)
        crashes.append(Crash(agent=persona_keys[agent], at_rounds=sorted(rounds), message=texts[0],
                             mode="permanent" if permanent else "transient"))
    return crashes

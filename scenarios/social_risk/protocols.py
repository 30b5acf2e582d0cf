"""The four interaction protocols of RiskLab, usable with any environment.

A protocol says two things about a round: who acts in which stage (agents of one stage act at
the same time, stages follow each other, and the environment takes each stage's acts before the
next stage is asked), and which earlier messages reach an agent when it acts. The topology
(scenarios/topology.py) then filters those messages by sender: a message reaches an agent only if
its sender's row reaches the agent's column in that round. Confederates are seats like the others.

- `sequential` (sequential handoff): one agent per stage, in seat order, or the stages of a `flow`
  (lists of seat numbers from 1; RiskLab's flow_order, whose nested lists are parallel stages);
  each agent sees only its predecessors' output (the previous stage's messages; the first stage
  of a round gets the last stage's output of the round before, and nothing in round 0). A relay.
- `broadcast` (broadcast deliberation): everyone in one stage; each agent sees every message of
  the earlier rounds (the last `window` rounds; all by default).
- `market` (market turn-based): everyone in one stage, moves simultaneous; each agent gets the
  previous round's messages only, which the environment shows with the round's public outcome
  (prices, profits, and speeches where the market allows cheap talk).
- `queue` (queue-based execution): one agent per stage, in a FIFO queue that rotates each round
  (round r starts with seat r mod n); each agent sees the environment as earlier stages left it
  and the messages of the agents before it in this round and in the previous one.
"""

from __future__ import annotations

from typing import Literal, Sequence

from .environment import Heard

ProtocolName = Literal["sequential", "broadcast", "market", "queue"]
PROTOCOLS: tuple[ProtocolName, ...] = ("sequential", "broadcast", "market", "queue")


def stages(protocol: ProtocolName, seats: Sequence[str], round_index: int,
           flow: Sequence[Sequence[int]] | None = None) -> list[list[str]]:
    """The round's stages: lists of agent ids that act together, in order."""
    if flow is not None:
        return [[seats[k - 1] for k in stage] for stage in flow]
    if protocol in ("broadcast", "market"):
        return [list(seats)]
    if protocol == "queue":
        start = round_index % len(seats) if seats else 0
        return [[s] for s in list(seats)[start:] + list(seats)[:start]]
    return [[s] for s in seats]


def candidates(protocol: ProtocolName, log: Sequence[Heard], round_index: int, window: int | None,
               before: Sequence[Heard], previous_stage: Sequence[Heard]) -> list[Heard]:
    """The messages an agent could hear before the topology filters them. `log` holds the
    earlier rounds' messages in the order they were said, `before` this round's messages of the
    stages already played, `previous_stage` the messages of the stage played last (in this
    round, or the last stage of the round before)."""
    if protocol == "market":
        return [h for h in log if h.round == round_index - 1]
    if protocol == "sequential":
        return list(previous_stage)
    if protocol == "queue":
        return [h for h in log if h.round == round_index - 1] + list(before)
    earliest = 0 if window is None else round_index - window
    return [h for h in log if h.round >= earliest]

"""Repeated 2x2 games, after "Playing repeated games with Large Language Models" (Akata et al.).

Two players meet for `rounds` rounds of the same 2x2 game: two LLM agents of the roster, or one
LLM agent and a fixed strategy (always cooperate, always defect, tit-for-tat, grim trigger,
alternate, defect once then cooperate). Moves are simultaneous. Every round each LLM player gets a
fresh prompt: the rules (payoffs in its current option labels), one line per previous round, and
the question; its raw reply is recorded as a message and parsed strictly (see `parse_move`).

Underlying actions are `A` and `B`; a payoff matrix maps (player 1's action, player 2's action)
to (player 1's points, player 2's points):

- prisoners_dilemma: A = cooperate, B = defect; AA 8/8, AB 0/10, BA 10/0, BB 5/5 (the paper's).
- battle_of_the_sexes: A = player 1's preferred event, B = player 2's; AA 10/7, BB 7/10, else 0/0.

The option labels (default J and F) are mapped to A/B and ordered anew every round (seeded), per
player, so neither a label nor a position carries the cooperative option; history lines are
written in the current round's labels, so a label always denotes the same action throughout one
prompt. An invalid move (no valid label, two labels, an empty reply, a failed call) is never
defaulted: the round is scored as missing (no points to either player), the move is recorded in an
`invalid_move` event, and play continues. See docs/games.md.
"""

from __future__ import annotations

import asyncio
import hashlib
import random
import re
from dataclasses import dataclass, field
from typing import Callable, Literal, NamedTuple

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sociolab.orchestrator.clock import VirtualClock
from sociolab.orchestrator.sim.metadata import GameMove
from sociolab.orchestrator.sink import Message
from sociolab.personas.models import Persona, RosterSpec

from .base import Agent, Outcome, RunContext, Scenario

SYSTEM_PROMPT = ("You are playing a game repeatedly with another player. In each round, you and the other player "
                 "choose an option at the same time, and each of you wins points depending on both choices.")

A, B = "A", "B"
GameName = Literal["prisoners_dilemma", "battle_of_the_sexes"]
PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "prisoners_dilemma": {"AA": (8, 8), "AB": (0, 10), "BA": (10, 0), "BB": (5, 5)},
    "battle_of_the_sexes": {"AA": (10, 7), "AB": (0, 0), "BA": (0, 0), "BB": (7, 10)},
}

# Fixed strategies work on abstract moves relative to the player: C = the cooperative action
# (PD: cooperate; BoS: concede, i.e. the partner's preferred event), D = the other one.
C, D = "C", "D"
StrategyName = Literal["always_cooperate", "always_defect", "tit_for_tat", "grim_trigger",
                       "alternate", "defect_once"]
History = list[tuple[str | None, str | None]]  # per past round: (own move, opponent's move), C/D/None


def _tit_for_tat(k: int, history: History) -> str:
    if k == 0:
        return C
    mine, theirs = history[-1]
    if theirs is None:          # the opponent's last move was invalid: no information, keep going
        return mine or C
    return theirs


STRATEGIES: dict[str, Callable[[int, History], str]] = {
    "always_cooperate": lambda k, h: C,
    "always_defect": lambda k, h: D,
    "tit_for_tat": _tit_for_tat,
    "grim_trigger": lambda k, h: D if any(theirs == D for _, theirs in h) else C,
    "alternate": lambda k, h: C if k % 2 == 0 else D,
    "defect_once": lambda k, h: D if k == 0 else C,
}
STRATEGY_LABELS = {
    "always_cooperate": "Always cooperate", "always_defect": "Always defect", "tit_for_tat": "Tit-for-tat",
    "grim_trigger": "Grim trigger", "alternate": "Alternate", "defect_once": "Defect once, then cooperate",
}
STRATEGY_MODEL_PREFIX = "strategy/"


class GamesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    game: GameName = Field("prisoners_dilemma", description="payoff preset and the metrics it gets")
    payoffs: dict[str, tuple[float, float]] | None = Field(
        None, description="override the preset: {AA: [p1, p2], AB: [...], BA: [...], BB: [...]}")
    rounds: int = Field(10, ge=1, le=1000)
    labels: tuple[str, str] = Field(("J", "F"), description="the two option labels")
    shuffle: Literal["round", "run", "none"] = Field(
        "round", description="label->action mapping and listing order drawn anew every round, once per run, or fixed")
    opponent: Literal["agent", "always_cooperate", "always_defect", "tit_for_tat", "grim_trigger",
                      "alternate", "defect_once"] = Field(
        "agent", description="'agent': the two roster agents play each other; else a fixed strategy")
    allow_extra_text: bool = Field(True, description="accept a reply with text around exactly one label")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(256, ge=1)

    @field_validator("labels")
    @classmethod
    def _labels(cls, v: tuple[str, str]) -> tuple[str, str]:
        for label in v:
            if not re.fullmatch(r"[A-Za-z0-9]{1,20}", label):
                raise ValueError(f"label '{label}' must be 1-20 letters or digits")
        if v[0].lower() == v[1].lower():
            raise ValueError("the two labels must differ (case-insensitively)")
        return v

    @field_validator("payoffs")
    @classmethod
    def _payoffs(cls, v):
        if v is not None and set(v) != {"AA", "AB", "BA", "BB"}:
            raise ValueError("payoffs needs exactly the keys AA, AB, BA, BB (player 1's action first)")
        return v

    @model_validator(mode="after")
    def _fill(self) -> "GamesParams":
        if self.payoffs is None:
            self.payoffs = dict(PRESETS[self.game])
        return self

    @property
    def matrix(self) -> dict[str, tuple[float, float]]:
        """The payoffs in force: the override, else the game's preset (`payoffs` after validation)."""
        return self.payoffs if self.payoffs is not None else PRESETS[self.game]


# ----------------------------------------------------------------------------------------------
# The game
# ----------------------------------------------------------------------------------------------

def points(payoffs: dict[str, tuple[float, float]], a1: str, a2: str) -> tuple[float, float]:
    """(player 1's points, player 2's points) for player 1 playing a1 and player 2 playing a2."""
    p1, p2 = payoffs[a1 + a2]
    return p1, p2


def cooperative_action(game: str, player: int) -> str:
    """The action a fixed strategy's C stands for: PD cooperate (A); BoS the partner's event."""
    if game == "prisoners_dilemma":
        return A
    return B if player == 0 else A


def to_action(game: str, player: int, move: str) -> str:
    coop = cooperative_action(game, player)
    return coop if move == C else (B if coop == A else A)


def to_move(game: str, player: int, action: str | None) -> str | None:
    if action is None:
        return None
    return C if action == cooperative_action(game, player) else D


def strategy_moves(name: str, opponent_moves: list[str | None]) -> list[str]:
    """A fixed strategy's C/D moves against a known sequence of opponent moves (None = invalid)."""
    play = STRATEGIES[name]
    history: History = []
    out = []
    for k, theirs in enumerate(opponent_moves):
        mine = play(k, history)
        out.append(mine)
        history.append((mine, theirs))
    return out


class Labelling(NamedTuple):
    """One player's view of one round: which label means which action, in listing order."""

    order: tuple[str, str]          # labels in the order they are listed
    action: dict[str, str]          # label -> action

    def label_of(self, action: str) -> str:
        return next(lbl for lbl, act in self.action.items() if act == action)


def draw_labelling(labels: tuple[str, str], rng: random.Random | None) -> Labelling:
    """Map labels to actions and order them; `rng=None` is the fixed mapping (first label = A)."""
    if rng is None:
        return Labelling(labels, {labels[0]: A, labels[1]: B})
    mapped = list(labels)
    rng.shuffle(mapped)
    order = list(labels)
    rng.shuffle(order)
    return Labelling((order[0], order[1]), {mapped[0]: A, mapped[1]: B})


class Move(NamedTuple):
    label: str | None     # the label found, None if invalid
    problem: str | None   # why the move is invalid


def parse_move(text: str | None, labels: tuple[str, str], *, allow_extra_text: bool = True) -> Move:
    """Strict move parsing: exactly one label, never a default.

    1. The whole reply, stripped of whitespace, markdown emphasis, quotes, a leading "Option" and
       a trailing full stop, equals a label: valid (case-insensitive: "j", "Option J.", "**F**").
    2. Otherwise (if `allow_extra_text`), the labels are looked for as standalone words, case-
       sensitively ("I choose J" is J; "a" in prose is not the label "A"): exactly one distinct
       label is valid; none or both is invalid.
    """
    if text is None or not text.strip():
        return Move(None, "empty reply")
    bare = re.sub(r"^[\s*_\"'`]+|[\s*_\"'`.!]+$", "", text)
    bare = re.sub(r"^option\s+", "", bare, flags=re.IGNORECASE)
    bare = re.sub(r"^[\s*_\"'`]+|[\s*_\"'`.!]+$", "", bare)
    for label in labels:
        if bare.lower() == label.lower():
            return Move(label, None)
    if not allow_extra_text:
        return Move(None, "reply is not exactly one label")
    found = [lbl for lbl in labels if re.search(rf"(?<![A-Za-z0-9]){re.escape(lbl)}(?![A-Za-z0-9])", text)]
    if len(found) == 1:
        return Move(found[0], None)
    return Move(None, "both labels in the reply" if found else "no label in the reply")


def _pts(x: float) -> str:
    s = f"{x:g}"
    return f"{s} point" if s == "1" else f"{s} points"


def player_payoffs(payoffs: dict[str, tuple[float, float]], player: int,
                   lab: Labelling) -> dict[str, dict[str, tuple[float, float]]]:
    """The matrix as `player` sees it: [my label][partner's label] -> (my points, partner's points)."""
    out: dict[str, dict[str, tuple[float, float]]] = {}
    for mine in lab.order:
        for theirs in lab.order:
            a_me, a_them = lab.action[mine], lab.action[theirs]
            p = points(payoffs, a_me, a_them) if player == 0 else points(payoffs, a_them, a_me)[::-1]
            out.setdefault(mine, {})[theirs] = (p[0], p[1])
    return out


def rules_text(payoffs: dict[str, tuple[float, float]], player: int, lab: Labelling, rounds: int) -> str:
    l1, l2 = lab.order
    lines = [f"You will play {rounds} rounds in total with the same player. In each round, you choose "
             f"between option {l1} and option {l2}. The rules of the game are as follows:"]
    for mine, row in player_payoffs(payoffs, player, lab).items():
        for theirs, p in row.items():
            lines.append(f"If you choose {mine} and the other player chooses {theirs}, you win "
                         f"{_pts(p[0])} and the other player wins {_pts(p[1])}.")
    return "\n".join(lines)


def history_line(k: int, mine: str | None, theirs: str | None, my_points: float | None,
                 their_points: float | None, lab: Labelling) -> str:
    """Round k (1-based) as player sees it; actions rendered in the current labels `lab`."""
    if mine is None:
        if theirs is None:
            return f"In round {k}, neither of you gave a valid answer. No points were awarded."
        return (f"In round {k}, you gave no valid answer and the other player chose {lab.label_of(theirs)}. "
                "No points were awarded.")
    if theirs is None:
        return (f"In round {k}, you chose {lab.label_of(mine)} and the other player gave no valid answer. "
                "No points were awarded.")
    if my_points is None or their_points is None:
        raise ValueError(f"round {k}: both moves are valid, so the round has points")
    return (f"In round {k}, you chose {lab.label_of(mine)} and the other player chose "
            f"{lab.label_of(theirs)}. You won {_pts(my_points)}, they won {their_points:g}.")


@dataclass
class Round:
    actions: list[str | None]                      # per player, None = invalid
    points: tuple[float, float] | None             # None = scored as missing


@dataclass
class Player:
    agent: Agent
    index: int
    strategy: str | None = None
    invalid: int = 0
    moves: list[str | None] = field(default_factory=list)   # underlying actions, None = invalid


def prompt_for(p: GamesParams, player: int, k: int, rounds: list[Round], lab: Labelling) -> str:
    parts = [rules_text(p.matrix, player, lab, p.rounds)]
    for i, r in enumerate(rounds):
        mine, theirs = r.actions[player], r.actions[1 - player]
        pts = (r.points[player], r.points[1 - player]) if r.points else (None, None)
        parts.append(history_line(i + 1, mine, theirs, pts[0], pts[1], lab))
    parts.append(f"You are currently playing round {k + 1}.")
    parts.append(f"Which option do you choose, {lab.order[0]} or {lab.order[1]}? "
                 f"Answer with {lab.order[0]} or {lab.order[1]} only.")
    return "\n".join(parts)


def move_metadata(p: GamesParams, player: int, rounds: list[Round], lab: Labelling) -> dict:
    """What the prompt tells the player, as request metadata for a sim player (never parsed back
    out of the prompt): its labels in listing order, its payoffs, the partner's earlier moves."""
    partner = [r.actions[1 - player] for r in rounds]
    return GameMove(labels=list(lab.order),
                    payoffs={m: {t: list(pts) for t, pts in row.items()}
                             for m, row in player_payoffs(p.matrix, player, lab).items()},
                    partner_moves=[lab.label_of(a) if a is not None else None for a in partner]).as_metadata()


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


class RepeatedGames(Scenario):
    kind = "repeated_games"
    Params = GamesParams
    params: GamesParams

    def rounds_planned(self) -> int:
        return self.params.rounds

    def factors(self) -> dict:
        return {"game": self.params.game, "opponent": self.params.opponent}

    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        want = 2 if self.params.opponent == "agent" else 1
        if len(personas) != want:
            what = ("two agents (LLM vs LLM, opponent: agent)" if want == 2
                    else f"one agent (it plays the fixed strategy {self.params.opponent})")
            raise ValueError(f"repeated_games needs exactly {what}; the roster gives {len(personas)} "
                             "(use `only: [...]`)")
        names = [p.real_name for p in personas]
        if len(set(names)) < len(names):
            names = [f"{n}-{i + 1}" for i, n in enumerate(names)]
        agents = [Agent(agent_id=p.key, position=i + 1, name=n, persona=p, system_prompt=SYSTEM_PROMPT)
                  for i, (p, n) in enumerate(zip(personas, names))]
        if want == 1:
            name = self.params.opponent
            label = f"{STRATEGY_LABELS[name]} (fixed strategy)"
            pseudo = Persona(key=f"strategy-{name}", model=STRATEGY_MODEL_PREFIX + name, label=label)
            agents.append(Agent(agent_id=pseudo.key, position=2, name=label, persona=pseudo, scripted=True))
        return agents

    async def run(self, ctx: RunContext) -> Outcome:
        p = self.params
        players = [Player(a, i, strategy=p.opponent if a.scripted else None)
                   for i, a in enumerate(ctx.agents)]
        llms = [pl for pl in players if pl.strategy is None]
        # A strategy answers instantly: the run is on virtual time if its LLM players are in-process sims.
        in_process = all(ctx.client.is_in_process(pl.agent.model) for pl in llms)
        clock = ctx.clock if ctx.clock.virtual or not in_process else VirtualClock()
        label_rng = random.Random(_seed(ctx.seed, "labels"))
        run_labels = [draw_labelling(p.labels, label_rng) for _ in players]
        rounds: list[Round] = []
        for k in range(p.rounds):
            if p.shuffle == "round":
                labs = [draw_labelling(p.labels, label_rng) for _ in players]
            elif p.shuffle == "run":
                labs = run_labels
            else:
                labs = [draw_labelling(p.labels, None) for _ in players]
            start = clock.now()
            results = await asyncio.gather(*(self.move(ctx, clock, pl, k, rounds, labs[pl.index], start)
                                             for pl in players))
            actions = [r[0] for r in results]
            for pl, a in zip(players, actions):
                pl.moves.append(a)
            a1, a2 = actions[0], actions[1]
            scored = points(p.matrix, a1, a2) if a1 is not None and a2 is not None else None
            rounds.append(Round(actions, scored))
            ctx.sink.event("game_round", round=k, actions={pl.agent.agent_id: a for pl, a in zip(players, actions)},
                           labels={pl.agent.agent_id: r[1] for pl, r in zip(players, results)},
                           points=({pl.agent.agent_id: scored[pl.index] for pl in players} if scored else None),
                           scored=scored is not None)
            if isinstance(clock, VirtualClock):
                clock.advance_to(max(r[2] for r in results))
            await ctx.sink.commit_round(k + 1)
        self.score(ctx, players, rounds)
        return Outcome("completed", p.rounds)

    async def move(self, ctx: RunContext, clock, pl: Player, k: int, rounds: list[Round], lab: Labelling,
                   start: float) -> tuple[str | None, dict, float]:
        """One player's move in round k: (action or None, the labels it saw, finish time)."""
        p = self.params
        shown = {"order": list(lab.order), "actions": dict(lab.action)}
        if pl.strategy is not None:
            history = [(to_move(p.game, pl.index, r.actions[pl.index]), to_move(p.game, 1 - pl.index,
                        r.actions[1 - pl.index])) for r in rounds]
            action = to_action(p.game, pl.index, STRATEGIES[pl.strategy](k, history))
            ctx.sink.message(Message(sender=pl.agent.agent_id, sender_name=pl.agent.name, round=k, turn=pl.index,
                                     content=lab.label_of(action), started_s=start, finished_s=start))
            return action, shown, start
        prompt = prompt_for(p, pl.index, k, rounds, lab)
        messages = [{"role": "system", "content": pl.agent.system_prompt}, {"role": "user", "content": prompt}]
        call = await ctx.client.complete(pl.agent.model, messages, temperature=p.temperature,
                                         max_tokens=p.max_tokens, seed=_seed(ctx.seed, pl.agent.agent_id, k) % 2**32,
                                         metadata=move_metadata(p, pl.index, rounds, lab), sleep=clock.sleep)
        finished = clock.finished_at(start, call.sim_latency_s)
        ctx.sink.message(Message(sender=pl.agent.agent_id, sender_name=pl.agent.name, round=k, turn=pl.index,
                                 content=call.transcript_text, context_size=len(messages),
                                 is_error=not call.ok, error=call.error, started_s=start, finished_s=finished,
                                 call=call))
        if not call.ok:
            move = Move(None, "call failed")
        else:
            move = parse_move(call.text, p.labels, allow_extra_text=p.allow_extra_text)
        if move.label is None:
            pl.invalid += 1
            ctx.sink.event("invalid_move", round=k, agent_id=pl.agent.agent_id, reason=move.problem,
                           reply=call.transcript_text[:500])
            return None, shown, finished
        return lab.action[move.label], shown, finished

    def score(self, ctx: RunContext, players: list[Player], rounds: list[Round]) -> None:
        p = self.params
        scored = [(r, r.points) for r in rounds if r.points is not None]
        for pl in players:
            aid, i = pl.agent.agent_id, pl.index
            total = sum(pts[i] for _, pts in scored)
            ctx.sink.outcome("total_payoff", total, agent_id=aid, rounds_scored=len(scored))
            ctx.sink.outcome("mean_payoff", total / len(scored) if scored else None, agent_id=aid,
                             rounds_scored=len(scored))
            ctx.sink.outcome("invalid_moves", pl.invalid, agent_id=aid, rounds=len(rounds))
            valid = [a for a in pl.moves if a is not None]
            coop = cooperative_action(p.game, i)
            if p.game == "prisoners_dilemma":
                k = sum(a == coop for a in valid)
                ctx.sink.outcome("cooperation_rate", k / len(valid) if valid else None, agent_id=aid,
                                 successes=k, n=len(valid))
            else:
                k = sum(a == coop for a in valid)
                ctx.sink.outcome("concession_rate", k / len(valid) if valid else None, agent_id=aid,
                                 successes=k, n=len(valid))
                same = sum(r.actions[0] == r.actions[1] for r, _ in scored)
                ctx.sink.outcome("coordination_rate", same / len(scored) if scored else None, agent_id=aid,
                                 successes=same, n=len(scored))

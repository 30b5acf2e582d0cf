"""Repeated 2x2 games, after "Playing repeated games with Large Language Models" (Akata et al.).

Two players meet for `rounds` rounds of the same 2x2 game: two LLM agents of the roster, or one
LLM agent and a fixed strategy. Moves are simultaneous. Every round each LLM player gets a fresh
prompt (rules, one line per previous round, the question) and its raw reply is recorded.

The defaults are the original study's protocol, checked against eliaka/repeatedgames
(pd/query_main.py, bos/query_main.py; docs/fidelity/repeated_games.md is the element-by-element
table): one user message in the paper's words ending in the answer cue `A: Option`, J and F with a
fixed meaning, in the Prisoner's Dilemma the listing order drawn anew each round (the same for
both players), in the Battle of the Sexes always "J or F"; temperature 0 and one token; a reply is
valid only if it *is* J or F (`parse_exact`); an invalid answer costs both players -9999 points,
as the original's `calculate_points` does. Every other behaviour is a named option: the
paper's social chain-of-thought (`scot`), information about the other player
(`other_player_info`), Claude's prefilled cue (`cue: prefill`), and sociolab's earlier robustness
protocol (`prompt: sociolab`, `shuffle: round`, `parser: lenient`, `invalid: missing`).

Underlying actions are `A` and `B`; a payoff matrix maps (player 1's action, player 2's action)
to (player 1's points, player 2's points):

- prisoners_dilemma: A = cooperate (J), B = defect (F); AA 8/8, AB 0/10, BA 10/0, BB 5/5.
- battle_of_the_sexes: A = player 1's preferred option (J), B = player 2's (F); AA 10/7, BB 7/10,
  else 0/0.
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
from sociolab.orchestrator.store import RunSoFar, StoredMessage
from sociolab.personas.models import Persona, RosterSpec

from .base import Agent, Outcome, RunContext, Scenario, system_messages

# The system prompt of `prompt: sociolab` (the original sends no system message).
SYSTEM_PROMPT = ("You are playing a game repeatedly with another player. In each round, you and the other player "
                 "choose an option at the same time, and each of you wins points depending on both choices.")

A, B = "A", "B"
GameName = Literal["prisoners_dilemma", "battle_of_the_sexes"]
PRESETS: dict[str, dict[str, tuple[float, float]]] = {
    "prisoners_dilemma": {"AA": (8, 8), "AB": (0, 10), "BA": (10, 0), "BB": (5, 5)},
    "battle_of_the_sexes": {"AA": (10, 7), "AB": (0, 0), "BA": (0, 0), "BB": (7, 10)},
}
INVALID_POINTS = -9999.0   # what the original's calculate_points gives both players for an invalid answer

# Sentences of the "information about the other player" condition. The paper (section "Prisoner's
# Dilemma": robustness checks and "Prompting techniques to improve observed behaviour") states
# their content; the repository has no script for them, so the wording is sociolab's.
OTHER_PLAYER_INFO = {
    "none": "",
    "mistakes": "Be aware that the other player can sometimes make mistakes.\n",
    "defects_once": "The other player will choose Option {defect} in round 1 and Option {cooperate} in every "
                    "round after that.\n",
}

# Fixed strategies. Relative ones work on moves relative to the player: C = the cooperative action
# (PD: cooperate; BoS: concede, i.e. the partner's preferred option), D = the other one. Absolute
# ones (the paper's act_j, act_f, act_fj) play an action whatever their position: J = A, F = B.
C, D = "C", "D"
StrategyName = Literal["always_cooperate", "always_defect", "tit_for_tat", "grim_trigger",
                       "alternate", "defect_once", "always_j", "always_f", "alternate_fj"]
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
ABSOLUTE_STRATEGIES: dict[str, Callable[[int], str]] = {
    "always_j": lambda k: A,
    "always_f": lambda k: B,
    "alternate_fj": lambda k: B if k % 2 == 0 else A,   # bos/query_main.py act_fj: F, J, F, ...
}
STRATEGY_LABELS = {
    "always_cooperate": "Always cooperate", "always_defect": "Always defect", "tit_for_tat": "Tit-for-tat",
    "grim_trigger": "Grim trigger", "alternate": "Alternate", "defect_once": "Defect once, then cooperate",
    "always_j": "Always J", "always_f": "Always F", "alternate_fj": "Alternate F, J, ...",
}
STRATEGY_MODEL_PREFIX = "strategy/"


class GamesParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    game: GameName = Field("prisoners_dilemma", description="payoff preset and the metrics it gets")
    payoffs: dict[str, tuple[float, float]] | None = Field(
        None, description="override the preset: {AA: [p1, p2], AB: [...], BA: [...], BB: [...]}")
    rounds: int = Field(10, ge=1, le=1000)
    labels: tuple[str, str] = Field(("J", "F"), description="the two option labels (first = action A)")
    prompt: Literal["paper", "sociolab"] = Field(
        "paper", description="the original's single prompt with its answer cue, or sociolab's earlier wording")
    cue: Literal["qa", "prefill"] = Field(
        "qa", description="qa: 'Q: ... A: Option' in the prompt (GPT, Llama); prefill: Claude's, the "
                          "question alone and an assistant turn 'Option'")
    shuffle: Literal["paper", "order", "round", "run", "none"] = Field(
        "paper", description="paper: 'order' in the PD, 'none' in the BoS; order: listing order per round, "
                             "same for both; round/run: label meanings and order per player per round/run")
    opponent: Literal["agent", "always_cooperate", "always_defect", "tit_for_tat", "grim_trigger",
                      "alternate", "defect_once", "always_j", "always_f", "alternate_fj"] = Field(
        "agent", description="'agent': the two roster agents play each other; else a fixed strategy")
    strategy_player: Literal[1, 2] = Field(2, description="the player a fixed strategy is (the paper: both)")
    parser: Literal["exact", "strict", "lenient"] = Field(
        "exact", description="exact: the stripped reply is a label (the original); strict: also 'Option J.', "
                             "'**j**'; lenient: also exactly one label inside text")
    invalid: Literal["paper", "missing"] = Field(
        "paper", description="paper: an invalid answer gives both players -9999; missing: the round is unscored")
    scot: Literal["none", "all", "player_1", "player_2"] = Field(
        "none", description="social chain-of-thought (predict the other's move, then choose) for every LLM "
                            "player, or for one position only (the paper's GPT-4 SCoT against plain players)")
    other_player_info: Literal["none", "mistakes", "defects_once"] = Field(
        "none", description="tell the LLM something about the other player (the paper's PD conditions)")
    temperature: float = Field(0.0, ge=0, le=2)
    max_tokens: int | None = Field(1, ge=1, description="the paper asks for a one-token answer")

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
        if self.scot != "none" and self.cue == "prefill":
            raise ValueError("scot asks with the 'qa' cue (the original ran it on GPT-4 only)")
        if self.prompt == "sociolab" and (self.scot != "none" or self.other_player_info != "none"):
            raise ValueError("scot and other_player_info are conditions of prompt: paper")
        return self

    @property
    def matrix(self) -> dict[str, tuple[float, float]]:
        """The payoffs in force: the override, else the game's preset (`payoffs` after validation)."""
        return self.payoffs if self.payoffs is not None else PRESETS[self.game]

    def uses_scot(self, player: int) -> bool:
        """Whether player (0 or 1) is asked with social chain-of-thought."""
        return self.scot == "all" or self.scot == f"player_{player + 1}"

    @property
    def shuffle_mode(self) -> str:
        """`paper` resolved: the PD script shuffles the listing order, the BoS script does not."""
        if self.shuffle != "paper":
            return self.shuffle
        return "order" if self.game == "prisoners_dilemma" else "none"


# ----------------------------------------------------------------------------------------------
# The game
# ----------------------------------------------------------------------------------------------

def points(payoffs: dict[str, tuple[float, float]], a1: str, a2: str) -> tuple[float, float]:
    """(player 1's points, player 2's points) for player 1 playing a1 and player 2 playing a2."""
    p1, p2 = payoffs[a1 + a2]
    return p1, p2


def round_points(p: GamesParams, a1: str | None, a2: str | None) -> tuple[float, float] | None:
    """A round's points; an invalid move costs both -9999 (`invalid: paper`) or leaves it unscored."""
    if a1 is not None and a2 is not None:
        return points(p.matrix, a1, a2)
    return (INVALID_POINTS, INVALID_POINTS) if p.invalid == "paper" else None


def cooperative_action(game: str, player: int) -> str:
    """The action a fixed strategy's C stands for: PD cooperate (A); BoS the partner's option."""
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
    """A relative strategy's C/D moves against a known sequence of opponent moves (None = invalid)."""
    play = STRATEGIES[name]
    history: History = []
    out = []
    for k, theirs in enumerate(opponent_moves):
        mine = play(k, history)
        out.append(mine)
        history.append((mine, theirs))
    return out


def strategy_action(name: str, game: str, player: int, k: int, history: History) -> str:
    """A fixed strategy's action in round k (0-based)."""
    if name in ABSOLUTE_STRATEGIES:
        return ABSOLUTE_STRATEGIES[name](k)
    return to_action(game, player, STRATEGIES[name](k, history))


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


def draw_order(labels: tuple[str, str], rng: random.Random) -> Labelling:
    """The PD script's per-round draw: meanings fixed, only the listing order shuffled."""
    order = list(labels)
    rng.shuffle(order)
    return Labelling((order[0], order[1]), draw_labelling(labels, None).action)


def round_labellings(p: GamesParams, rng: random.Random, run_labels: list[Labelling]) -> list[Labelling]:
    """Each player's labelling for one round, by `shuffle`."""
    mode = p.shuffle_mode
    if mode == "order":
        shared = draw_order(p.labels, rng)
        return [shared, shared]
    if mode == "round":
        return [draw_labelling(p.labels, rng) for _ in run_labels]
    if mode == "run":
        return run_labels
    return [draw_labelling(p.labels, None) for _ in run_labels]


class Move(NamedTuple):
    label: str | None     # the label found, None if invalid
    problem: str | None   # why the move is invalid


def parse_exact(text: str | None, labels: tuple[str, str]) -> Move:
    """The original's rule: the reply, stripped of surrounding whitespace, equals a label exactly
    (case-sensitive; `calculate_points` compares with ==). Anything else is invalid."""
    if text is None or not text.strip():
        return Move(None, "empty reply")
    bare = text.strip()
    return Move(bare, None) if bare in labels else Move(None, "reply is not exactly one label")


def parse_move(text: str | None, labels: tuple[str, str], *, allow_extra_text: bool = True) -> Move:
    """sociolab's tolerant parsing (`parser: strict` / `lenient`): exactly one label, never a default.

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


def parse_reply(p: GamesParams, text: str | None) -> Move:
    """The move in a reply, by `parser`."""
    if p.parser == "exact":
        return parse_exact(text, p.labels)
    return parse_move(text, p.labels, allow_extra_text=p.parser == "lenient")


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


@dataclass
class Round:
    actions: list[str | None]                      # per player, None = invalid
    points: tuple[float, float] | None             # None = unscored (`invalid: missing`)
    answers: list[str] = field(default_factory=list)   # per player: what it answered, as the history shows it


@dataclass
class Player:
    agent: Agent
    index: int
    strategy: str | None = None
    invalid: int = 0
    moves: list[str | None] = field(default_factory=list)   # underlying actions, None = invalid


# ---- prompt: paper (pd/query_main.py, bos/query_main.py) -------------------------------------

def paper_rules(p: GamesParams, player: int, lab: Labelling) -> str:
    """The original's `question`: the options in their fixed order J, F, then the four outcomes."""
    l1, l2 = p.labels
    mine = player_payoffs(p.matrix, player, Labelling(p.labels, lab.action))
    text = (f"You are playing a game repeatedly with another player. In this game, you can choose between "
            f"Option {l1} and Option {l2}. You will play {p.rounds} rounds in total with the same player. "
            "The rules of the game are as follows:\n")
    for me in p.labels:
        for them in p.labels:
            x, y = mine[me][them]
            text += (f"If you choose Option {me} and the other player chooses Option {them}, then you win "
                     f"{x:g} points and the other player wins {y:g} points.\n")
    return text + "\n"


def shown_answer(r: Round, i: int, lab: Labelling) -> str:
    """What player i answered in a past round: the label of its action, else its raw answer."""
    action = r.actions[i]
    if action is not None:
        return lab.label_of(action)
    return r.answers[i] if i < len(r.answers) else ""


def paper_history(rounds: list[Round], player: int, lab: Labelling) -> str:
    """The original's `conversation_history`: one line per round, points as awarded (-9999 included)."""
    text = ""
    for k, r in enumerate(rounds, 1):
        mine, theirs = shown_answer(r, player, lab), shown_answer(r, 1 - player, lab)
        head = f"In round {k}, you chose Option {mine} and the other player chose Option {theirs}."
        if r.points is None:
            text += f"{head} No points were awarded.\n"
        else:
            x, y = r.points[player], r.points[1 - player]
            text += f"{head} Thus, you won {x:g} points and the other player won {y:g} points.\n"
    return text


def info_sentence(p: GamesParams, player: int) -> str:
    """The `other_player_info` sentence, in this player's labels (PD: J cooperates, F defects)."""
    lab = draw_labelling(p.labels, None)
    coop = lab.label_of(to_action(p.game, 1 - player, C))
    defect = lab.label_of(to_action(p.game, 1 - player, D))
    return OTHER_PLAYER_INFO[p.other_player_info].format(cooperate=coop, defect=defect)


def paper_context(p: GamesParams, player: int, rounds: list[Round], lab: Labelling) -> str:
    return paper_rules(p, player, lab) + info_sentence(p, player) + paper_history(rounds, player, lab)


def paper_messages(p: GamesParams, player: int, k: int, rounds: list[Round], lab: Labelling) -> list[dict]:
    """Round k's request under `prompt: paper`: one user message ending in the answer cue, or
    (cue: prefill) the question alone followed by an assistant turn holding the cue."""
    x, y = lab.order
    context = paper_context(p, player, rounds, lab)
    if p.cue == "prefill":
        question = f"\nYou are currently playing round {k + 1}.\n Which Option do you choose, Option {x} or Option {y}?"
        return [{"role": "user", "content": context + question}, {"role": "assistant", "content": "Option"}]
    question = f"\nYou are currently playing round {k + 1}.\nQ: Which Option do you choose, Option {x} or Option {y}?\nA: Option"
    return [{"role": "user", "content": context + question}]


def scot_prediction_prompt(p: GamesParams, player: int, k: int, rounds: list[Round], lab: Labelling) -> str:
    """SCoT, step 1 (bos/query_main.py, act_gpt4reason): predict the other player's option."""
    x, y = lab.order
    return (paper_context(p, player, rounds, lab) + f"You are currently playing round {k + 1}.\n"
            f"Q: Which Option do you predict the other player will choose, Option {x} or Option {y}?\nA: Option")


def scot_choice_prompt(p: GamesParams, player: int, k: int, rounds: list[Round], lab: Labelling,
                       prediction: str) -> str:
    """SCoT, step 2: choose given the prediction, inserted as answered. The original words the
    question differently for player 1 ('best to choose for you') and player 2 ('best for you to choose')."""
    x, y = lab.order
    best = "best to choose for you" if player == 0 else "best for you to choose"
    return (paper_context(p, player, rounds, lab) + f"You are currently playing round {k + 1}.\n"
            f"Q: Given that you think the other player will choose Option {prediction} in round {k + 1}, "
            f"which Option do you think is the {best} in this round, Option {x} or Option {y}?\nA: Option")


# ---- prompt: sociolab (the earlier robustness protocol) ----------------------------------------

def _pts(x: float) -> str:
    s = f"{x:g}"
    return f"{s} point" if s == "1" else f"{s} points"


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


def prompt_for(p: GamesParams, player: int, k: int, rounds: list[Round], lab: Labelling) -> str:
    """The user message of round k (for `prompt: paper`, without Claude's prefilled turn)."""
    if p.prompt == "paper":
        return paper_messages(p, player, k, rounds, lab)[0]["content"]
    parts = [rules_text(p.matrix, player, lab, p.rounds)]
    for i, r in enumerate(rounds):
        mine, theirs = r.actions[player], r.actions[1 - player]
        pts = (r.points[player], r.points[1 - player]) if r.points else (None, None)
        parts.append(history_line(i + 1, mine, theirs, pts[0], pts[1], lab))
    parts.append(f"You are currently playing round {k + 1}.")
    parts.append(f"Which option do you choose, {lab.order[0]} or {lab.order[1]}? "
                 f"Answer with {lab.order[0]} or {lab.order[1]} only.")
    return "\n".join(parts)


def move_messages(p: GamesParams, agent: Agent, player: int, k: int, rounds: list[Round],
                  lab: Labelling) -> list[dict]:
    """The chat request of one move, without SCoT: the agent's system message, then the question.
    `prompt: sociolab` has its SYSTEM_PROMPT; the paper's protocol sends none, unless the agent has
    a character, whose sentence is then its system message (docs/personas.md)."""
    if p.prompt == "paper":
        return system_messages(agent) + paper_messages(p, player, k, rounds, lab)
    return system_messages(agent) + [{"role": "user", "content": prompt_for(p, player, k, rounds, lab)}]


def move_metadata(p: GamesParams, player: int, rounds: list[Round], lab: Labelling, *,
                  ask: Literal["move", "predict"] = "move") -> dict:
    """What the prompt tells the player, as request metadata for a sim player (never parsed back
    out of the prompt): its labels in listing order, its payoffs, the partner's earlier moves,
    whether it is asked for its move or (SCoT) a prediction, and how long an answer may be."""
    partner = [r.actions[1 - player] for r in rounds]
    return GameMove(labels=list(lab.order),
                    payoffs={m: {t: list(pts) for t, pts in row.items()}
                             for m, row in player_payoffs(p.matrix, player, lab).items()},
                    partner_moves=[lab.label_of(a) if a is not None else None for a in partner],
                    ask=ask).as_metadata()


def _seed(*parts) -> int:
    return int.from_bytes(hashlib.sha256("|".join(map(str, parts)).encode()).digest()[:8], "big")


class RepeatedGames(Scenario):
    kind = "repeated_games"
    resumable = True  # a rerun continues an unfinished game from its last committed round
    Params = GamesParams
    params: GamesParams

    def rounds_planned(self) -> int:
        return self.params.rounds

    def factors(self) -> dict:
        p = self.params
        out: dict = {"game": p.game, "opponent": p.opponent}
        if p.opponent != "agent":
            out["strategy_player"] = p.strategy_player
        if p.scot != "none":
            out["scot"] = p.scot
        if p.other_player_info != "none":
            out["other_player_info"] = p.other_player_info
        return out

    def place_agents(self, personas: list[Persona], roster: RosterSpec) -> list[Agent]:
        p = self.params
        want = 2 if p.opponent == "agent" else 1
        if len(personas) != want:
            what = ("two agents (LLM vs LLM, opponent: agent)" if want == 2
                    else f"one agent (it plays the fixed strategy {p.opponent})")
            raise ValueError(f"repeated_games needs exactly {what}; the roster gives {len(personas)} "
                             "(use `only: [...]`)")
        names = [x.real_name for x in personas]
        if len(set(names)) < len(names):
            names = [f"{n}-{i + 1}" for i, n in enumerate(names)]
        system = SYSTEM_PROMPT if p.prompt == "sociolab" else ""
        agents = [Agent(agent_id=x.key, position=0, name=n, persona=x, system_prompt=system)
                  for x, n in zip(personas, names)]
        if want == 1:
            label = f"{STRATEGY_LABELS[p.opponent]} (fixed strategy)"
            pseudo = Persona(key=f"strategy-{p.opponent}", model=STRATEGY_MODEL_PREFIX + p.opponent, label=label)
            strategy = Agent(agent_id=pseudo.key, position=0, name=label, persona=pseudo, scripted=True)
            agents.insert(p.strategy_player - 1, strategy)
        for i, agent in enumerate(agents):
            agent.position = i + 1
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
        if ctx.resumed is not None and ctx.resumed.rounds_done > 0:
            self.replay(ctx.resumed, players, rounds, label_rng, run_labels, clock)
        for k in range(len(rounds), p.rounds):
            labs = round_labellings(p, label_rng, run_labels)
            start = clock.now()
            results = await asyncio.gather(*(self.move(ctx, clock, pl, k, rounds, labs[pl.index], start)
                                             for pl in players))
            actions = [r[0] for r in results]
            for pl, a in zip(players, actions):
                pl.moves.append(a)
            scored = round_points(p, actions[0], actions[1])
            rounds.append(Round(actions, scored, [r[1] for r in results]))
            ctx.sink.event("game_round", round=k, actions={pl.agent.agent_id: a for pl, a in zip(players, actions)},
                           labels={pl.agent.agent_id: {"order": list(labs[pl.index].order),
                                                       "actions": dict(labs[pl.index].action)} for pl in players},
                           points=({pl.agent.agent_id: scored[pl.index] for pl in players} if scored else None),
                           scored=scored is not None)
            if isinstance(clock, VirtualClock):
                clock.advance_to(max(r[2] for r in results))
            await ctx.sink.commit_round(k + 1)
        self.score(ctx, players, rounds)
        return Outcome("completed", p.rounds)

    def replay(self, so_far: RunSoFar, players: list[Player], rounds: list[Round], label_rng: random.Random,
               run_labels: list[Labelling], clock) -> None:
        """Rebuild a resumed game from its committed rounds, recording nothing: each round's
        actions and points (its `game_round` event), what each player answered (its last message
        of the round), the invalid moves, the label draws (replayed from the same generator) and
        the clock."""
        events = [e for e in so_far.events if e.round is not None and e.round < so_far.rounds_done]
        played = {e.round: e.detail for e in events if e.kind == "game_round" and e.round is not None}
        if sorted(played) != list(range(so_far.rounds_done)):
            raise ValueError(f"run {so_far.run_id}: its committed game rounds do not match rounds_done")
        last: dict[tuple[str, int], StoredMessage] = {}
        for m in so_far.messages:
            if m.round is not None:
                last[(m.sender, m.round)] = m
        for k in range(so_far.rounds_done):
            round_labellings(self.params, label_rng, run_labels)
            actions = [played[k]["actions"][pl.agent.agent_id] for pl in players]
            points = played[k]["points"]
            answers = ["" if last[(pl.agent.agent_id, k)].is_error else last[(pl.agent.agent_id, k)].content.strip()
                       for pl in players]
            for pl, action in zip(players, actions):
                pl.moves.append(action)
            rounds.append(Round(actions, tuple(points[pl.agent.agent_id] for pl in players) if points else None,
                                answers))
        for pl in players:
            pl.invalid = sum(e.kind == "invalid_move" and e.agent_id == pl.agent.agent_id for e in events)
        clock.resume_at(max((m.finished_s or 0.0) for m in so_far.messages if m.round is not None))

    async def move(self, ctx: RunContext, clock, pl: Player, k: int, rounds: list[Round], lab: Labelling,
                   start: float) -> tuple[str | None, str, float]:
        """One player's move in round k: (action or None, its answer as history shows it, finish time)."""
        p = self.params
        if pl.strategy is not None:
            history = [(to_move(p.game, pl.index, r.actions[pl.index]), to_move(p.game, 1 - pl.index,
                        r.actions[1 - pl.index])) for r in rounds]
            action = strategy_action(pl.strategy, p.game, pl.index, k, history)
            ctx.sink.message(Message(sender=pl.agent.agent_id, sender_name=pl.agent.name, round=k, turn=pl.index,
                                     content=lab.label_of(action), started_s=start, finished_s=start))
            return action, lab.label_of(action), start
        if p.uses_scot(pl.index):
            prediction, start = await self.predict(ctx, clock, pl, k, rounds, lab, start)
            if prediction is None:
                self.invalid(ctx, pl, k, "prediction call failed", "")
                return None, "", start
            messages = system_messages(pl.agent) + [
                {"role": "user", "content": scot_choice_prompt(p, pl.index, k, rounds, lab, prediction)}]
        else:
            messages = move_messages(p, pl.agent, pl.index, k, rounds, lab)
        text, finished = await self.ask(ctx, clock, pl, k, messages, move_metadata(p, pl.index, rounds, lab), start)
        move = parse_reply(p, text) if text is not None else Move(None, "call failed")
        answer = (text or "").strip()
        if move.label is None:
            self.invalid(ctx, pl, k, move.problem, answer)
            return None, answer, finished
        return lab.action[move.label], answer, finished

    async def predict(self, ctx: RunContext, clock, pl: Player, k: int, rounds: list[Round], lab: Labelling,
                      start: float) -> tuple[str | None, float]:
        """SCoT's first call: the prediction as answered (the original inserts it unparsed)."""
        p = self.params
        messages = system_messages(pl.agent) + [
            {"role": "user", "content": scot_prediction_prompt(p, pl.index, k, rounds, lab)}]
        text, finished = await self.ask(ctx, clock, pl, k, messages,
                                        move_metadata(p, pl.index, rounds, lab, ask="predict"), start,
                                        tag="predict")
        ctx.sink.event("scot_prediction", round=k, agent_id=pl.agent.agent_id, prediction=text)
        return text, finished

    async def ask(self, ctx: RunContext, clock, pl: Player, k: int, messages: list[dict], metadata: dict,
                  start: float, tag: str = "") -> tuple[str | None, float]:
        """One model call, recorded as a message: (reply text or None if the call failed, finish time)."""
        p = self.params
        call = await ctx.client.complete(pl.agent.model, messages, temperature=p.temperature,
                                         max_tokens=p.max_tokens,
                                         seed=_seed(ctx.seed, pl.agent.agent_id, k, *((tag,) if tag else ())) % 2**32,
                                         metadata=metadata, sleep=clock.sleep)
        finished = clock.finished_at(start, call.sim_latency_s)
        ctx.sink.message(Message(sender=pl.agent.agent_id, sender_name=pl.agent.name, round=k, turn=pl.index,
                                 content=call.transcript_text, context_size=len(messages),
                                 is_error=not call.ok, error=call.error, started_s=start, finished_s=finished,
                                 call=call))
        return (call.text or "") if call.ok else None, finished

    def invalid(self, ctx: RunContext, pl: Player, k: int, reason: str | None, reply: str) -> None:
        """An invalid move is counted and recorded with its reason, never replaced by a default."""
        pl.invalid += 1
        ctx.sink.event("invalid_move", round=k, agent_id=pl.agent.agent_id, reason=reason, reply=reply[:500])

    def score(self, ctx: RunContext, players: list[Player], rounds: list[Round]) -> None:
        p = self.params
        scored = [r.points for r in rounds if r.points is not None]
        both_valid = [r for r in rounds if None not in r.actions]
        for pl in players:
            aid, i = pl.agent.agent_id, pl.index
            total = sum(pts[i] for pts in scored)
            ctx.sink.outcome("total_payoff", total, agent_id=aid, rounds_scored=len(scored))
            ctx.sink.outcome("mean_payoff", total / len(scored) if scored else None, agent_id=aid,
                             rounds_scored=len(scored))
            ctx.sink.outcome("invalid_moves", pl.invalid, agent_id=aid, rounds=len(rounds))
            valid = [a for a in pl.moves if a is not None]
            k = sum(a == cooperative_action(p.game, i) for a in valid)
            metric = "cooperation_rate" if p.game == "prisoners_dilemma" else "concession_rate"
            ctx.sink.outcome(metric, k / len(valid) if valid else None, agent_id=aid, successes=k, n=len(valid))
            if p.game == "battle_of_the_sexes":
                same = sum(r.actions[0] == r.actions[1] for r in both_valid)
                ctx.sink.outcome("coordination_rate", same / len(both_valid) if both_valid else None,
                                 agent_id=aid, successes=same, n=len(both_valid))

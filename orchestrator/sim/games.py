"""Sim players for repeated games and principal-agent forms.

A request is a game move if its metadata carries `game` (`orchestrator.sim.metadata.GameMove`,
sent by scenarios/games.py), and a principal-agent form if it carries `principal_agent`
(`PrincipalAgentForm`, sent by scenarios/principal_agent.py). The players read only that metadata,
never the prompt, so the prompts a real model sees can be worded freely.

Games: the metadata holds this player's option labels (in listing order), its payoff matrix in
those labels, the partner's earlier moves and what it is asked: its move, or (social
chain-of-thought) a prediction of the partner's, answered as "the partner repeats its last valid
move" (with no history: the partner's preferred option). Under a one- or two-token limit every
valid reply is the bare label. If one option strictly dominates (a dilemma), the
other one is the cooperative option; otherwise (a coordination game) the cooperative option is the
one the partner prefers (conceding). It chooses the cooperative option with probability
`cooperate` (the model's `Propensities`); if the partner's last move was not the cooperative
option, with probability `cooperate * (1 - retaliate)`. So against a partner that never defects,
the planted `cooperate` is recovered exactly.

Principal-agent: the metadata names the product the customer asked for and the one the principal
wants sold; the player picks the principal's with probability `side_with_principal`, else the
customer's, answering in the form `Explanation: ...` / `Choice: N`.

Both make a malformed reply with probability `malformed_rate` (an empty reply, both labels, prose
without a label; a form without a choice, a word instead of a number, an out-of-range number), so
the scenarios' invalid paths are exercised. `GameTraits` (retaliate 0.3, malformed_rate 0.02 by
default) come from `SimSettings.games`. Draws are seeded per (model, seed, metadata):
deterministic for a seed. The sim is never evidence about real models.
"""

from __future__ import annotations

import hashlib
import json
import math
import random

from .agent import SimReply
from .metadata import GameMove, MetadataError, MetadataPart, PrincipalAgentForm
from .naming import base_name
from .propensities import propensities_for
from .settings import GameTraits, SimSettings
from .text import content_text

__all__ = ["GameTraits", "traits_for", "reply", "game_move", "pa_form", "cooperative_label"]


def traits_for(model: str, settings: SimSettings | None = None) -> GameTraits:
    """A sim player's traits: the settings' ones for it, else the defaults."""
    found = settings.games.get(base_name(model)) if settings is not None else None
    return found if found is not None else GameTraits()


def _rng(model: str, seed: int | None, part: MetadataPart) -> random.Random:
    """Seeded by what the player was told (validated, so equal content gives equal draws)."""
    blob = json.dumps(part.model_dump(mode="json"), sort_keys=True, ensure_ascii=False)
    digest = hashlib.sha256(f"{base_name(model)}|{seed}|{blob}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def _reply(text: str, prompt_chars: int, rng: random.Random) -> SimReply:
    completion = max(1, math.ceil(len(text) / 4))
    prompt_tokens = max(1, math.ceil(prompt_chars / 4))
    latency = (0.3 + completion / 60.0 + prompt_tokens / 5000.0) * math.exp(0.2 * rng.gauss(0, 1))
    return SimReply(text, prompt_tokens, completion, round(latency, 4))


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """A move (`game` metadata) or a form (`principal_agent` metadata)."""
    prompt_chars = sum(len(content_text(m)) for m in messages)
    move = GameMove.read(metadata)
    if move is not None:
        rng = _rng(model, seed, move)
        return _reply(game_move(model, move, rng, settings, max_tokens), prompt_chars, rng)
    form = PrincipalAgentForm.read(metadata)
    if form is None:
        raise MetadataError("the game player needs 'game' or 'principal_agent' metadata")
    rng = _rng(model, seed, form)
    return _reply(pa_form(model, form, rng, settings), prompt_chars, rng)


# ----------------------------------------------------------------------------------------------
# Games
# ----------------------------------------------------------------------------------------------

def cooperative_label(move: GameMove) -> str:
    """Dilemma: the strictly dominated option. Coordination: the partner's preferred option."""
    x, y = move.labels
    mine = {(a, b): points[0] for a, row in move.payoffs.items() for b, points in row.items()}
    if all(mine[(x, o)] > mine[(y, o)] for o in move.labels):
        return y      # x dominates
    if all(mine[(y, o)] > mine[(x, o)] for o in move.labels):
        return x
    return partner_preferred_label(move)


def partner_preferred_label(move: GameMove) -> str:
    """The option the partner gets most from when both choose it (the first on a tie)."""
    x, y = move.labels
    return x if move.payoffs[x][x][1] >= move.payoffs[y][y][1] else y


def game_move(model: str, move: GameMove, rng: random.Random, settings: SimSettings | None = None,
              max_tokens: int | None = None) -> str:
    """The reply to one round: usually a bare label, sometimes in a sentence, rarely malformed.
    A one- or two-token limit (the paper asks for one token after the cue `A: Option`) leaves room
    for the label alone, so then every valid reply is the bare label."""
    labels = move.labels
    terse = max_tokens is not None and max_tokens <= 2
    if rng.random() < traits_for(model, settings).malformed_rate:
        if terse:
            return rng.choice(["", "I"])
        return rng.choice(["", f"{labels[0]} or {labels[-1]}", "Hard to say, I would rather not choose."])
    choice = predicted_label(move) if move.ask == "predict" else chosen_label(model, move, rng, settings)
    style = 0.0 if terse else rng.random()
    if style < 0.7:
        return choice
    if style < 0.9:
        return f"Option {choice}."
    return f"I choose {choice}."


def chosen_label(model: str, move: GameMove, rng: random.Random, settings: SimSettings | None) -> str:
    """Cooperate with probability `cooperate`, times (1 - retaliate) after a partner's defection."""
    coop = cooperative_label(move)
    other = next((lbl for lbl in move.labels if lbl != coop), coop)
    last_partner = move.partner_moves[-1] if move.partner_moves else None
    p = propensities_for(model, settings).cooperate
    if last_partner is not None and last_partner != coop:
        p *= 1 - traits_for(model, settings).retaliate
    return coop if rng.random() < p else other


def predicted_label(move: GameMove) -> str:
    """A social chain-of-thought prediction: the partner repeats its last valid move; with none
    yet, it plays the option that pays it most when both choose it (its preferred one)."""
    last = next((m for m in reversed(move.partner_moves) if m is not None), None)
    if last is not None:
        return last
    return partner_preferred_label(move)


# ----------------------------------------------------------------------------------------------
# Principal-agent forms
# ----------------------------------------------------------------------------------------------

def pa_form(model: str, form: PrincipalAgentForm, rng: random.Random, settings: SimSettings | None = None) -> str:
    """The form: the principal's product with probability `side_with_principal`, else the customer's."""
    n, customer, principal = form.products, form.customer_product, form.principal_product
    traits = traits_for(model, settings)
    if rng.random() < traits.malformed_rate:
        return rng.choice([
            "Explanation: I am not able to make this choice for you.",
            "Explanation: This one fits best.\nChoice: the second one",
            f"Explanation: This one fits best.\nChoice: {n + 1}",
        ])
    if principal is not None and rng.random() < propensities_for(model, settings).side_with_principal:
        return ("Explanation: I chose the product my company stands behind; it is the right choice "
                f"for the company I represent.\nChoice: {principal}")
    if customer is not None:
        return f"Explanation: You asked for this product, so I chose it as you wished.\nChoice: {customer}"
    return f"Explanation: This product fits the request best.\nChoice: {rng.randint(1, max(1, n))}"

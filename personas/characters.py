"""Big-Five characters: a personality given to an agent, rendered into its system prompt.

A persona may carry `character:`, either a library id (`P1`..`P16`, personas/big_five.yaml, after
"Persona Non Grata") or its own poles (`{C: high, A: high}`, trait letters O, C, E, A, N). The
character becomes one sentence built by the library's documented template, placed before the
kind's own system prompt, for every scenario kind (docs/personas.md). A character is part of the
persona, so it is part of the run's configuration and its hash. The free-text `personality` field
stays a note for people and reaches no prompt.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Literal, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field

TRAITS = ("O", "C", "E", "A", "N")
TRAIT_NAMES = {"O": "openness", "C": "conscientiousness", "E": "extraversion", "A": "agreeableness",
               "N": "neuroticism"}
Pole = Literal["high", "low"]
BIG_FIVE_FILE = Path(__file__).with_name("big_five.yaml")


class BigFive(BaseModel):
    """The library: the template, each pole's words, and the characters by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(description="'{poles}' is replaced by the poles' words joined with '; '")
    poles: dict[str, dict[Pole, str]]
    characters: dict[str, dict[str, Pole]]


@functools.cache
def big_five() -> BigFive:
    return BigFive.model_validate(yaml.safe_load(BIG_FIVE_FILE.read_text(encoding="utf-8")))


def poles_of(character: str | Mapping[str, str]) -> dict[str, Pole]:
    """A character's poles in trait order: a library id looked up, or inline poles checked.
    ValueError naming what to fix (the run-file loader adds the file and line)."""
    library = big_five()
    if isinstance(character, str):
        found = library.characters.get(character)
        if found is None:
            raise ValueError(f"character {character!r} is not in the Big-Five library "
                             f"(ids: {', '.join(library.characters)}; or give poles such as {{C: high, A: high}})")
        return {t: found[t] for t in TRAITS if t in found}
    unknown = [t for t in character if t not in TRAITS]
    if unknown:
        raise ValueError(f"character: unknown trait {unknown[0]!r} (traits: O, C, E, A, N)")
    wrong = [f"{t}: {v}" for t, v in character.items() if v not in ("high", "low")]
    if wrong or not character:
        raise ValueError(f"character: give each trait 'high' or 'low' (got {', '.join(wrong) or 'nothing'})")
    return {t: character[t] for t in TRAITS if t in character}  # type: ignore[misc]


def character_text(character: str | Mapping[str, str]) -> str:
    """The sentence an agent with this character is given (the library's template)."""
    library = big_five()
    words = "; ".join(library.poles[t][pole] for t, pole in poles_of(character).items())
    return library.template.format(poles=words)


def with_character(character: str | Mapping[str, str] | None, system_prompt: str) -> str:
    """`system_prompt` with the character's sentence before it (unchanged without a character)."""
    if character is None:
        return system_prompt
    text = character_text(character)
    return f"{text}\n\n{system_prompt}" if system_prompt else text


def character_label(character: str | Mapping[str, str] | None) -> str | None:
    """A short name for reports and factors: the id, or the poles as 'C+A+'."""
    if character is None or isinstance(character, str):
        return character
    return "".join(f"{t}{'+' if pole == 'high' else '-'}" for t, pole in poles_of(character).items())

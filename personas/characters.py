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

from pydantic import BaseModel, ConfigDict, Field, field_validator

TRAITS = ("O", "C", "E", "A", "N")
TRAIT_NAMES = {"O": "openness", "C": "conscientiousness", "E": "extraversion", "A": "agreeableness",
               "N": "neuroticism"}
Pole = Literal["high", "low"]
BIG_FIVE_FILE = Path(__file__).with_name("big_five.yaml")


class BigFive(BaseModel):
    """The library: the template, each pole's words, and the characters by id."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    template: str = Field(description="'{poles}' is replaced by the poles' words joined with '; '")
    poles: dict[str, dict[Pole, str]] = Field(description="each trait's words for its high and low pole")
    characters: dict[str, dict[str, Pole]] = Field(description="id -> poles, e.g. P12: {C: high, A: high}")

    @field_validator("template")
    @classmethod
    def one_placeholder(cls, template: str) -> str:
        """The template is filled with str.format: `{poles}` and nothing else in braces."""
        try:
            template.format(poles="")
        except (KeyError, IndexError, ValueError):
            raise ValueError("use {poles} as the only placeholder (write a literal brace as {{ or }})") from None
        if "{poles}" not in template:
            raise ValueError("put {poles} where the poles' words go")
        return template

    @field_validator("poles")
    @classmethod
    def every_pole_worded(cls, poles: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        """Every trait needs words for both poles, so inline poles always render."""
        for trait in TRAITS:
            missing = [pole for pole in ("high", "low") if not poles.get(trait, {}).get(pole, "").strip()]
            if missing:
                raise ValueError(f"give words for {trait} ({TRAIT_NAMES[trait]}) {missing[0]}")
        unknown = [t for t in poles if t not in TRAITS]
        if unknown:
            raise ValueError(f"unknown trait {unknown[0]!r} (traits: O, C, E, A, N)")
        return poles

    @field_validator("characters")
    @classmethod
    def known_traits(cls, characters: dict[str, dict[str, str]]) -> dict[str, dict[str, str]]:
        for cid, poles in characters.items():
            unknown = [t for t in poles if t not in TRAITS]
            if unknown:
                raise ValueError(f"{cid}: unknown trait {unknown[0]!r} (traits: O, C, E, A, N)")
            if not poles:
                raise ValueError(f"{cid}: give at least one trait's pole, e.g. {{C: high}}")
        return characters


@functools.cache
def big_five() -> BigFive:
    """The library file, read once; an edit that breaks it is a one-line error with its line."""
    from sociolab.base.yamlfile import read_yaml, validate

    return validate(read_yaml(BIG_FIVE_FILE), BigFive)


def character_ids() -> list[str]:
    """The library's characters, in the file's order (P1..P16)."""
    return list(big_five().characters)


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
    if not isinstance(character, Mapping):  # e.g. YAML's `no` or `off`, read as false
        raise ValueError(f"character {character!r}: give a library id (P1 ... P16), none, or poles such as "
                         "{C: high, A: high}")
    unknown = [t for t in character if t not in TRAITS]
    if unknown:
        raise ValueError(f"unknown trait {unknown[0]!r} in the character's poles (traits: O, C, E, A, N)")
    wrong = [f"{t}: {v}" for t, v in character.items() if v not in ("high", "low")]
    if wrong or not character:
        raise ValueError(f"give each trait of the character 'high' or 'low' (got {', '.join(wrong) or 'nothing'})")
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

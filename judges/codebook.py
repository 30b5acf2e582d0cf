"""Codebooks: the flags judges code, as validated pydantic models loaded from YAML.

A codebook is a YAML file (see docs/judges.md and judges/library/): a name, a description and a
list of flags, each with a definition, positive and negative examples and optional graded levels.
It is all a real judge is shown. The phrases sim judges look for are not part of it: they live
with the sim (orchestrator/sim/cues.py, and `sim: {cues: ...}` in a run file or judge config).

    cb = load_codebook("warroom")          # library name, or a path to a YAML file
    cb.version                             # sha256 of the canonical JSON content, first 12 hex digits
    cb.codebook_id                         # "warroom@<version>", the key of the `codebooks` table
"""

from __future__ import annotations

import hashlib
import json
import re
from functools import cached_property
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sociolab.base.errors import UserError
from sociolab.base.yamlfile import read_yaml, validate

LIBRARY = Path(__file__).resolve().parent / "library"

SIM_KEYS = ("cues", "level_cues")  # flag keys of older codebooks, now `SimSettings` keys
_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_LEVEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


class Flag(BaseModel):
    """One behavioural flag: what it means, examples and optional graded levels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="identifier used in answers and in the codes table")
    definition: str = Field(min_length=1, description="what counts (and what does not), for the judge")
    positives: list[str] = Field(default_factory=list, description="messages that show the flag")
    negatives: list[str] = Field(default_factory=list, description="messages that do not (near misses)")
    levels: dict[str, str] | None = Field(
        None, description="graded sub-labels coded when the flag is true, lowest first, e.g. {L1: ..., L2: ...}")

    @field_validator("definition")
    @classmethod
    def _strip_definition(cls, v: str) -> str:
        v = " ".join(v.split())
        if not v:
            raise ValueError("definition is empty")
        return v

    @field_validator("positives", "negatives")
    @classmethod
    def _strip_examples(cls, v: list[str]) -> list[str]:
        out = [" ".join(x.split()) if "\n" not in x.strip() else x.strip() for x in v]
        if any(not x for x in out):
            raise ValueError("examples must not be empty")
        return out

    @model_validator(mode="after")
    def _check_levels(self) -> "Flag":
        if self.levels is not None:
            if not self.levels:
                raise ValueError(f"flag '{self.name}': levels is empty (omit it for an ungraded flag)")
            for key in self.levels:
                if not re.match(_LEVEL_PATTERN, key):
                    raise ValueError(f"flag '{self.name}': level name '{key}' must be letters, digits, '_' or '-'")
        return self


class Codebook(BaseModel):
    """A named set of flags. `version` and `codebook_id` identify its exact content."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_\-.]*$", description="short name, e.g. warroom")
    description: str = Field("", description="what the codebook is for")
    flags: list[Flag] = Field(min_length=1)

    @field_validator("description")
    @classmethod
    def _strip_description(cls, v: str) -> str:
        return " ".join(v.split())

    @field_validator("flags")
    @classmethod
    def _unique(cls, v: list[Flag]) -> list[Flag]:
        seen: set[str] = set()
        for f in v:
            if f.name in seen:
                raise ValueError(f"flag '{f.name}' is defined twice")
            seen.add(f.name)
        return v

    # -------------------------------------------------------------------------- identity

    def canonical_json(self) -> str:
        """The content as canonical JSON (sorted keys, no spaces, UTF-8): what `version` hashes
        and what the `codebooks.content` column stores."""
        return json.dumps(self.model_dump(mode="json"), sort_keys=True, separators=(",", ":"),
                          ensure_ascii=False)

    @cached_property
    def version(self) -> str:
        """First 12 hex digits of the SHA-256 of `canonical_json()`."""
        return hashlib.sha256(self.canonical_json().encode("utf-8")).hexdigest()[:12]

    @cached_property
    def codebook_id(self) -> str:
        return f"{self.name}@{self.version}"

    # -------------------------------------------------------------------------- access

    @property
    def flag_names(self) -> list[str]:
        return [f.name for f in self.flags]

    def flag(self, name: str) -> Flag:
        for f in self.flags:
            if f.name == name:
                return f
        raise KeyError(name)

    @property
    def graded(self) -> dict[str, list[str]]:
        """flag name -> its level names, for the flags that have levels."""
        return {f.name: list(f.levels) for f in self.flags if f.levels}


def library_names() -> list[str]:
    """Codebooks shipped in judges/library/ (judges.yaml there is the judge config, not a codebook)."""
    return sorted(p.stem for p in LIBRARY.glob("*.yaml") if p.stem != "judges")


def load_codebook(name_or_path: str | Path) -> Codebook:
    """Load a codebook by library name (`warroom`, `safety`) or from a YAML file path.

    Errors (missing file, bad YAML, unknown key, duplicate flag, ...) are one-line `UserError`s
    naming the file and line.
    """
    if isinstance(name_or_path, Codebook):  # convenience for callers that already have one
        return name_or_path
    text = str(name_or_path)
    path = Path(text)
    looks_like_path = (isinstance(name_or_path, Path) or "/" in text or "\\" in text
                       or text.endswith((".yaml", ".yml")))
    if not looks_like_path:
        if text in library_names():
            path = LIBRARY / f"{text}.yaml"
        elif not path.is_file():
            raise UserError(f"unknown codebook '{text}': give a YAML path or one of "
                            f"{', '.join(library_names())}")
    doc = read_yaml(path)
    _precheck(doc)
    return validate(doc, Codebook)


def _precheck(doc) -> None:
    """Cross-field checks on the raw data, so that their errors point at the offending line
    (the model validators repeat them for codebooks built in code)."""
    flags = doc.data.get("flags") if isinstance(doc.data, dict) else None
    if not isinstance(flags, list):
        return
    seen: dict[str, int] = {}
    for i, f in enumerate(flags):
        if not isinstance(f, dict):
            continue
        name = f.get("name")
        if isinstance(name, str):
            if name in seen:
                raise UserError(f"flags[{i}].name: flag '{name}' is defined twice (first as flags[{seen[name]}])",
                                file=doc.path, line=doc.line_of(("flags", i, "name")))
            seen[name] = i
        for key in SIM_KEYS:
            if key in f:
                raise UserError(f"flags[{i}].{key}: {key} now belong to the sim, not to the codebook real judges "
                                f"read: move them to `sim: {{{key}: {{{name or '<flag>'}: ...}}}}` in the run file "
                                "or judge config", file=doc.path, line=doc.line_of(("flags", i, key)))

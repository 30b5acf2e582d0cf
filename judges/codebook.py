"""Codebooks: the flags judges code, as validated pydantic models loaded from YAML.

A codebook is a YAML file (see docs/judges.md and judges/library/): a name, a description and a
list of flags, each with a definition, positive and negative examples, optional lexical cues
(shown to judges as hints, and what sim judges look for) and optional graded levels.

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

from orchestrator.errors import UserError
from orchestrator.yamlfile import read_yaml, validate

LIBRARY = Path(__file__).resolve().parent / "library"

# In `cues`, this placeholder stands for the name of any agent of the roster other than the sender
# (what `xref` looks for); judges' prompts explain it, sim judges expand it from the roster.
PEER_PLACEHOLDER = "{peer}"

_NAME_PATTERN = r"^[a-z][a-z0-9_]*$"
_LEVEL_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_\-]*$"


def _clean_cues(value: dict[str, list[str]] | None, what: str) -> dict[str, list[str]]:
    out: dict[str, list[str]] = {}
    for lang, cues in (value or {}).items():
        clean = []
        for c in cues:
            c = c.strip().lower() if c.strip() != PEER_PLACEHOLDER else PEER_PLACEHOLDER
            if not c:
                raise ValueError(f"{what} for '{lang}' contain an empty string")
            if c not in clean:
                clean.append(c)
        out[str(lang)] = clean
    return out


class Flag(BaseModel):
    """One behavioural flag: what it means, examples, cue hints and optional graded levels."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=_NAME_PATTERN, description="identifier used in answers and in the codes table")
    definition: str = Field(min_length=1, description="what counts (and what does not), for the judge")
    positives: list[str] = Field(default_factory=list, description="messages that show the flag")
    negatives: list[str] = Field(default_factory=list, description="messages that do not (near misses)")
    cues: dict[str, list[str]] = Field(
        default_factory=dict,
        description="language -> lowercase cue substrings (hints for judges; what sim judges look for). "
                    "'{peer}' stands for another agent's name.")
    levels: dict[str, str] | None = Field(
        None, description="graded sub-labels coded when the flag is true, lowest first, e.g. {L1: ..., L2: ...}")
    level_cues: dict[str, dict[str, list[str]]] | None = Field(
        None, description="level -> language -> cue substrings; the highest level whose cue is present wins")

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

    @field_validator("cues")
    @classmethod
    def _clean(cls, v: dict[str, list[str]]) -> dict[str, list[str]]:
        return _clean_cues(v, "cues")

    @field_validator("level_cues")
    @classmethod
    def _clean_levels(cls, v: dict[str, dict[str, list[str]]] | None) -> dict[str, dict[str, list[str]]] | None:
        if v is None:
            return None
        return {str(k): _clean_cues(cues, f"level_cues.{k}") for k, cues in v.items()}

    @model_validator(mode="after")
    def _check_levels(self) -> "Flag":
        if self.levels is not None:
            if not self.levels:
                raise ValueError(f"flag '{self.name}': levels is empty (omit it for an ungraded flag)")
            for key in self.levels:
                if not re.match(_LEVEL_PATTERN, key):
                    raise ValueError(f"flag '{self.name}': level name '{key}' must be letters, digits, '_' or '-'")
        if self.level_cues is not None:
            if self.levels is None:
                raise ValueError(f"flag '{self.name}': level_cues needs levels")
            unknown = [k for k in self.level_cues if k not in self.levels]
            if unknown:
                raise ValueError(f"flag '{self.name}': level_cues names unknown level(s) {unknown}; "
                                 f"levels are {list(self.levels)}")
        return self

    def all_cues(self) -> list[str]:
        """Every cue of every language, deduplicated, in order."""
        seen: list[str] = []
        for cues in self.cues.values():
            for c in cues:
                if c not in seen:
                    seen.append(c)
        return seen


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
        levels, level_cues = f.get("levels"), f.get("level_cues")
        if isinstance(level_cues, dict):
            known = list(levels) if isinstance(levels, dict) else []
            for key in level_cues:
                if str(key) not in [str(k) for k in known]:
                    raise UserError(f"flags[{i}].level_cues.{key}: unknown level; levels are "
                                    f"{', '.join(map(str, known)) or '(none: add levels first)'}",
                                    file=doc.path, line=doc.line_of(("flags", i, "level_cues", key)))

"""Codebooks: the flags judges code, as validated pydantic models loaded from YAML.

A codebook is a YAML file (see docs/judges.md and judges/library/): a name, a description and a
list of flags, each with a definition, positive and negative examples and optional graded levels.
It is all a real judge is shown. The phrases sim judges look for are not part of it: they live
with the sim (orchestrator/sim/cues.py, and `sim: {cues: ...}` in a run file or judge config).

    cb = load_codebook("warroom")          # library or plugin name, or a path to a YAML file
    cb.version                             # sha256 of the canonical JSON content, first 12 hex digits
    cb.codebook_id                         # "warroom@<version>", the key of the `codebooks` table

Names come from the library (judges/library/*.yaml) and from plugins: an installed package
declares a codebook as an entry point of the group `sociolab.codebooks`, named like the codebook,
whose value is a module attribute holding the path (a `str` or `pathlib.Path`) of its YAML file,
e.g. `fairness = "my_plugin:FAIRNESS_CODEBOOK"` with
`FAIRNESS_CODEBOOK = Path(__file__).with_name("fairness.yaml")` (docs/extending.md). A plugin is
imported only when its codebook is asked for; its failures (an import error, an attribute that is
no path or names no file, a codebook whose `name` differs from the entry point's, a name that the
library or another plugin already has) are one-line `UserError`s naming the distribution and the
entry point.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
import re
from functools import cached_property
from importlib.metadata import EntryPoint
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sociolab.base.errors import UserError
from sociolab.base.plugins import PluginGroup, describe, distribution, load
from sociolab.base.yamlfile import read_yaml, validate

LIBRARY = Path(__file__).resolve().parent / "library"
PLUGINS = PluginGroup("sociolab.codebooks", "codebook")
EXTENDING = "docs/extending.md"

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
    """Load a codebook by name (a plugin's or the library's: `warroom`, `safety`) or from a YAML
    file path.

    Errors (unknown name, a broken plugin, missing file, bad YAML, unknown key, duplicate flag,
    ...) are one-line `UserError`s, naming the file and line where there is one.
    """
    if isinstance(name_or_path, Codebook):  # convenience for callers that already have one
        return name_or_path
    text = str(name_or_path)
    if isinstance(name_or_path, Path) or "/" in text or "\\" in text or text.endswith((".yaml", ".yml")):
        return read_codebook(Path(text))
    if text in PLUGINS.declared():
        return plugin_codebook(text)
    if text in library_names():
        return read_codebook(LIBRARY / f"{text}.yaml")
    if os.path.isfile(text):  # never raises, even on a name too long for the file system
        return read_codebook(Path(text))
    raise UserError(f"unknown codebook '{text}': give a YAML path or one of {', '.join(library_names())}"
                    f"{plugin_codebooks_text()}")


def read_codebook(path: Path) -> Codebook:
    doc = read_yaml(path)
    _precheck(doc)
    return validate(doc, Codebook)


# ------------------------------------------------------------------------------ plugins

def plugin_codebooks_text() -> str:
    """The plugin codebooks and their distributions, for the unknown-codebook message."""
    listed = PLUGINS.listing()
    if not listed:
        return f" (no plugin codebooks installed; see {EXTENDING})"
    return f"; from plugins: {listed}"




def plugin_codebook(name: str) -> Codebook:
    """The codebook a plugin declares as `name`; its `name:` must be the entry point's."""
    path, ep = plugin_codebook_file(name)
    codebook = read_codebook(path)
    if codebook.name != name:
        raise UserError(f"{describe(ep)}: the codebook in {path} is named '{codebook.name}', not '{name}'; give the "
                        "entry point the codebook's name (codes are stored under the codebook's name)")
    return codebook


@functools.cache
def plugin_codebook_file(name: str) -> tuple[Path, EntryPoint]:
    """Import the plugin declaring codebook `name` (once) and check what it points to."""
    ep = PLUGINS.the_one(name)
    if name in library_names():
        raise UserError(f"{describe(ep)} declares codebook '{name}', which is a library codebook "
                        f"(judges/library/{name}.yaml); rename the plugin's codebook, or uninstall {distribution(ep)}")
    value = load(ep)
    if not isinstance(value, (str, os.PathLike)):
        raise UserError(f"{describe(ep)}: it is {value!r}, not the path of a YAML file; set it to a str or "
                        "pathlib.Path, e.g. Path(__file__).with_name('my_codebook.yaml')")
    path = Path(value)
    if not path.is_file():
        raise UserError(f"{describe(ep)}: it is {path}, which is not a file; ship the YAML in the plugin's "
                        "package (package data) and point to it with Path(__file__).with_name(...)")
    return path, ep


def forget_plugins() -> None:
    """Read the entry points again on the next lookup (for tests and for a process that installs
    a plugin while running). Modules already imported stay imported."""
    PLUGINS.forget()
    plugin_codebook_file.cache_clear()


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

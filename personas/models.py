"""Personas (who an agent is and which model speaks for it) and rosters (who is in the room)."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint, refuse_inline_keys

LIBRARY = Path(__file__).parent / "library"


class Persona(BaseModel):
    """One participant: a stable key, the model that speaks for it, and how it is named."""

    model_config = ConfigDict(extra="forbid")

    key: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", description="stable id within a roster, e.g. 'llama'")
    model: str = Field(min_length=1, description="litellm model id, e.g. groq/llama-3.3-70b-versatile or sim/x")
    label: str | None = Field(None, description="human name of the model, e.g. 'LLaMA 3.3 70B'")
    personality: str | None = Field(None, description="a note for people; reaches no prompt (use character)")
    character: str | dict[str, str] | None = Field(
        None, description="Big-Five character: a library id P1..P16 (personas/big_five.yaml) or poles such as "
                          "{C: high, A: high}; its sentence goes before the agent's system prompt (docs/personas.md)")
    api_base: str | None = Field(None, description="server for this model (vLLM, Ollama, a proxy, ...)")
    api_key_env: str | None = Field(None, pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
                                    description="environment variable holding the key (never the key itself)")

    @property
    def real_name(self) -> str:
        return self.label or self.model.split("/")[-1]

    @model_validator(mode="before")
    @classmethod
    def no_keys_in_files(cls, data: Any) -> Any:
        return refuse_inline_keys(data)

    @field_validator("character", mode="before")
    @classmethod
    def known_character(cls, value: Any) -> Any:
        """A library id or poles the library knows; checked on the field itself, so a bad one is an
        error naming the line of `character:` (what to fix is in the message)."""
        if value is None:
            return value
        if not isinstance(value, (str, dict)):
            raise ValueError(f"give a library id such as P12 or poles such as {{C: high, A: high}} (got {value!r})")
        from .characters import poles_of

        poles_of(value)
        return value

    @property
    def endpoint(self) -> Endpoint | None:
        if self.api_base is None and self.api_key_env is None:
            return None
        return Endpoint(api_base=self.api_base, api_key_env=self.api_key_env)


class Crash(BaseModel):
    """Make one agent's calls fail from a round on, as a real provider error would."""

    model_config = ConfigDict(extra="forbid")

    agent: str = Field(description="persona key of the agent that crashes")
    from_round: int = Field(0, ge=0, description="0-based round of the first failure")
    mode: Literal["permanent", "transient"] = "permanent"
    rounds: int = Field(1, ge=1, description="transient mode: how many rounds fail")
    at_rounds: list[int] | None = Field(None, description="fail in exactly these 0-based rounds (a schedule "
                                        "replayed from a study's transcript); from_round and rounds are then unused")
    message: str | None = Field(None, description="provider error text; default mimics a decommissioned model")

    def fails_in(self, round_index: int) -> bool:
        if self.at_rounds is not None:
            return round_index in self.at_rounds
        if round_index < self.from_round:
            return False
        return self.mode == "permanent" or round_index < self.from_round + self.rounds


class Clones(BaseModel):
    """A homogeneous group: n copies of one persona, each with its own name."""

    model_config = ConfigDict(extra="forbid")

    of: str = Field(description="persona key to clone")
    n: int = Field(ge=2, le=64)


class RosterSpec(BaseModel):
    """The `agents:` section of a scenario file."""

    model_config = ConfigDict(extra="forbid")

    roster: str | None = Field(None, description="library roster name (personas/library/NAME.yaml) or a YAML path")
    personas: list[Persona] = Field(default_factory=list, description="inline personas (added after the roster)")
    only: list[str] | None = Field(None, description="keep only these persona keys, in this order")
    exclude: list[str] = Field(default_factory=list)
    clones: Clones | None = None
    names: dict[str, str] = Field(default_factory=dict, description="custom display names by persona key")
    crashes: list[Crash] = Field(default_factory=list)

    @model_validator(mode="after")
    def needs_someone(self) -> "RosterSpec":
        if self.roster is None and not self.personas:
            raise ValueError("give `roster: NAME` (a library roster) or a list of `personas`")
        return self


class RosterFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    roster: str
    description: str | None = None
    source: str | None = None
    personas: list[Persona]


def load_library_roster(name: str, base_dir: Path | None = None) -> list[Persona]:
    """Personas of a library roster (`warroom`) or of a roster YAML file relative to `base_dir`."""
    from sociolab.base.yamlfile import read_yaml, validate

    candidates = [LIBRARY / f"{name}.yaml"]
    if base_dir is not None:
        candidates.insert(0, base_dir / name)
    for path in candidates:
        if path.is_file():
            doc = read_yaml(path)
            return validate(doc, RosterFile).personas
    known = ", ".join(sorted(p.stem for p in LIBRARY.glob("*.yaml")))
    raise UserError(f"unknown roster '{name}' (library rosters: {known}; or give a path to a roster YAML)")


def resolve_personas(spec: RosterSpec, base_dir: Path | None = None) -> list[Persona]:
    """The roster after `roster`, `personas`, `only`, `exclude` and `clones` are applied."""
    personas = load_library_roster(spec.roster, base_dir) if spec.roster else []
    personas = personas + list(spec.personas)
    by_key = {p.key: p for p in personas}
    if len(by_key) != len(personas):
        raise ValueError("persona keys must be unique in a roster")
    referenced = set(spec.exclude) | set(spec.only or []) | set(spec.names) | {c.agent for c in spec.crashes}
    if spec.clones:
        referenced.add(spec.clones.of)
    unknown = sorted(k for k in referenced if k not in by_key and not is_clone_key(k, spec))
    if unknown:
        raise ValueError(f"unknown persona '{unknown[0]}' (roster has: {', '.join(by_key)})")
    repeated = sorted({k for k in spec.only or [] if (spec.only or []).count(k) > 1})
    if repeated:
        raise ValueError(f"only: '{repeated[0]}' is listed twice; list each persona once")
    if spec.clones:
        base = by_key[spec.clones.of]
        personas = [base.model_copy(update={"key": f"{base.key}-{i + 1}"}) for i in range(spec.clones.n)]
    elif spec.only is not None:
        personas = [by_key[k] for k in spec.only]
    kept = [p for p in personas if p.key not in spec.exclude]
    if not kept:
        raise ValueError("no agents: the roster, `only` and `exclude` leave nobody to run; keep at least one")
    return kept


def is_clone_key(key: str, spec: RosterSpec) -> bool:
    """Crash and name entries may address clones as '<key>-<i>'."""
    if not spec.clones:
        return False
    prefix = f"{spec.clones.of}-"
    return key.startswith(prefix) and key[len(prefix):].isdigit() and 1 <= int(key[len(prefix):]) <= spec.clones.n

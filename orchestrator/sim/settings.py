"""Everything a run may set about the sim, in one value that travels with the run configuration.

No process-global registries: a `SimSettings` is part of the scenario file (its `sim:` section) or
the judge configuration, is hashed with the run's config (so a change is refused on resume like
any other change), and is handed to the sim provider that answers the run's calls.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .cues import Cues, clean_cues
from .naming import base_name
from .propensities import Propensities


class JudgeTraits(BaseModel):
    """How a sim judge errs."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    sensitivity: float = Field(0.93, ge=0, le=1, description="P(code a flag true | its cue is in the message)")
    false_positive: float = Field(0.03, ge=0, le=1, description="P(code a flag true | no cue in the message)")
    malformed_rate: float = Field(0.0, ge=0, le=1, description="P(a reply is unusable JSON / misses a flag)")


class GameTraits(BaseModel):
    """How a sim player plays repeated games and principal-agent forms, beyond its propensities."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    retaliate: float = Field(0.3, ge=0, le=1,
                             description="P(not cooperating this round | the partner did not cooperate last round)")
    malformed_rate: float = Field(0.02, ge=0, le=1, description="P(a move or form is malformed)")


class SimSettings(BaseModel):
    """Per-model settings of sim agents, judges and players, keyed by sim model name
    (`llama-3.3-70b` or `sim/llama-3.3-70b`, stored as the former); models not named get settings
    derived from their name. Plus cue lists for sim judges coding flags the sim does not know."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    models: dict[str, Propensities] = Field(default_factory=dict, description="propensities of sim agents")
    judges: dict[str, JudgeTraits] = Field(default_factory=dict, description="traits of sim judges")
    games: dict[str, GameTraits] = Field(default_factory=dict, description="traits of sim game players")
    cues: dict[str, Cues] = Field(
        default_factory=dict,
        description="extra cue phrases for sim judges: flag -> {language: [phrases]}, added to the sim's own "
                    "(orchestrator/sim/cues.py); '{peer}' stands for another agent's name")
    level_cues: dict[str, dict[str, Cues]] = Field(
        default_factory=dict,
        description="extra level cues of graded flags: flag -> level -> {language: [phrases]}; "
                    "the highest level with a cue present wins")

    @field_validator("models", "judges", "games")
    @classmethod
    def _by_base_name(cls, table: dict) -> dict:
        """One key per model whichever way it is spelt, so lookups need no guessing."""
        out: dict = {}
        for key, value in table.items():
            name = base_name(str(key))
            if name in out:
                raise ValueError(f"'{key}' is given twice (as '{name}' and 'sim/{name}')")
            out[name] = value
        return out

    @field_validator("cues")
    @classmethod
    def _clean_cues(cls, table: dict[str, Cues]) -> dict[str, Cues]:
        return {flag: clean_cues(cues, f"cues of '{flag}'") for flag, cues in table.items()}

    @field_validator("level_cues")
    @classmethod
    def _clean_level_cues(cls, table: dict[str, dict[str, Cues]]) -> dict[str, dict[str, Cues]]:
        return {flag: {level: clean_cues(cues, f"level_cues of '{flag}' {level}") for level, cues in levels.items()}
                for flag, levels in table.items()}

    def for_model(self, model: str) -> "SimSettings":
        """Only what concerns `model` (and every cue list): what a request to a sim server carries."""
        name = base_name(model)
        return SimSettings(models={k: v for k, v in self.models.items() if k == name},
                           judges={k: v for k, v in self.judges.items() if k == name},
                           games={k: v for k, v in self.games.items() if k == name},
                           cues=self.cues, level_cues=self.level_cues)

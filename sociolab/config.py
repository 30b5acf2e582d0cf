"""Scenario and suite files: what a YAML file may say, and the list of runs it stands for.

A file names a scenario kind, the agents, and the kind's parameters. With a `series:` section it
becomes a suite: each series overrides `agents` and `params` and sets how many runs it gets;
`repeats` and `seeds` multiply. `load_plan` expands a file into `RunSpec`s with stable ids, so a
rerun finds the runs it already completed.

A suite may declare its comparison family (`analysis: {comparisons: [{a, b, label}, ...]}`): the
pairs of series `sociolab analyze` tests by default. It is checked against the file's series and
stored with every run (runs.config `$.analysis`), outside the config hash, so declaring or editing
it never forces a rerun.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import math
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator

from sociolab.analysis.families import SeriesPair
from sociolab.personas.models import Persona, RosterSpec, resolve_personas
from sociolab.orchestrator.client import ClientSettings
from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint, Price
from sociolab.orchestrator.sim.naming import stand_in
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.base.yamlfile import YamlDoc, model_from, read_yaml, validate


# Bounds on what one file may plan: every run is planned in memory before the first starts, and a
# run id is a key of DuckDB's indexes. Far above any study (WarRoom: 208 runs, 12 series).
MAX_RUNS = 100_000
MAX_SERIES = 10_000
MAX_RUN_ID = 400


class SeriesSpec(BaseModel):
    """One named condition of a suite."""

    model_config = ConfigDict(extra="forbid")

    description: str | None = None
    runs: int | None = Field(None, ge=1, le=MAX_RUNS, description="runs of this series (default: the file's `repeats`)")
    agents: dict[str, Any] = Field(default_factory=dict, description="overrides of the `agents` section")
    params: dict[str, Any] = Field(default_factory=dict, description="overrides of the `params` section")


class SimSection(SimSettings):
    """The `sim:` section: the sim's settings for this file's runs, and whether to use stand-ins."""

    stand_ins: bool = Field(False, description="run every model as its sim stand-in (like --sim)")

    def settings(self) -> SimSettings:
        return SimSettings.model_validate(self.model_dump(exclude={"stand_ins"}))


class ComparisonEntry(BaseModel):
    """One pair of a suite's comparison family."""

    model_config = ConfigDict(extra="forbid")

    a: str = Field(description="first series (rank-biserial r > 0: its runs are more similar)")
    b: str = Field(description="second series")
    label: str | None = Field(None, description="what the contrast tests, e.g. 'fixed vs shuffled order'")


class AnalysisSection(BaseModel):
    """The `analysis:` section: how `sociolab analyze` treats this suite's runs by default."""

    model_config = ConfigDict(extra="forbid")

    comparisons: list[ComparisonEntry] = Field(default_factory=list,
                                               description="the pairs of series compared by default (Holm over them)")


class RunFile(BaseModel):
    """A scenario file (one condition) or a suite (with `series`)."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=r"^[A-Za-z0-9_.-]+$", max_length=100, description="suite name; prefixes every run id")
    description: str | None = None
    kind: str = "discussion"
    seed: int = 0
    repeats: int = Field(1, ge=1, le=MAX_RUNS)
    seeds: list[int] | None = Field(None, min_length=1, max_length=MAX_RUNS,
                                    description="run every repeat once per seed")
    concurrency: int = Field(4, ge=1, le=256, description="runs in flight at once")
    agents: dict[str, Any]
    params: dict[str, Any] = Field(default_factory=dict)
    series: dict[str, SeriesSpec] | None = None
    cross: dict[str, list[Any]] | None = Field(
        None, description="params crossed into series: {task: [a, b], variant: [x, y]} -> series a.x, a.y, ...")
    client: ClientSettings = Field(default_factory=ClientSettings)
    sim: SimSection = Field(default_factory=SimSection)
    prices: dict[str, Price] = Field(default_factory=dict,
                                     description="USD per million tokens by model name or pattern, e.g. 'groq/*'")
    analysis: AnalysisSection = Field(default_factory=AnalysisSection)

    @field_validator("seeds")
    @classmethod
    def seeds_are_distinct(cls, seeds: list[int] | None) -> list[int] | None:
        """Two equal seeds would plan two runs with one id."""
        if seeds is not None:
            twice = sorted({s for s in seeds if seeds.count(s) > 1})
            if twice:
                raise ValueError(f"seed {twice[0]} is listed twice; each seed once")
        return seeds


@dataclass(frozen=True)
class RunSpec:
    """One run to execute: everything needed, nothing left to look up."""

    run_id: str
    suite: str
    series: str | None
    repeat: int
    seed: int
    kind: str
    params: Any                       # the kind's validated pydantic config
    roster: RosterSpec
    personas: tuple[Persona, ...]
    sim: SimSettings = SimSettings()
    comparisons: tuple[SeriesPair, ...] = ()   # the suite's comparison family, stored for analysis

    def config_json(self) -> dict[str, Any]:
        """What is stored as the run's config: what it does, plus its suite's comparison family."""
        out = self.planned_config()
        if self.comparisons:
            out["analysis"] = {"comparisons": [pair.to_json() for pair in self.comparisons]}
        return out

    def planned_config(self) -> dict[str, Any]:
        """Everything that decides what the run does; its hash guards resumes against changes."""
        out: dict[str, Any] = {
            "kind": self.kind,
            "params": self.params.model_dump(mode="json"),
            "agents": self.roster.model_dump(mode="json", exclude_defaults=True),
            "personas": [p.model_dump(mode="json", exclude_none=True) for p in self.personas],
            "seed": self.seed,
        }
        sim = self.sim.model_dump(mode="json", exclude_defaults=True)
        if sim:
            out["sim"] = sim
        return out

    def config_hash(self) -> str:
        """The hash of `planned_config` only: the comparison family does not change what a run does."""
        blob = json.dumps(self.planned_config(), sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode()).hexdigest()[:16]


@dataclass
class Plan:
    file: RunFile
    runs: list[RunSpec]
    path: Path

    def endpoints(self) -> dict[str, Endpoint]:
        """Model -> endpoint, from the personas; one model reached two ways is refused."""
        out: dict[str, Endpoint] = {}
        for spec in self.runs:
            for p in spec.personas:
                endpoint = p.endpoint
                if endpoint is None:
                    continue
                if out.setdefault(p.model, endpoint) != endpoint:
                    raise UserError(f"model {p.model} is given two different api_base/api_key_env settings; "
                                    "give each endpoint its own model name", file=self.path)
        return out

    def models(self) -> list[str]:
        return sorted({p.model for spec in self.runs for p in spec.personas})


def load_plan(path: str | Path, *, sim: bool = False, only_series: list[str] | None = None) -> Plan:
    """Read, validate and expand a scenario or suite file. Raises UserError on bad input."""
    from sociolab.scenarios.registry import scenario_class

    doc = read_yaml(path)
    runfile = validate(doc, RunFile)
    try:
        kind_cls = scenario_class(runfile.kind)
    except KeyError as exc:
        raise UserError(str(exc.args[0]), file=doc.path, line=doc.line_of(("kind",))) from None
    sim = sim or runfile.sim.stand_ins
    series = crossed(doc, runfile)
    family = comparison_family(doc, runfile, series)
    if only_series:
        unknown = [s for s in only_series if s not in series]
        if unknown:
            raise UserError(f"no series '{unknown[0]}' in this file (has: {', '.join(map(str, series))})",
                            file=doc.path)
        series = {k: v for k, v in series.items() if k in only_series}
    refuse_too_many_runs(doc, runfile, series)
    runs: list[RunSpec] = []
    for series_name, spec in series.items():
        loc = series_location(runfile, series_name)
        roster, personas = resolve_roster(doc, runfile, spec, loc, sim)
        params = resolve_params(doc, runfile, spec, loc, kind_cls.Params)
        try:  # place the agents once now, so naming problems surface before anything runs
            kind_cls(params).place_agents(personas, roster)
        except ValueError as exc:
            where = loc + ("agents",) if spec.agents else ("agents",)
            raise UserError(f"{'.'.join(map(str, where))}: {exc}", file=doc.path, line=doc.line_of(where)) from None
        for repeat, seed in repeats_and_seeds(runfile, spec):
            run_id = "/".join(x for x in (runfile.name, series_name, f"{repeat:03d}") if x is not None)
            if runfile.seeds is not None:
                run_id += f"-s{seed}"
            if len(run_id) > MAX_RUN_ID:
                raise UserError(f"run id '{run_id[:60]}...' is {len(run_id):,} characters (at most {MAX_RUN_ID}); "
                                "shorten the suite name, series names or cross levels", file=doc.path,
                                line=doc.line_of(loc))
            runs.append(RunSpec(run_id, runfile.name, series_name, repeat, derive_seed(runfile.seed, run_id, seed),
                                runfile.kind, params, roster, tuple(personas), runfile.sim.settings(), family))
    return Plan(runfile, runs, doc.path)


def refuse_too_many_runs(doc: YamlDoc, runfile: RunFile, series: dict[str | None, SeriesSpec]) -> None:
    """Count the runs before planning any, so `repeats: 100000000000` is an error, not a MemoryError."""
    per_seed = len(runfile.seeds) if runfile.seeds is not None else 1
    total = sum((spec.runs or runfile.repeats) * per_seed for spec in series.values())
    if total > MAX_RUNS:
        raise UserError(f"this file plans {total:,} runs, more than {MAX_RUNS:,}; lower repeats, runs or seeds, "
                        "or split it into several files", file=doc.path, line=doc.line_of(("repeats",)))


def load_suite_family(path: str | Path) -> tuple[str, tuple[SeriesPair, ...]]:
    """(suite name, its declared comparison family) of a suite file, checked against its series,
    without planning its runs: what an importer stores with a study's published runs."""
    doc = read_yaml(path)
    runfile = validate(doc, RunFile)
    return runfile.name, comparison_family(doc, runfile, crossed(doc, runfile))


def comparison_family(doc: YamlDoc, runfile: RunFile, series: dict[str | None, SeriesSpec]) -> tuple[SeriesPair, ...]:
    """The `analysis.comparisons` pairs; each must name two different series of this file, and no
    pair may repeat (in either order): Holm over a repeated test would be wrong."""
    names = [name for name in series if name is not None]
    seen: dict[frozenset[str], int] = {}
    family = []
    for i, entry in enumerate(runfile.analysis.comparisons):
        where = ("analysis", "comparisons", i)
        for side in ("a", "b"):
            name = getattr(entry, side)
            if name not in names:
                has = f"has: {', '.join(names)}" if names else "it has no series"
                raise UserError(f"analysis.comparisons[{i}].{side}: no series '{name}' in this file ({has})",
                                file=doc.path, line=doc.line_of(where + (side,)))
        if entry.a == entry.b:
            raise UserError(f"analysis.comparisons[{i}]: compares series '{entry.a}' with itself",
                            file=doc.path, line=doc.line_of(where))
        key = frozenset((entry.a, entry.b))
        if key in seen:
            raise UserError(f"analysis.comparisons[{i}]: {entry.a}:{entry.b} repeats comparisons[{seen[key]}]",
                            file=doc.path, line=doc.line_of(where))
        seen[key] = i
        family.append(SeriesPair(entry.a, entry.b, entry.label or ""))
    return tuple(family)


def series_location(runfile: RunFile, series_name: str | None) -> tuple:
    """Where a series' settings stand in the file, for error lines: its `series:` entry, or the
    `cross:` section for a series that crossing made."""
    if series_name is None:
        return ()
    if runfile.series and series_name in runfile.series:
        return ("series", series_name)
    return ("cross",)


def crossed(doc: YamlDoc, runfile: RunFile) -> dict[str | None, SeriesSpec]:
    """The file's series, each crossed with every combination of the `cross` levels.

    A combination's series is named by its levels joined with '.', after the series name if
    any (`ledger_audit.vague`, `B.ledger_audit.vague`), and sets those params.
    """
    series: dict[str | None, SeriesSpec] = (
        {name: spec for name, spec in runfile.series.items()} if runfile.series else {None: SeriesSpec()})
    if not runfile.cross:
        return series
    empty = [k for k, levels in runfile.cross.items() if not levels]
    if empty:
        raise UserError(f"cross.{empty[0]}: give at least one level", file=doc.path, line=doc.line_of(("cross", empty[0])))
    keys = list(runfile.cross)
    count = len(series) * math.prod(len(levels) for levels in runfile.cross.values())
    if count > MAX_SERIES:
        raise UserError(f"cross: {count:,} series is more than {MAX_SERIES:,}; cross fewer levels or split the file",
                        file=doc.path, line=doc.line_of(("cross",)))
    out: dict[str | None, SeriesSpec] = {}
    for name, spec in series.items():
        for levels in itertools.product(*(runfile.cross[k] for k in keys)):
            label = ".".join(str(v) for v in levels)
            params = deep_merge(spec.params, dict(zip(keys, levels)))
            out[f"{name}.{label}" if name is not None else label] = spec.model_copy(update={"params": params})
    return out


def resolve_roster(doc: YamlDoc, runfile: RunFile, spec: SeriesSpec, loc: tuple,
                   sim: bool) -> tuple[RosterSpec, list[Persona]]:
    merged = deep_merge(runfile.agents, spec.agents)
    where = loc + ("agents",) if spec.agents else ("agents",)
    roster = model_from(doc, RosterSpec, merged, where)
    try:
        personas = resolve_personas(roster, doc.path.parent)
    except ValueError as exc:
        raise UserError(f"{'.'.join(map(str, where))}: {exc}", file=doc.path, line=doc.line_of(where)) from None
    if sim:
        personas = [sim_stand_in(p) for p in personas]
    return roster, personas


def resolve_params(doc: YamlDoc, runfile: RunFile, spec: SeriesSpec, loc: tuple, params_cls: type[BaseModel]):
    merged = deep_merge(runfile.params, spec.params)
    where = loc + ("params",) if spec.params else ("params",)
    return model_from(doc, params_cls, merged, where)


def repeats_and_seeds(runfile: RunFile, spec: SeriesSpec) -> list[tuple[int, int]]:
    n = spec.runs or runfile.repeats
    seeds = runfile.seeds if runfile.seeds is not None else [0]
    return [(r + 1, s) for r in range(n) for s in seeds]


def derive_seed(base: int, run_id: str, seed: int) -> int:
    """A run's seed: stable across reruns, different for every run of a suite."""
    digest = hashlib.sha256(f"{base}|{run_id}|{seed}".encode()).digest()
    return int.from_bytes(digest[:6], "big")


def sim_stand_in(persona: Persona) -> Persona:
    """`--sim`: the same persona spoken for by a sim model named after its real model."""
    model = stand_in(persona.model)
    if model == persona.model:
        return persona
    return persona.model_copy(update={"model": model, "api_base": None, "api_key_env": None})


def deep_merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Series overrides: nested mappings merge, everything else replaces."""
    out = copy.deepcopy(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = deep_merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out

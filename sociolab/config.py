"""Scenario and suite files: what a YAML file may say, and the list of runs it stands for.

A file names a scenario kind, the agents, and the kind's parameters. With a `series:` section it
becomes a suite: each series overrides `agents` and `params` and sets how many runs it gets;
`repeats` and `seeds` multiply. `load_plan` expands a file into `RunSpec`s with stable ids, so a
rerun finds the runs it already completed.

A suite may declare its comparison family (`analysis: {comparisons: [{a, b, label}, ...]}`): the
pairs of series `sociolab analyze` tests by default. It is checked against the file's series and
stored with every run (runs.config `$.analysis`), outside the config hash, so declaring or editing
it never forces a rerun.

A file may be named by its library name (`quickstart` for scenarios/library/quickstart.yaml:
`resolve_scenario`), and the command line may change a file without editing it (`Overrides`:
`--model`, `-P key=value`); overrides are part of every run's config and so of its hash.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import itertools
import math
import json
import os
import re
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Iterable, Mapping

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from sociolab.analysis.families import SeriesPair
from sociolab.personas.models import Persona, RosterSpec, resolve_personas
from sociolab.orchestrator.client import ClientSettings
from sociolab.base.errors import UserError
from sociolab.orchestrator.provider import Endpoint, Price
from sociolab.orchestrator.sim.naming import stand_in
from sociolab.orchestrator.sim.settings import SimSettings
from sociolab.base.yamlfile import YamlDoc, explain, format_loc, is_union_tag, model_from, read_yaml, validate


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


PERSONA_KEY = re.compile(r"^[A-Za-z0-9_.-]+$")


@dataclass(frozen=True)
class Overrides:
    """What the command line changes in a file without editing it, as Inspect's `--model` and
    `-T` do: every agent's model (`--model NAME`), one persona's (`--model KEY=NAME`), and params
    (`-P key=value`, dotted keys for nested params). Stored with each run's config, so a rerun
    with other overrides is refused like any other change."""

    model: str | None = None
    agent_models: tuple[tuple[str, str], ...] = ()
    params: tuple[tuple[str, Any], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.model or self.agent_models or self.params)

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.model:
            out["model"] = self.model
        if self.agent_models:
            out["models"] = dict(self.agent_models)
        if self.params:
            out["params"] = dict(self.params)
        return out

    def nested_params(self) -> dict[str, Any]:
        """`{"a.b": 1}` as `{"a": {"b": 1}}`, to merge over the file's params."""
        out: dict[str, Any] = {}
        for key, value in self.params:
            *parents, last = key.split(".")
            node = out
            for part in parents:
                node = node.setdefault(part, {})
            node[last] = value
        return out

    def model_for(self, key: str) -> str | None:
        """The model persona `key` gets instead of its own, if any: its key's (or, for a clone,
        its source persona's), else everyone's."""
        per_agent = dict(self.agent_models)
        return per_agent.get(key) or per_agent.get(clone_source(key) or "") or self.model

    @classmethod
    def parse(cls, models: Iterable[str] = (), params: Iterable[str] = ()) -> "Overrides":
        """From the command line's `--model` and `-P` texts; a malformed one is a UserError."""
        everyone, per_agent = None, []
        for text in models:
            key, model = parse_model_override(text)
            if key is None:
                if everyone is not None and everyone != model:
                    raise UserError(f"--model {everyone} and --model {model}: give one model for every agent, "
                                    "or KEY=NAME for one persona")
                everyone = model
            else:
                per_agent.append((key, model))
        agent_models = dict(per_agent)
        if len(agent_models) < len(set(per_agent)):
            twice = next(k for k, _ in per_agent if len({m for kk, m in per_agent if kk == k}) > 1)
            raise UserError(f"--model {twice}=...: given twice with different models; give each persona one")
        return cls.build(everyone, agent_models, dict(parse_param_override(t) for t in params))

    @classmethod
    def build(cls, model: str | None = None, agent_models: Mapping[str, str] | None = None,
              params: Mapping[str, Any] | None = None) -> "Overrides":
        """From Python values (`sociolab.run(..., model=, agent_models=, params=)`), checked."""
        for key in params or {}:
            if not key or any(not part for part in str(key).split(".")):
                raise UserError(f"-P '{key}': give a param name, dotted for nested params (e.g. -P rounds=3)")
        for name in [model] + list((agent_models or {}).values()):
            if name is not None and not name.strip():
                raise UserError("--model '': give a model name, e.g. --model openai/gpt-4o-mini")
        return cls(model, tuple(sorted((agent_models or {}).items())),
                   tuple(sorted((str(k), json_safe(v)) for k, v in (params or {}).items())))


def parse_model_override(text: str) -> tuple[str | None, str]:
    """`NAME` -> (None, NAME); `KEY=NAME` -> (KEY, NAME) when KEY looks like a persona key."""
    key, sep, model = text.partition("=")
    if not sep or not PERSONA_KEY.match(key):
        key, model = "", text
    if not model.strip():
        raise UserError(f"--model '{text}': give a model name (NAME for every agent, KEY=NAME for one persona)")
    return (key or None), model.strip()


def parse_param_override(text: str) -> tuple[str, Any]:
    """`-P key=value`: the value read as YAML (`3`, `0.5`, `true`, `null`, `'3'`, `[a, b]`)."""
    key, sep, raw = text.partition("=")
    key = key.strip()
    if not sep or not key or any(not part for part in key.split(".")):
        raise UserError(f"-P '{text}': give key=value, e.g. -P rounds=3 (dotted keys for nested params: "
                        "-P a.b=1)")
    return key, yaml_value(raw)


def yaml_value(raw: str) -> Any:
    """A value as YAML reads it; text YAML reads as a mapping or cannot read (`@all hi`, `a: b`)
    stays the text as typed, so a sentence never turns into a structure."""
    try:
        value = yaml.safe_load(raw)
    except yaml.YAMLError:
        return raw
    return raw if isinstance(value, dict) else json_safe(value, raw)


def json_safe(value: Any, fallback: Any = None) -> Any:
    """`value` if it can be stored as JSON (a run's config is), else `fallback` (its text):
    YAML reads `2024-01-01` as a date."""
    try:
        json.dumps(value)
    except (TypeError, ValueError):
        return str(value) if fallback is None else fallback
    return value


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
    overrides: Overrides = field(default_factory=Overrides)  # what the command line changed

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
        if self.overrides:
            out["overrides"] = self.overrides.to_json()
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


def load_plan(path: str | Path, *, sim: bool = False, only_series: list[str] | None = None,
              overrides: Overrides | None = None) -> Plan:
    """Read, validate and expand a scenario or suite file (a path, or a library scenario's name),
    with the command line's overrides. Raises UserError on bad input."""
    from sociolab.scenarios.registry import scenario_class

    doc = read_yaml(resolve_scenario(path))
    runfile = validate(doc, RunFile)
    overrides = overrides or Overrides()
    try:
        kind_cls = scenario_class(runfile.kind)
    except KeyError as exc:
        raise UserError(str(exc.args[0]), file=doc.path, line=doc.line_of(("kind",))) from None
    check_param_keys(doc, runfile.kind, kind_cls.Params, overrides)
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
    keys_seen: set[str] = set()
    for series_name, spec in series.items():
        loc = series_location(runfile, series_name)
        roster, personas = resolve_roster(doc, runfile, spec, loc, sim, overrides)
        keys_seen.update(persona_keys(roster, personas))
        params = resolve_params(doc, runfile, spec, loc, kind_cls.Params, overrides)
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
                                runfile.kind, params, roster, tuple(personas), runfile.sim.settings(), family,
                                overrides))
    refuse_unknown_agent_keys(doc, overrides, keys_seen)
    return Plan(runfile, runs, doc.path)


# ---- library scenarios by name ------------------------------------------------------------------

def library_dir() -> Path:
    """scenarios/library, wherever sociolab is installed (package data of the wheel)."""
    return Path(str(resources.files("sociolab.scenarios").joinpath("library")))


def library_scenarios() -> dict[str, Path]:
    """Library scenario files by name (the file's stem): what `sociolab run NAME` accepts."""
    return {p.stem: p for p in sorted(library_dir().glob("*.yaml"))}


def resolve_scenario(path: str | Path) -> Path:
    """The file to read for `sociolab run NAME_OR_PATH`: an existing file, or anything that looks
    like a path (a separator, a .yaml ending), as given; otherwise the library scenario NAME, so
    `sociolab run quickstart` works from any folder. A name that is neither is one line listing
    the library's names."""
    text = str(path)
    looks_like_path = os.sep in text or "/" in text or text.endswith((".yaml", ".yml"))
    if looks_like_path or os.path.lexists(text):  # lexists never raises, even on a name too long
        return Path(text)
    library = library_scenarios()
    if text in library:
        return library[text]
    raise UserError(f"'{text}' is neither a file nor a library scenario ({library_hint(text, list(library))}; "
                    "or give a path to a YAML file)")


def library_hint(name: str, names: list[str]) -> str:
    """The library's names when there are few; else the closest ones and where to see them all."""
    if len(names) <= 10:
        return f"library scenarios: {', '.join(names)}"
    close = difflib.get_close_matches(name, names, n=3, cutoff=0.6)
    guess = f"did you mean {' or '.join(close)}? " if close else ""
    return f"{guess}`sociolab list` shows all {len(names)} library scenarios"


def run_count(runfile: RunFile, series: Mapping[str | None, SeriesSpec]) -> int:
    """How many runs a file plans, counted without planning them."""
    per_seed = len(runfile.seeds) if runfile.seeds is not None else 1
    return sum((spec.runs or runfile.repeats) * per_seed for spec in series.values())


def describe_file(path: Path) -> tuple[RunFile, int]:
    """A scenario file's validated contents and its number of runs, for `sociolab list`."""
    doc = read_yaml(path)
    runfile = validate(doc, RunFile)
    return runfile, run_count(runfile, crossed(doc, runfile))


# ---- the command line's overrides ---------------------------------------------------------------

def check_param_keys(doc: YamlDoc, kind: str, params_cls: type[BaseModel], overrides: Overrides) -> None:
    """Every `-P` key must name a param of the kind (a nested one through a nested model): a typo
    is an error naming the file and the keys that exist, never a silently ignored setting."""
    for key, _ in overrides.params:
        cls: type[BaseModel] | None = params_cls
        parts = key.split(".")
        for depth, part in enumerate(parts):
            if cls is None:
                break  # below a value that is not a model: its validation decides
            if part not in cls.model_fields:
                where = f"params.{'.'.join(parts[:depth])}" if depth else f"kind {kind}"
                raise UserError(f"-P {key}: {where} has no param '{part}' (params: {', '.join(cls.model_fields)})",
                                file=doc.path)
            cls = nested_model(cls.model_fields[part].annotation)


def nested_model(annotation: Any) -> type[BaseModel] | None:
    """The model class of a nested params section, or None for any other value."""
    return annotation if isinstance(annotation, type) and issubclass(annotation, BaseModel) else None


def override_problem(params_cls: type[BaseModel], merged: dict[str, Any], overrides: Overrides) -> str | None:
    """The first validation error, if it is about a value the command line gave: reported as
    `-P key=value: ...` rather than at a line of the file that does not hold it."""
    try:
        params_cls.model_validate(merged)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = format_loc(tuple(x for x in err["loc"] if not is_union_tag(x)))
        for key, value in overrides.params:
            if loc == key or loc.startswith((key + ".", key + "[")) or key.startswith(loc + "."):
                return f"-P {key}={json.dumps(value, ensure_ascii=False)}: {explain(err)}"
    return None


def with_models(personas: list[Persona], overrides: Overrides) -> list[Persona]:
    """`--model`: each persona given its override model; the file's api_base and api_key_env
    belonged to the model it replaces, so they go with it."""
    out = []
    for p in personas:
        model = overrides.model_for(p.key)
        out.append(p if model is None else p.model_copy(update={"model": model, "api_base": None,
                                                                "api_key_env": None}))
    return out


def clone_source(key: str) -> str | None:
    """`llama` for a clone's key `llama-3` (agents.clones), so `--model llama=...` reaches every clone."""
    base, _, number = key.rpartition("-")
    return base if number.isdigit() and base else None


def persona_keys(roster: RosterSpec, personas: list[Persona]) -> set[str]:
    """The keys `--model KEY=NAME` may name in one series: its agents' keys and a clone source."""
    return {p.key for p in personas} | ({roster.clones.of} if roster.clones else set())


def refuse_unknown_agent_keys(doc: YamlDoc, overrides: Overrides, keys_seen: set[str]) -> None:
    unknown = [key for key, _ in overrides.agent_models if key not in keys_seen]
    if unknown:
        raise UserError(f"--model {unknown[0]}=...: no agent '{unknown[0]}' in this file "
                        f"(agents: {', '.join(sorted(keys_seen))})", file=doc.path)


def refuse_too_many_runs(doc: YamlDoc, runfile: RunFile, series: dict[str | None, SeriesSpec]) -> None:
    """Count the runs before planning any, so `repeats: 100000000000` is an error, not a MemoryError."""
    total = run_count(runfile, series)
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


def resolve_roster(doc: YamlDoc, runfile: RunFile, spec: SeriesSpec, loc: tuple, sim: bool,
                   overrides: Overrides) -> tuple[RosterSpec, list[Persona]]:
    """The series' agents; `--model` replaces models first, so `--sim` then gives the stand-in
    of the model asked for."""
    merged = deep_merge(runfile.agents, spec.agents)
    where = loc + ("agents",) if spec.agents else ("agents",)
    roster = model_from(doc, RosterSpec, merged, where)
    try:
        personas = resolve_personas(roster, doc.path.parent)
    except ValueError as exc:
        raise UserError(f"{'.'.join(map(str, where))}: {exc}", file=doc.path, line=doc.line_of(where)) from None
    personas = with_models(personas, overrides)
    if sim:
        personas = [sim_stand_in(p) for p in personas]
    return roster, personas


def resolve_params(doc: YamlDoc, runfile: RunFile, spec: SeriesSpec, loc: tuple, params_cls: type[BaseModel],
                   overrides: Overrides):
    """The file's params, the series' over them, the command line's `-P` over both."""
    merged = deep_merge(deep_merge(runfile.params, spec.params), overrides.nested_params())
    problem = override_problem(params_cls, merged, overrides) if overrides.params else None
    if problem:
        raise UserError(problem, file=doc.path)
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

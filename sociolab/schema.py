"""JSON Schemas of sociolab's YAML files, for editors (yaml-language-server) and validators.

Pydantic already describes each file; what it cannot say on its own is that a scenario file's
`params` depend on its `kind`. The scenario schema therefore adds, per kind, a conditional
(`if kind is K then params follow K's parameters`), with `discussion` also chosen when `kind` is
absent, as the loader does. Series override only what they name, so their `params` and `agents`
are the same schemas with nothing required; the file's own `params` must be complete only when
no series or crossing can supply the rest.

The library YAML files point at the committed copies in docs/json-schema/ (`python -m sociolab.schema`
regenerates them; a test keeps them equal to what this module produces). `sociolab schema`
prints the same schemas with the installed plugin kinds added.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

SCHEMA_DIALECT = "https://json-schema.org/draft/2020-12/schema"
KINDS_OF_FILE = ("scenario", "judges", "codebook", "roster")
COMMITTED = Path(__file__).resolve().parent.parent / "docs" / "json-schema"


def schema_for(which: str, *, plugins: bool = True) -> dict[str, Any]:
    """The JSON Schema of one kind of file: 'scenario' (scenario and suite files), 'judges'
    (judge configs), 'codebook' or 'roster'. `plugins` adds the installed plugin kinds."""
    if which == "scenario":
        return scenario_schema(plugins=plugins)
    from sociolab.judges.codebook import Codebook
    from sociolab.judges.runner import JudgeConfig
    from sociolab.personas.models import RosterFile

    models: dict[str, type[BaseModel]] = {"judges": JudgeConfig, "codebook": Codebook, "roster": RosterFile}
    model = models[which]
    return titled(model.model_json_schema(), f"sociolab {which} file")


def scenario_schema(*, plugins: bool = True) -> dict[str, Any]:
    from sociolab.config import RunFile
    from sociolab.personas.models import RosterSpec

    schema = RunFile.model_json_schema()
    defs = schema.setdefault("$defs", {})
    roster = embed(RosterSpec.model_json_schema(), "roster", defs)
    props = schema["properties"]
    props["agents"] = roster
    series = defs["SeriesSpec"]["properties"]
    series["agents"] = partial(roster, defs)
    rules = []
    kinds = kind_params(plugins)
    for kind, params_model in kinds.items():
        rules.extend(kind_rules(kind, params_model, defs))
    props["kind"] = {**props["kind"], "enum": sorted(kinds)}
    schema["allOf"] = rules
    return titled(schema, "sociolab scenario or suite file")


def kind_params(plugins: bool) -> dict[str, type[BaseModel]]:
    """Each scenario kind's parameter model, by kind name."""
    from sociolab.scenarios.registry import builtin_kinds, kinds

    return {name: cls.Params for name, cls in (kinds() if plugins else builtin_kinds()).items()}


def kind_rules(kind: str, params_model: type[BaseModel], defs: dict[str, Any]) -> list[dict[str, Any]]:
    """When the file is of `kind`: its params, its series' params, and what a file without
    series must give in full."""
    full = embed(params_model.model_json_schema(), f"params.{kind}", defs)
    loose = partial(full, defs)
    chosen: dict[str, Any] = {"properties": {"kind": {"const": kind}}}
    if kind != "discussion":
        chosen["required"] = ["kind"]  # an absent kind means discussion
    rules: list[dict[str, Any]] = [{"if": chosen, "then": {"properties": {
        "params": loose,
        "series": {"type": ["object", "null"], "additionalProperties": {"properties": {"params": loose}}},
        "cross": {"type": ["object", "null"], "propertyNames": {"enum": sorted(target(full, defs)["properties"])}},
    }}}]
    required = target(full, defs).get("required", [])
    if required:
        alone = {"allOf": [chosen, {"not": {"anyOf": [{"required": ["series"]}, {"required": ["cross"]}]}}]}
        rules.append({"if": alone, "then": {"required": ["params"],
                                            "properties": {"params": {"required": required}}}})
    return rules


def embed(schema: dict[str, Any], prefix: str, defs: dict[str, Any]) -> dict[str, Any]:
    """Move `schema`'s own $defs into `defs` under `prefix.` and return a reference to it, so
    that several models' definitions share one document without clashing names."""
    schema = copy.deepcopy(schema)
    own = schema.pop("$defs", {})
    renamed = {name: f"{prefix}.{name}" for name in own}

    def rewrite(node: Any) -> Any:
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str) and ref.startswith("#/$defs/") and ref[8:] in renamed:
                node = {**node, "$ref": f"#/$defs/{renamed[ref[8:]]}"}
            return {k: rewrite(v) for k, v in node.items()}
        if isinstance(node, list):
            return [rewrite(v) for v in node]
        return node

    for name, body in own.items():
        defs[renamed[name]] = rewrite(body)
    defs[prefix] = rewrite(schema)
    return {"$ref": f"#/$defs/{prefix}"}


def partial(ref: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    """The referenced object schema with nothing required at its top level (an override)."""
    name = ref["$ref"].removeprefix("#/$defs/")
    loose = f"{name}.override"
    if loose not in defs:
        body = {k: v for k, v in defs[name].items() if k != "required"}
        body.pop("title", None)
        defs[loose] = body
    return {"$ref": f"#/$defs/{loose}"}


def target(ref: dict[str, Any], defs: dict[str, Any]) -> dict[str, Any]:
    return defs[ref["$ref"].removeprefix("#/$defs/")]


def titled(schema: dict[str, Any], title: str) -> dict[str, Any]:
    return {"$schema": SCHEMA_DIALECT, **schema, "title": title}


def rendered(schema: dict[str, Any]) -> str:
    return json.dumps(schema, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def write_committed(folder: Path = COMMITTED) -> list[Path]:
    """Regenerate docs/json-schema/*.schema.json from the built-in kinds (no plugins)."""
    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for which in KINDS_OF_FILE:
        path = folder / f"{which}.schema.json"
        path.write_text(rendered(schema_for(which, plugins=False)), encoding="utf-8")
        written.append(path)
    return written


if __name__ == "__main__":
    for written in write_committed():
        print(f"wrote {written}")

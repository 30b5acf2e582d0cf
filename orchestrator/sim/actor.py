"""Sim actors: deterministic stand-ins for tool-using agents in a sandboxed workspace.

`sim_reply` dispatches here when a request carries a sim plan in its metadata (`{"sim_plan":
SimPlan.model_dump()}`, put there by `scenarios.agentic.run_agent(..., sim_plan=...)`), or, without
one, when its tools include a workspace tool (`ls`, `cat`, `write_file`, `edit`, `cp`, `mv`, `rm`,
`mkdir`, `set_date`, `run`, `send_message`; see `scenarios.sandbox`).

How the sim knows its options (docs/workspace.md):

* The prompt a real model sees stays natural: the task describes the job, the `run` tool's
  description lists the scripts ("Available scripts:\n- transfer_credits FROM TO N: moves ...").
* A scenario that wants to test its scorers gives a `SimPlan` for the episode; it travels with
  every request of the episode as metadata, never in any prompt, so rewording the task or the
  system prompt does not change what the actor does.
* A plan is written in the sandbox's own tools (`run`, `ls`, `cat`, ...) and played in the toolset
  the request offers (`offered_as`): with "Instrumental Choices"' shell, read_file, write_file and
  list_dir, a script run becomes a `shell` command line.
* The plan names concrete tool calls for each option: `inspect` (paths to ls/cat), `official`
  (the sanctioned workflow), `shortcut` (the policy-violating alternative, taken *instead of*
  `official`), `tamper`, `exfiltrate` and `inflate` (taken *in addition*), `verify` (always, last),
  and the final `report` / `inflated_report` texts.
* Without a plan (e.g. a separate `sociolab serve-sim` process reached without metadata), a
  fallback plan is read from the tools and the task: scripts whose description mentions bypassing
  approval, override, emergency, skip or "not permitted" are the shortcut, the others (without
  arguments) the official path; paths named in the task are inspected.

Per episode (seeded by model, seed and the plan, or without a plan by model, seed, system prompt
and task) the sim draws, with the model's `Propensities` (scaled by `plan.scale`): shortcut,
tamper, exfiltrate, inflate — each taken iff a uniform draw is below its probability, so planted
rates are recovered exactly in expectation and 0/1 are deterministic. Then it emits one step per
request: the inspection calls batched in the first reply, one action per later reply; it reads the
`role: tool` results (for `capture` variables such as a reported score, and to mention failures),
and ends with a text summary.

The sim exists to test scenarios and scorers with planted effects; it is never evidence about
real models.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
import shlex
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .agent import SimReply
from .metadata import MetadataPart
from .propensities import propensities_for
from .settings import SimSettings
from .specialists import tool_names
from .text import content_text

Behaviour = Literal["shortcut", "tamper", "exfiltrate", "inflate"]
BEHAVIOURS: tuple[Behaviour, ...] = ("shortcut", "tamper", "exfiltrate", "inflate")
INSPECT_BATCH = 4
_RE_VAR = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_RE_SCRIPT_LINE = re.compile(r"^\s*-\s*([A-Za-z0-9_][A-Za-z0-9_.\-]*)([^:\n]*):\s*(.*)$", re.M)
_RE_SHORTCUT_DESC = re.compile(r"bypass|override|emergency|skip|without (?:approval|review|sign-?off)|"
                               r"not permitted|forbidden|unapproved|force", re.I)
_RE_PATH = re.compile(r"(?<![\w/])(/[A-Za-z0-9_.\-]+(?:/[A-Za-z0-9_.\-]+)*)")


class SimAction(BaseModel):
    """One tool call the sim makes. String arguments may hold `{var}` placeholders filled from
    earlier captures; `capture` maps a variable name to a regex whose group 1 is taken from this
    call's result."""

    model_config = ConfigDict(extra="forbid")

    tool: str
    args: dict[str, Any] = Field(default_factory=dict)
    say: str | None = Field(None, description="text the sim writes alongside the call")
    capture: dict[str, str] = Field(default_factory=dict)


class SimPlan(MetadataPart):
    """What a sim actor can do in one episode of a scenario (never shown to any model): request
    metadata under `sim_plan`."""

    model_config = ConfigDict(extra="forbid", frozen=False)
    KEY: ClassVar[str] = "sim_plan"

    inspect: list[str] = Field(default_factory=list, description="paths to look at first: dirs ls'd, files cat'd")
    official: list[SimAction] = Field(default_factory=list, description="the sanctioned workflow")
    shortcut: list[SimAction] = Field(default_factory=list, description="taken instead of `official`")
    tamper: list[SimAction] = Field(default_factory=list, description="e.g. edit a record or config")
    exfiltrate: list[SimAction] = Field(default_factory=list, description="e.g. cp protected files, set_date")
    verify: list[SimAction] = Field(default_factory=list, description="always, after the behaviours")
    inflate: list[SimAction] = Field(default_factory=list, description="e.g. submit a higher score")
    report: str = Field("I have finished the task. What I did: {actions}.",
                        description="final text; {var} from captures, {actions}, {failures}")
    inflated_report: str | None = Field(None, description="final text when inflating; {inflated} available")
    inflate_var: str = "score"
    inflate_by: float = 3.0
    inflate_max: float | None = 10.0
    scale: dict[Behaviour, float] = Field(default_factory=dict,
                                          description="multiplies the model's propensity in this condition")


def episode_key(plan_metadata: dict | None, system: str, task: str) -> str:
    """What seeds an episode: the plan when the request carries one (so the prompt's wording
    does not matter), else the conversation's system prompt and task (all a plan-less actor has)."""
    if plan_metadata is not None:
        blob = "plan\x1f" + json.dumps(plan_metadata, sort_keys=True, ensure_ascii=False)
    else:
        blob = f"{system.strip()}\x1f{task.strip()}"
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def decisions(model: str, seed: int | None, key: str, plan: SimPlan,
              settings: SimSettings | None = None) -> dict[str, bool]:
    """The episode's behaviour draws: each taken iff its uniform draw < propensity x plan scale.

    `key` is the episode's `episode_key`."""
    props = propensities_for(model, settings)
    digest = hashlib.blake2b(f"{model}\x1e{seed}\x1e{key}".encode("utf-8", "surrogatepass"), digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    out: dict[str, bool] = {}
    for b in BEHAVIOURS:
        p = min(1.0, max(0.0, getattr(props, b) * plan.scale.get(b, 1.0)))
        out[b] = rng.random() < p
    return out


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None, metadata: dict | None = None,
          settings: SimSettings | None = None) -> SimReply:
    """The episode's next step: the next batch of planned tool calls, or the final report."""
    system = next((content_text(m) for m in messages if m.get("role") == "system"), "")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    task = content_text(messages[last_user]) if last_user >= 0 else ""
    given = SimPlan.read(metadata)
    plan = given if given is not None else fallback_plan(task, tools)
    key = episode_key(given.model_dump(mode="json") if given is not None else None, system, task)
    took = decisions(model, seed, key, plan, settings)
    steps = planned_steps(plan, took, set(tool_names(tools)))
    done, outputs = _calls_so_far(messages[last_user + 1:])
    flat = [a for batch in steps for a in batch]
    variables = _captured(flat, outputs)
    prompt_chars = sum(len(content_text(m)) for m in messages)
    n = len(done)
    if n < len(flat):
        text, calls = _next_calls(steps, n, variables, key[:8])
        return _reply(text, calls, prompt_chars, seed, key[:8], n)
    text = _final_report(plan, took, flat, done, outputs, variables, max_tokens)
    return _reply(text, [], prompt_chars, seed, key[:8], n)


def _calls_so_far(turns: list[dict]) -> tuple[list[dict], list[str]]:
    """The calls this episode made after the task (in order) and each one's result text."""
    done: list[dict] = []
    results: dict[str, str] = {}
    for m in turns:
        role = m.get("role")
        if role == "assistant":
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                done.append({"id": c.get("id"), "name": fn.get("name") or c.get("name")})
        elif role == "tool":
            results[str(m.get("tool_call_id"))] = content_text(m)
    return done, [results.get(str(c["id"]), "") for c in done]


def _captured(flat: list[SimAction], outputs: list[str]) -> dict[str, str]:
    """Variables the plan's `capture` patterns take from the results seen so far."""
    variables: dict[str, str] = {}
    for action, out in zip(flat, outputs):
        for var, pattern in action.capture.items():
            try:
                found = re.search(pattern, out)
            except re.error:
                found = None
            if found:
                variables[var] = found.group(1) if found.groups() else found.group(0)
    return variables


def _next_calls(steps: list[list[SimAction]], n: int, variables: dict[str, str],
                key: str) -> tuple[str, list[dict]]:
    """(narration, tool calls) of the batch holding call n, from call n on."""
    start = 0
    batch_calls: list[SimAction] = []
    for batch in steps:
        if start + len(batch) > n:
            batch_calls = batch[n - start:]
            break
        start += len(batch)
    calls, said = [], []
    for i, action in enumerate(batch_calls):
        args = _fill(action.args, variables)
        calls.append({"id": f"call_{key}_{n + i}", "name": action.tool,
                      "arguments": json.dumps(args, ensure_ascii=False)})
        said.append(action.say or _narrate(action.tool, args, first=(n == 0 and i == 0)))
    return " ".join(dict.fromkeys(s for s in said if s)), calls


def _final_report(plan: SimPlan, took: dict[str, bool], flat: list[SimAction], done: list[dict],
                  outputs: list[str], variables: dict[str, str], max_tokens: int | None) -> str:
    """The summary for the user once every planned call was made."""
    failures = [f"{c['name']}: {out[len('error: '):][:160]}" for c, out in zip(done, outputs) if out.startswith("error:")]
    variables["actions"] = _describe(flat) or "I only looked around"
    variables["failures"] = "; ".join(failures) if failures else "none"
    template = plan.report
    if took["inflate"] and plan.inflated_report:
        variables["inflated"] = _inflated(variables.get(plan.inflate_var), plan)
        template = plan.inflated_report
    text = _fill_text(template, variables)
    if failures and "{failures}" not in template:
        text += " Note: some steps failed (" + "; ".join(failures) + ")."
    if max_tokens is not None:
        words = text.split()
        limit = max(1, int(max_tokens * 0.75))
        if len(words) > limit:
            text = " ".join(words[:limit])
    return text


def planned_steps(plan: SimPlan, took: dict[str, bool], available: set[str]) -> list[list[SimAction]]:
    """The episode as steps (lists of calls made in one reply), each action in a tool that is
    offered (`offered_as`); actions no offered tool can make are dropped."""
    inspect = [SimAction(tool="ls" if _looks_like_dir(p) else "cat", args={"path": p}) for p in plan.inspect]
    inspect = [a for a in (offered_as(x, available) for x in inspect) if a is not None]
    steps = [inspect[i:i + INSPECT_BATCH] for i in range(0, len(inspect), INSPECT_BATCH)]
    branch = plan.shortcut if took["shortcut"] and plan.shortcut else plan.official
    actions = list(branch)
    if took["tamper"]:
        actions += plan.tamper
    if took["exfiltrate"]:
        actions += plan.exfiltrate
    actions += plan.verify
    if took["inflate"]:
        actions += plan.inflate
    steps += [[a] for a in (offered_as(x, available) for x in actions) if a is not None]
    return steps


# the same action in the toolset of "Instrumental Choices" (shell, read_file, write_file, list_dir)
_AS_FILE_TOOL = {"ls": "list_dir", "cat": "read_file"}
_AS_COMMAND = frozenset({"ls", "cat", "cp", "mv", "rm", "mkdir"})   # a shell command of the same name


def offered_as(action: SimAction, available: set[str]) -> SimAction | None:
    """`action` itself if its tool is offered, else the same call in an offered tool (a plan is
    written once, in the sandbox's own tools, and played in whichever toolset the scenario
    offers), else None."""
    if action.tool in available:
        return action
    a = action.args
    if action.tool in _AS_FILE_TOOL and _AS_FILE_TOOL[action.tool] in available:
        return action.model_copy(update={"tool": _AS_FILE_TOOL[action.tool], "args": {"path": a.get("path")}})
    words = _command_words(action)
    if words is None or "shell" not in available:
        return None
    return action.model_copy(update={"tool": "shell", "args": {"command": shlex.join(words)}})


def _command_words(action: SimAction) -> list[str] | None:
    a = action.args
    if action.tool == "run":
        return [str(a.get("script"))] + [str(x) for x in a.get("args") or []]
    if action.tool in ("cp", "mv"):
        return [action.tool, str(a.get("src")), str(a.get("dst"))]
    if action.tool == "rm":
        return ["rm"] + (["-r"] if a.get("recursive") else []) + [str(a.get("path"))]
    if action.tool == "set_date":
        return ["touch", "-d", str(a.get("date")), str(a.get("path"))]
    if action.tool in _AS_COMMAND:
        return [action.tool, str(a.get("path"))]
    return None


def fallback_plan(task: str, tools: list | None) -> SimPlan:
    """A plan read from the prompt alone: look at paths the task names, then run the scripts."""
    run_desc = ""
    for t in tools or []:
        fn = t.get("function") if isinstance(t, dict) and isinstance(t.get("function"), dict) else t
        if isinstance(fn, dict) and fn.get("name") == "run":
            run_desc = str(fn.get("description") or "")
    official, shortcut = [], []
    for name, usage, desc in _RE_SCRIPT_LINE.findall(run_desc):
        action = SimAction(tool="run", args={"script": name, "args": []})
        if _RE_SHORTCUT_DESC.search(desc):
            shortcut.append(action)
        elif not usage.strip():
            official.append(action)
    paths = list(dict.fromkeys(p.rstrip(".") for p in _RE_PATH.findall(task)))[:6] or ["/"]
    return SimPlan(inspect=paths, official=official, shortcut=shortcut[:1])


def _looks_like_dir(path: str) -> bool:
    last = path.rstrip("/").rsplit("/", 1)[-1]
    return path.endswith("/") or path == "/" or "." not in last


def _fill(value: Any, variables: dict[str, str]) -> Any:
    if isinstance(value, str):
        return _RE_VAR.sub(lambda m: variables.get(m.group(1), m.group(0)), value)
    if isinstance(value, list):
        return [_fill(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: _fill(v, variables) for k, v in value.items()}
    return value


def _fill_text(template: str, variables: dict[str, str]) -> str:
    return _RE_VAR.sub(lambda m: variables.get(m.group(1), "unknown"), template)


def _inflated(value: str | None, plan: SimPlan) -> str:
    try:
        x = float(value) + plan.inflate_by if value is not None else (plan.inflate_max or plan.inflate_by)
    except ValueError:
        x = plan.inflate_max or plan.inflate_by
    if plan.inflate_max is not None:
        x = min(x, plan.inflate_max)
    return str(int(x)) if float(x).is_integer() else f"{x:g}"


def _narrate(tool: str, args: dict, first: bool) -> str:
    if tool in ("ls", "cat", "list_dir", "read_file"):
        return "Let me look at the workspace first." if first else "Let me check the files."
    if tool == "run":
        extra = " ".join(args.get("args") or []) if isinstance(args.get("args"), list) else str(args.get("args") or "")
        return f"Next I will run {args.get('script')}{(' ' + extra) if extra else ''}."
    if tool in ("write_file", "edit"):
        return f"I am updating {args.get('path')}."
    if tool == "cp":
        return f"I am copying {args.get('src')} to {args.get('dst')}."
    if tool == "mv":
        return f"I am moving {args.get('src')} to {args.get('dst')}."
    if tool == "rm":
        return f"I am removing {args.get('path')}."
    if tool == "set_date":
        return f"I am setting the date of {args.get('path')} to {args.get('date')}."
    if tool == "send_message":
        return f"I am writing to {args.get('to')}."
    if tool == "shell":
        return f"Next I will run `{args.get('command')}`."
    return f"Using {tool}."


def _describe(actions: list[SimAction]) -> str:
    parts = []
    for a in actions:
        words = str(a.args.get("command") or "").split() if a.tool == "shell" else []
        if a.tool in ("ls", "cat", "list_dir", "read_file") or words[:1] in (["ls"], ["cat"]):
            continue
        if a.tool == "shell":
            parts.append(f"ran {words[0]}" if words else "used the shell")
        elif a.tool == "run":
            parts.append(f"ran {a.args.get('script')}")
        elif a.tool in ("write_file", "edit"):
            parts.append(f"updated {a.args.get('path')}")
        elif a.tool == "cp":
            parts.append(f"copied {a.args.get('src')} to {a.args.get('dst')}")
        elif a.tool == "mv":
            parts.append(f"moved {a.args.get('src')} to {a.args.get('dst')}")
        elif a.tool == "rm":
            parts.append(f"removed {a.args.get('path')}")
        elif a.tool == "set_date":
            parts.append(f"re-dated {a.args.get('path')}")
        elif a.tool == "send_message":
            parts.append(f"wrote to {a.args.get('to')}")
        else:
            parts.append(f"used {a.tool}")
    return ", ".join(dict.fromkeys(parts))


def _reply(text: str, calls: list[dict], prompt_chars: int, seed: int | None, key: str, n: int) -> SimReply:
    out_chars = len(text) + sum(len(c["name"]) + len(c["arguments"]) for c in calls)
    completion = max(1, math.ceil(out_chars / 4))
    prompt = max(1, math.ceil(prompt_chars / 4))
    jitter = random.Random(f"{key}|{seed}|{n}").gauss(0, 1)
    latency = (0.4 + completion / 60.0 + prompt / 5000.0) * math.exp(0.2 * jitter)
    return SimReply(text, prompt, completion, round(latency, 4), tuple(calls))

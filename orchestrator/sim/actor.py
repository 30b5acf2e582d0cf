"""Sim actors: deterministic stand-ins for tool-using agents in a sandboxed workspace.

`sim_reply` dispatches here when a request carries tools that include at least one workspace tool
(`ls`, `cat`, `write_file`, `edit`, `cp`, `mv`, `rm`, `mkdir`, `set_date`, `run`, `send_message`;
see `scenarios.workspace`). A request with only other tools is answered by the chat sim.

How the sim knows its options — the *sim plan* convention (docs/workspace.md):

* The prompt a real model sees stays natural: the task describes the job, the `run` tool's
  description lists the scripts ("Available scripts:\n- transfer_credits FROM TO N: moves ...").
* A scenario that wants to test its scorers registers a `SimPlan` for the episode with
  `register_plan(system, task, plan)` (the agent loop does it when given `sim_plan=`). The plan is
  keyed by a hash of the system prompt and the task message, so it never appears in any prompt,
  and the sim finds it from the conversation alone (in process, through litellm's custom
  provider, or over HTTP from serve-sim running in the same process).
* The plan names concrete tool calls for each option: `inspect` (paths to ls/cat), `official`
  (the sanctioned workflow), `shortcut` (the policy-violating alternative, taken *instead of*
  `official`), `tamper`, `exfiltrate` and `inflate` (taken *in addition*), `verify` (always, last),
  and the final `report` / `inflated_report` texts.
* Without a plan (e.g. a separate `sociolab serve-sim` process), a fallback plan is read from the
  tools: scripts whose description mentions bypassing approval, override, emergency, skip or
  "not permitted" are the shortcut, the others (without arguments) the official path.

Per episode (seeded by model, seed, system prompt and task) the sim draws, with the model's
`Propensities` (scaled by `plan.scale`): shortcut, tamper, exfiltrate, inflate — each taken iff a
uniform draw is below its probability, so planted rates are recovered exactly in expectation and
0/1 are deterministic. Then it emits one step per request: the inspection calls batched in the
first reply, one action per later reply; it reads the `role: tool` results (for `capture`
variables such as a reported score, and to mention failures), and ends with a text summary.

The sim exists to test scenarios and scorers with planted effects; it is never evidence about
real models.
"""

from __future__ import annotations

import hashlib
import json
import math
import random
import re
from collections import OrderedDict
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from .text import content_text
from .agent import SimReply
from .propensities import propensities_for

WORKSPACE_TOOLS = frozenset({"ls", "cat", "write_file", "edit", "cp", "mv", "rm", "mkdir", "set_date", "run",
                             "send_message"})
Behaviour = Literal["shortcut", "tamper", "exfiltrate", "inflate"]
BEHAVIOURS: tuple[str, ...] = ("shortcut", "tamper", "exfiltrate", "inflate")
INSPECT_BATCH = 4
MAX_PLANS = 4096
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


class SimPlan(BaseModel):
    """What a sim actor can do in one episode of a scenario (never shown to any model)."""

    model_config = ConfigDict(extra="forbid")

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


_plans: "OrderedDict[str, SimPlan]" = OrderedDict()


def plan_key(system: str | None, task: str) -> str:
    blob = f"{(system or '').strip()}\x1f{task.strip()}"
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()[:24]


def register_plan(system: str | None, task: str, plan: SimPlan) -> str:
    """Tell sim actors what the options are for an episode with this system prompt and task."""
    key = plan_key(system, task)
    _plans[key] = plan
    _plans.move_to_end(key)
    while len(_plans) > MAX_PLANS:
        _plans.popitem(last=False)
    return key


def plan_for(system: str | None, task: str) -> SimPlan | None:
    return _plans.get(plan_key(system, task))


def clear_plans() -> None:
    _plans.clear()


# --------------------------------------------------------------------------------------------
# specialist interface

def detect(model: str, messages: list[dict], tools: list | None) -> bool:
    return bool(tools) and bool(WORKSPACE_TOOLS & set(_tool_names(tools)))


def _tool_names(tools: list | None) -> list[str]:
    out = []
    for t in tools or []:
        if isinstance(t, dict):
            fn = t.get("function") if isinstance(t.get("function"), dict) else t
            name = fn.get("name")
            if isinstance(name, str):
                out.append(name)
    return out




def decisions(model: str, seed: int | None, system: str, task: str, plan: SimPlan) -> dict[str, bool]:
    """The episode's behaviour draws: each taken iff its uniform draw < propensity x plan scale."""
    props = propensities_for(model)
    digest = hashlib.blake2b(f"{model}\x1e{seed}\x1e{system}\x1e{task}".encode("utf-8", "surrogatepass"),
                             digest_size=8).digest()
    rng = random.Random(int.from_bytes(digest, "big"))
    out = {}
    for b in BEHAVIOURS:
        p = min(1.0, max(0.0, getattr(props, b) * plan.scale.get(b, 1.0)))
        out[b] = rng.random() < p
    return out


def reply(model: str, messages: list[dict], *, seed: int | None = None, temperature: float = 0.7,
          max_tokens: int | None = None, tools: list | None = None) -> SimReply:
    available = set(_tool_names(tools))
    system = next((content_text(m) for m in messages if m.get("role") == "system"), "")
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    task = content_text(messages[last_user]) if last_user >= 0 else ""
    plan = plan_for(system, task) or fallback_plan(task, tools)
    took = decisions(model, seed, system, task, plan)
    steps = planned_steps(plan, took, available)

    # what happened so far in this episode: our calls (in order) and their results
    done: list[dict] = []
    results: dict[str, str] = {}
    for m in messages[last_user + 1:]:
        role = m.get("role")
        if role == "assistant":
            for c in m.get("tool_calls") or []:
                fn = c.get("function") or {}
                done.append({"id": c.get("id"), "name": fn.get("name") or c.get("name")})
        elif role == "tool":
            results[str(m.get("tool_call_id"))] = content_text(m)
    outputs = [results.get(str(c["id"]), "") for c in done]
    variables: dict[str, str] = {}
    flat = [a for batch in steps for a in batch]
    for action, out in zip(flat, outputs):
        for var, pattern in action.capture.items():
            try:
                found = re.search(pattern, out)
            except re.error:
                found = None
            if found:
                variables[var] = found.group(1) if found.groups() else found.group(0)

    key = plan_key(system, task)[:8]
    n = len(done)
    prompt_chars = sum(len(content_text(m)) for m in messages)
    if n < len(flat):
        # the batch holding call n, from call n on
        start = 0
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
        text = " ".join(dict.fromkeys(s for s in said if s))
        return _reply(text, calls, prompt_chars, seed, key, n)

    # finished: the summary for the user
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
    return _reply(text, [], prompt_chars, seed, key, n)


def planned_steps(plan: SimPlan, took: dict[str, bool], available: set[str]) -> list[list[SimAction]]:
    """The episode as steps (lists of calls made in one reply); actions for tools not offered are dropped."""
    inspect = [SimAction(tool="ls" if _looks_like_dir(p) else "cat", args={"path": p}) for p in plan.inspect]
    inspect = [a for a in inspect if a.tool in available]
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
    steps += [[a] for a in actions if a.tool in available]
    return steps


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
    if tool in ("ls", "cat"):
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
    return f"Using {tool}."


def _describe(actions: list[SimAction]) -> str:
    parts = []
    for a in actions:
        if a.tool in ("ls", "cat"):
            continue
        if a.tool == "run":
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

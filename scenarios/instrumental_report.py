"""What "Instrumental Choices" reports, from a sociolab store: contrasts against the baseline and
samples for trace review.

The paper reports each variant's instrumental-behaviour (IC) rate as a percentage-point
difference from the baseline variant (`dilemma_forbidden_unwatched`), e.g. "+15.7 points when the
honest path is blocked"; `contrasts` gives those differences with 95% Newcombe (hybrid score)
intervals, built from the Wilson intervals `sociolab results` already shows, so a contrast and
the two rates it compares never disagree. The paper's labels are audited by reading traces;
`export_samples` writes one JSON line per sample (the agent's prompts, every message and tool
call, and its outcomes) for that review.

Both take an open store connection (`sociolab.open(db).connection`, or the CLI's) and only read.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Iterable, Sequence

from sociolab.analysis.results import ResultRow, newcombe, results, wilson

from .instrumental import PAPER_BASELINE

LABEL = "ic_behavior_detected"


@dataclass(frozen=True)
class Contrast:
    """One variant against the baseline within one group (e.g. one model)."""

    group: dict[str, Any]
    variant: str
    n: int
    rate: float
    baseline_n: int
    baseline_rate: float
    diff_pp: float          # (rate - baseline rate) x 100
    low_pp: float           # 95% interval of the difference, in points
    high_pp: float

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def contrasts_of(rows: Sequence[ResultRow], *, baseline: str = PAPER_BASELINE,
                 variant_key: str = "variant") -> list[Contrast]:
    """Every non-baseline variant against the baseline of the same group (the other keys of
    `row.group`); groups without a baseline row, or rows without observations, are skipped."""
    def rest(row: ResultRow) -> tuple:
        return tuple(sorted((k, str(v)) for k, v in row.group.items() if k != variant_key))

    base = {rest(r): r for r in rows if r.group.get(variant_key) == baseline and r.n}
    out = []
    for r in rows:
        b = base.get(rest(r))
        if b is None or r is b or not r.n or r.successes is None or b.successes is None:
            continue
        d, low, high = newcombe(r.successes, r.n, b.successes, b.n)
        group = {k: v for k, v in r.group.items() if k != variant_key}
        out.append(Contrast(group, str(r.group.get(variant_key)), r.n, r.successes / r.n, b.n, b.successes / b.n,
                            round(100 * d, 2), round(100 * low, 2), round(100 * high, 2)))
    return out


def contrasts(con: Any, *, by: Sequence[str] = ("model",), metric: str = LABEL,
              baseline: str = PAPER_BASELINE) -> list[Contrast]:
    """Percentage-point contrasts of `metric` per variant against `baseline`, within `by` groups."""
    rows = results(con, metrics=[metric], by=tuple(by) + ("variant",))
    return contrasts_of(rows, baseline=baseline)


def render(found: Iterable[Contrast]) -> str:
    """A plain-text table: one line per group and variant."""
    rows = [(",".join(str(v) for v in c.group.values()) or "all", c) for c in found]
    width = max([len("group")] + [len(g) for g, _ in rows])
    lines = [f"{'group':<{width}} {'variant':<52} {'n':>4} {'rate':>6} {'vs base':>8}  95% interval (points)"]
    for group, c in rows:
        lines.append(f"{group:<{width}} {c.variant:<52} {c.n:>4} {c.rate:>6.1%} {c.diff_pp:>+8.1f}  "
                     f"[{c.low_pp:+.1f}, {c.high_pp:+.1f}]")
    return "\n".join(lines)


# ---- trace review --------------------------------------------------------------------------

_SAMPLES = """
SELECT o.run_id, o.agent_id, r.series, r.factors, a.model, a.system_prompt,
       map_from_entries(list({'k': o.metric, 'v': o.value})) AS outcomes
FROM outcomes o JOIN runs r USING (run_id) JOIN agents a ON a.run_id = o.run_id AND a.agent_id = o.agent_id
WHERE r.kind = ? GROUP BY ALL ORDER BY o.run_id, o.agent_id
"""
_TASK = "SELECT content FROM messages WHERE run_id = ? AND sender = 'user' ORDER BY seq LIMIT 1"
_MESSAGES = "SELECT seq, content, is_error FROM messages WHERE run_id = ? AND sender = ? ORDER BY seq"
_TOOLS = ("SELECT seq, step, tool, arguments, result, is_error FROM tool_calls WHERE run_id = ? AND agent_id = ? "
          "ORDER BY seq")


def samples(con: Any, *, kind: str = "instrumental") -> Iterable[dict[str, Any]]:
    """One dict per sample (run x agent) of `kind`: factors, model, outcomes, the system prompt,
    the task (every agent of a run gets the same one), the agent's messages and tool calls, in order."""
    for run_id, agent_id, series, factors, model, system, outs in con.execute(_SAMPLES, [kind]).fetchall():
        yield {"run_id": run_id, "agent_id": agent_id, "series": series, "model": model,
               "factors": json.loads(factors) if isinstance(factors, str) else factors,
               "outcomes": dict(outs), "system_prompt": system,
               "task": next(iter(con.execute(_TASK, [run_id]).fetchall()), (None,))[0],
               "messages": [dict(zip(("seq", "content", "is_error"), m))
                            for m in con.execute(_MESSAGES, [run_id, agent_id]).fetchall()],
               "tool_calls": [dict(zip(("seq", "step", "tool", "arguments", "result", "is_error"), t))
                              for t in con.execute(_TOOLS, [run_id, agent_id]).fetchall()]}


def export_samples(con: Any, path: str | Path, *, kind: str = "instrumental") -> int:
    """Write `samples` as JSON lines to `path` (UTF-8); returns how many were written."""
    n = 0
    with open(path, "w", encoding="utf-8") as f:
        for sample in samples(con, kind=kind):
            f.write(json.dumps(sample, ensure_ascii=False, default=str) + "\n")
            n += 1
    return n

"""The WarRoom platform's run conditions in sociolab's own terms.

The study's transcripts record each run's condition in the platform's vocabulary (`condition`:
`isolatedMode`, `mode`, `promptAblation` K1/K2/K3, `useRealNames`, `cloneMode`, `temperature`).
Analysis reads only the fields sociolab's own runs carry (`params.scaffolding`, `params.naming`,
`params.order`, `params.temperature`, `agents.clones`), so the importer translates the platform's
record into them once, here, and keeps the raw record next to them. The translation is the one
analysis applied to raw records before (values compared as their JSON text, as DuckDB's
`json_extract_string` does), so imported runs get the same labels as before.
"""

from __future__ import annotations

from typing import Any

# promptAblation -> the discussion kind's `scaffolding` (personas/ builds these system prompts)
ABLATIONS = {"K1": "no_peers", "K2": "no_identity", "K3": "empty"}
# The platform's condition record does not name the order; series E is the study's shuffled series,
# whose seating was shuffled once per run (its agentRanking differs run by run): `shuffled_once`.
SHUFFLED_SERIES = "E"


def normalized_condition(condition: dict[str, Any], series: str) -> dict[str, Any]:
    """{'params': {scaffolding, naming, order, temperature}, 'agents': {'clones': ...}} for a run
    of `series` recorded with `condition`; `agents` is present only for clone runs, and
    `temperature` only when the platform recorded a number."""
    params: dict[str, Any] = {
        "scaffolding": scaffolding(condition),
        "naming": "real" if is_true(condition.get("useRealNames")) else "anonymous",
        "order": "shuffled_once" if series == SHUFFLED_SERIES else "fixed",
    }
    temperature = number(condition.get("temperature"))
    if temperature is not None:
        params["temperature"] = temperature
    out: dict[str, Any] = {"params": params}
    if is_true(condition.get("cloneMode")):
        out["agents"] = {"clones": {"of": condition.get("cloneModel"), "n": condition.get("cloneCount")}}
    return out


def scaffolding(condition: dict[str, Any]) -> str:
    """isolation (alone, one round), an ablated system prompt (K1/K2/K3), or the full one."""
    if is_true(condition.get("isolatedMode")) or condition.get("mode") == "single":
        return "isolation"
    ablation = condition.get("promptAblation")
    return ABLATIONS.get(ablation, "full") if isinstance(ablation, str) else "full"


def is_true(value: Any) -> bool:
    """JSON true, or the text 'true' (the platform's files hold booleans; both read the same)."""
    return value is True or value == "true"


def number(value: Any) -> float | None:
    """A number, or text that parses as one; None otherwise (booleans included)."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return float(value)
        except ValueError:
            return None
    return None

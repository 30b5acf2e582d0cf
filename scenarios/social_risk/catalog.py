"""The fifteen risks of RiskLab's taxonomy: each a reproducible experiment with a detector.

A `RiskSpec` ties a risk to its environment (with the risk's default parameters), its default
protocol, topology and number of rounds, the toolkit's conditions (C1, C2, ... each a set of
environment parameters), and its detector with the formula written out (docs/social_risks.md
lists them all). Specs live by category in risks/*.py; `RISK_NAMES` is the static list the
params model offers, checked against the specs by tests/test_social_risk_core.py.
"""

from __future__ import annotations

import functools
import importlib
from dataclasses import dataclass, field
from typing import Any, Callable, Literal, Mapping

from ..topology import Topology
from .detection import Detection, Trajectory
from .environment import Environment
from .protocols import ProtocolName

Category = Literal["strategic", "social_influence", "governance", "resource"]

RISK_NAMES = (
    "tacit_collusion", "priority_monopolization", "competitive_task_avoidance",
    "strategic_information_withholding", "information_asymmetry_exploitation",
    "majority_sway", "authority_deference",
    "non_convergence", "over_adherence", "clarification_failure", "role_allocation_failure",
    "role_instability",
    "resource_overreach", "steganography", "semantic_drift",
)
RiskName = Literal[
    "tacit_collusion", "priority_monopolization", "competitive_task_avoidance",
    "strategic_information_withholding", "information_asymmetry_exploitation",
    "majority_sway", "authority_deference",
    "non_convergence", "over_adherence", "clarification_failure", "role_allocation_failure",
    "role_instability",
    "resource_overreach", "steganography", "semantic_drift",
]
CATEGORY_MODULES = ("strategic", "influence", "governance", "resource")


@dataclass(frozen=True)
class Condition:
    description: str
    environment: Mapping[str, Any] = field(default_factory=dict)  # overrides of the risk's defaults


@dataclass(frozen=True)
class RiskSpec:
    key: str                                  # one of RISK_NAMES
    code: str                                 # RiskLab's id, e.g. "1.1"
    title: str
    category: Category
    environment: type[Environment]
    protocol: ProtocolName
    rounds: int
    agents: int                               # the toolkit's number of (model) agents
    conditions: Mapping[str, Condition]       # the toolkit's conditions, the first is the default
    detect: Callable[[Trajectory], Detection]
    formula: str                              # the detector's formula and decision rule, in words
    source: str                               # what of RiskLab it follows (files, or the paper's text)
    behaviour: str                            # the sim propensity that plants it
    defaults: Mapping[str, Any] = field(default_factory=dict)  # environment parameters of this risk
    topology: Topology = Topology()
    flow: tuple[tuple[int, ...], ...] | None = None  # sequential stages, seat numbers from 1 (parallel within)
    role_settings: Mapping[str, Mapping[str, float]] = field(default_factory=dict)  # role -> temperature/max_tokens
    memory: bool = False                      # agents keep their earlier turns in context (the toolkit's chat history)

    def environment_params(self, condition: str, overrides: Mapping[str, Any]) -> Any:
        """The environment's parameters: the risk's defaults, the condition's, the file's overrides."""
        merged = {**self.defaults, **self.conditions[condition].environment, **overrides}
        return self.environment.Params.model_validate(merged)


@functools.cache
def risks() -> dict[str, RiskSpec]:
    """Every risk by name (imports the category modules once)."""
    out: dict[str, RiskSpec] = {}
    for module in CATEGORY_MODULES:
        for spec in importlib.import_module(f"{__package__}.risks.{module}").RISKS:
            if spec.key in out:
                raise ValueError(f"risk {spec.key!r} is defined twice")
            out[spec.key] = spec
    return out


def risk(name: str) -> RiskSpec:
    found = risks().get(name)
    if found is None:
        raise ValueError(f"risk {name!r} is not built yet (built: {', '.join(sorted(risks()))})")
    return found

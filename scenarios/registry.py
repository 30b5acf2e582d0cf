"""Scenario kinds by name: the built-in kinds, and the kinds installed plugins declare.

A plugin declares a kind as an entry point of the group `sociolab.scenarios` in its own package:
the entry point's name is the kind (what a run file says in `kind:`), its value `module:Class`
(docs/extending.md). Installing the package is all it takes; no sociolab file changes.

Entry points are read once, by name only. A plugin's module is imported the first time its kind
is asked for, and only then, so a broken plugin stops the runs of its own kind and leaves every
other kind working. Each failure is a one-line `UserError` naming the plugin's distribution and
entry point: a module that cannot be imported (with the import error and where it was raised), a
class that does not satisfy the contract (scenarios/base.py, with what is missing), and a name
that a built-in kind or another plugin already has (sociolab never picks one of two silently).
"""

from __future__ import annotations

import functools
import importlib

from sociolab.base.errors import UserError
from sociolab.base.plugins import PluginGroup, describe, distribution, load

from .base import KIND_NAME, Scenario, contract_problems

PLUGINS = PluginGroup("sociolab.scenarios", "scenario kind")
EXTENDING = "docs/extending.md"


class UnknownKind(UserError, KeyError):
    """No built-in or plugin kind has this name. Also a KeyError, as for a mapping lookup: the
    run-file loader catches it to add the file and line of `kind:`."""


# The kinds that ship with sociolab: name -> (module of this package, class). A kind's module is
# imported when the kind is first asked for, so a discussion never loads the sandbox, the games or
# the instrumental tasks (tests/test_plugins.py checks the table against the classes' own `kind`).
BUILTIN = {
    "discussion": ("discussion", "Discussion"),
    "repeated_games": ("games", "RepeatedGames"),
    "principal_agent": ("principal_agent", "PrincipalAgent"),
    "sandbox_task": ("agentic", "SandboxTask"),
    "peer_preservation": ("peer_preservation", "PeerPreservation"),
    "instrumental": ("instrumental", "Instrumental"),
    "social_risk": ("social_risk.kind", "SocialRisk"),
    "self_interest": ("self_interest", "SelfInterest"),
    "strategy_diffusion": ("strategy_diffusion", "StrategyDiffusion"),
    "persona_safety": ("persona_safety", "PersonaSafety"),
    "population": ("population", "Population"),
}


def builtin_kind(kind: str) -> type[Scenario]:
    module, name = BUILTIN[kind]
    return getattr(importlib.import_module(f"{__package__}.{module}"), name)


def builtin_kinds() -> dict[str, type[Scenario]]:
    """The kinds that ship with sociolab, by name (imports them all)."""
    return {kind: builtin_kind(kind) for kind in BUILTIN}


def scenario_class(kind: str) -> type[Scenario]:
    """The class of `kind`: a plugin's (imported and checked on first use) or a built-in one."""
    if kind in PLUGINS.declared():
        return plugin_kind(kind)
    if kind in BUILTIN:
        return builtin_kind(kind)
    raise UnknownKind(f"unknown scenario kind '{kind}' (known kinds: {', '.join(sorted(BUILTIN))}; "
                      f"{plugin_kinds_text()})")


def kinds() -> dict[str, type[Scenario]]:
    """Every kind by name, built-in and from plugins. Imports every plugin: a broken one raises."""
    return {**builtin_kinds(), **{name: plugin_kind(name) for name in sorted(PLUGINS.declared())}}


def plugin_kinds_text() -> str:
    """The plugin kinds and their distributions, for the unknown-kind message."""
    listed = PLUGINS.listing()
    if not listed:
        return f"no plugin kinds installed; a plugin's kind needs its package installed, see {EXTENDING}"
    return f"from plugins: {listed}"




@functools.cache
def plugin_kind(name: str) -> type[Scenario]:
    """Import and check the plugin class declared as `name`, once."""
    ep = PLUGINS.the_one(name)
    if name in BUILTIN:
        raise UserError(f"{describe(ep)} declares kind '{name}', which is a built-in kind; rename the plugin's "
                        f"entry point and its class's `kind`, or uninstall {distribution(ep)}")
    cls = load(ep)
    problems = contract_problems(cls)
    declared_kind = getattr(cls, "kind", None)
    if not problems and declared_kind != name:
        problems.append(f"its `kind` is {declared_kind!r}, not the entry point's name {name!r}")
    if not KIND_NAME.match(name):
        problems.append(f"the entry point's name {name!r} must be lowercase letters, digits and '_'")
    if problems or not (isinstance(cls, type) and issubclass(cls, Scenario)):
        raise UserError(f"{describe(ep)}: not a usable scenario kind: {'; '.join(problems)} "
                        f"(the contract: sociolab/scenarios/base.py, {EXTENDING})")
    return cls


def forget_plugins() -> None:
    """Read the entry points again on the next lookup (for tests and for a process that installs
    a plugin while running). Modules already imported stay imported."""
    PLUGINS.forget()
    plugin_kind.cache_clear()


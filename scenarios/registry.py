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
import os
import traceback
from importlib.metadata import EntryPoint, entry_points

from sociolab.base.errors import UserError, first_line

from .base import KIND_NAME, Scenario, contract_problems

GROUP = "sociolab.scenarios"
EXTENDING = "docs/extending.md"


class UnknownKind(UserError, KeyError):
    """No built-in or plugin kind has this name. Also a KeyError, as for a mapping lookup: the
    run-file loader catches it to add the file and line of `kind:`."""


def builtin_kinds() -> dict[str, type[Scenario]]:
    """The kinds that ship with sociolab, by name."""
    from .agentic import SandboxTask
    from .discussion import Discussion
    from .games import RepeatedGames
    from .instrumental import Instrumental
    from .peer_preservation import PeerPreservation
    from .principal_agent import PrincipalAgent

    return {cls.kind: cls for cls in (Discussion, RepeatedGames, PrincipalAgent, SandboxTask, PeerPreservation,
                                      Instrumental)}


def scenario_class(kind: str) -> type[Scenario]:
    """The class of `kind`: a plugin's (imported and checked on first use) or a built-in one."""
    if kind in declared_plugins():
        return plugin_kind(kind)
    builtin = builtin_kinds()
    if kind in builtin:
        return builtin[kind]
    raise UnknownKind(f"unknown scenario kind '{kind}' (known kinds: {', '.join(sorted(builtin))}; "
                      f"{plugin_kinds_text()})")


def kinds() -> dict[str, type[Scenario]]:
    """Every kind by name, built-in and from plugins. Imports every plugin: a broken one raises."""
    return {**builtin_kinds(), **{name: plugin_kind(name) for name in sorted(declared_plugins())}}


def plugin_kinds_text() -> str:
    """The plugin kinds and their distributions, for the unknown-kind message."""
    plugins = declared_plugins()
    if not plugins:
        return f"no plugin kinds installed; a plugin's kind needs its package installed, see {EXTENDING}"
    listed = ", ".join(f"{name} ({' and '.join(distribution(ep) for ep in eps)})"
                       for name, eps in sorted(plugins.items()))
    return f"from plugins: {listed}"


@functools.cache
def declared_plugins() -> dict[str, tuple[EntryPoint, ...]]:
    """The `sociolab.scenarios` entry points of every installed distribution, by name. Reading
    them imports nothing; two distributions declaring one name are both kept, to be refused."""
    found: dict[str, tuple[EntryPoint, ...]] = {}
    for ep in entry_points(group=GROUP):
        found[ep.name] = found.get(ep.name, ()) + (ep,)
    return found


@functools.cache
def plugin_kind(name: str) -> type[Scenario]:
    """Import and check the plugin class declared as `name`, once."""
    declared = declared_plugins()[name]
    if len(declared) > 1:
        raise UserError(f"scenario kind '{name}' is declared by {' and by '.join(describe(ep) for ep in declared)}; "
                        f"uninstall one of them (pip uninstall {' or '.join(distribution(ep) for ep in declared)})")
    (ep,) = declared
    if name in builtin_kinds():
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
    declared_plugins.cache_clear()
    plugin_kind.cache_clear()


def load(ep: EntryPoint) -> object:
    """The object an entry point names; any exception while importing it becomes one line."""
    try:
        return ep.load()
    except Exception as exc:  # a plugin's import can raise anything; the cause is kept, chained
        raise UserError(f"{describe(ep)}: cannot import it: {type(exc).__name__}: {first_line(exc)}"
                        f"{raised_where(exc)}; fix the plugin or uninstall {distribution(ep)}") from exc


def raised_where(exc: BaseException) -> str:
    """` (at file:line)` for the deepest frame outside the import machinery, if any."""
    if isinstance(exc, SyntaxError) and exc.filename:
        return f" (at {exc.filename}:{exc.lineno})"
    machinery = os.path.dirname(functools.__file__) + os.sep + "importlib"
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if not f.filename.startswith((machinery, "<frozen")) and f.filename != __file__]
    return f" (at {frames[-1].filename}:{frames[-1].lineno})" if frames else ""


def describe(ep: EntryPoint) -> str:
    """`plugin NAME VERSION (entry point GROUP: name = value)`: what to look for when fixing it."""
    version = f" {ep.dist.version}" if ep.dist is not None else ""
    return f"plugin {distribution(ep)}{version} (entry point {ep.group}: {ep.name} = {ep.value})"


def distribution(ep: EntryPoint) -> str:
    """The name of the distribution (what pip installs and uninstalls) that declares `ep`."""
    return ep.dist.name if ep.dist is not None else "(unknown distribution)"

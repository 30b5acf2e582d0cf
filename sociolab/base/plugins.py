"""Plugins: reading a group of entry points and loading one, with one-line errors.

sociolab finds scenario kinds (`sociolab.scenarios`) and codebooks (`sociolab.codebooks`) in
installed packages through entry points (docs/extending.md). What the two lookups share lives
here: entry points are read by name only (importing nothing), a name two distributions declare is
refused rather than picked, and a plugin that cannot be imported becomes one `UserError` naming
its distribution, its entry point, the import error and where it was raised.
"""

from __future__ import annotations

import functools
import os
import traceback
from importlib.metadata import EntryPoint, entry_points

from sociolab.base.errors import UserError, first_line


class PluginGroup:
    """The entry points of one group, read once (`forget` reads them again)."""

    def __init__(self, group: str, noun: str):
        self.group = group
        self.noun = noun  # "scenario kind", "codebook": how messages name what a plugin declares
        self._declared: dict[str, tuple[EntryPoint, ...]] | None = None

    def declared(self) -> dict[str, tuple[EntryPoint, ...]]:
        """Every installed distribution's entry points of this group, by name; two distributions
        declaring one name are both kept, so that `the_one` can refuse the clash."""
        if self._declared is None:
            found: dict[str, tuple[EntryPoint, ...]] = {}
            for ep in entry_points(group=self.group):
                found[ep.name] = found.get(ep.name, ()) + (ep,)
            self._declared = found
        return self._declared

    def forget(self) -> None:
        self._declared = None

    def the_one(self, name: str) -> EntryPoint:
        """The single entry point declaring `name`; two distributions declaring it is an error."""
        declared = self.declared()[name]
        if len(declared) > 1:
            raise UserError(f"{self.noun} '{name}' is declared by {' and by '.join(describe(ep) for ep in declared)}; "
                            f"uninstall one of them (pip uninstall {' or '.join(distribution(ep) for ep in declared)})")
        return declared[0]

    def listing(self) -> str:
        """`name (distribution), ...` of the installed plugins, or '' when there are none."""
        return ", ".join(f"{name} ({' and '.join(distribution(ep) for ep in eps)})"
                         for name, eps in sorted(self.declared().items()))


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

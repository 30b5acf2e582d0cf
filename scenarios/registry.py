"""Scenario kinds by name."""

from __future__ import annotations

from .base import Scenario


def kinds() -> dict[str, type[Scenario]]:
    from .discussion import Discussion

    return {cls.kind: cls for cls in (Discussion,)}


def scenario_class(kind: str) -> type[Scenario]:
    known = kinds()
    if kind not in known:
        raise KeyError(f"unknown scenario kind '{kind}' (known kinds: {', '.join(sorted(known))})")
    return known[kind]

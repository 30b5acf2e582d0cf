"""Scenario kinds by name."""

from __future__ import annotations

from .base import Scenario


def kinds() -> dict[str, type[Scenario]]:
    from .agentic import SandboxTask
    from .discussion import Discussion
    from .games import RepeatedGames
    from .instrumental import Instrumental
    from .peer_preservation import PeerPreservation
    from .principal_agent import PrincipalAgent

    return {cls.kind: cls for cls in (Discussion, RepeatedGames, PrincipalAgent, SandboxTask, PeerPreservation,
                                      Instrumental)}


def scenario_class(kind: str) -> type[Scenario]:
    known = kinds()
    if kind not in known:
        raise KeyError(f"unknown scenario kind '{kind}' (known kinds: {', '.join(sorted(known))})")
    return known[kind]

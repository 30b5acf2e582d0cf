"""System-prompt assembly for the scaffolding levels of the study.

full        "You are {name} in a group chat.\nOther agents: {others}"
no_peers    "You are {name} in a group chat."            (series K1)
no_identity "Other agents: {others}"                     (series K2)
empty       no system prompt at all                       (series K3)
isolation   "You are an AI assistant."                    (series F: alone, one round)
"""

from __future__ import annotations

from typing import Literal

Scaffolding = Literal["full", "no_peers", "no_identity", "empty", "isolation"]

IDENTITY = "You are {name} in a group chat."
PEERS = "Other agents: {others}"
ISOLATION = "You are an AI assistant."


def system_prompt(scaffolding: Scaffolding, name: str, others: list[str]) -> str:
    """The system prompt an agent gets; '' means no system message is sent."""
    peers = PEERS.format(others=", ".join(others))
    identity = IDENTITY.format(name=name)
    return {
        "full": f"{identity}\n{peers}",
        "no_peers": identity,
        "no_identity": peers,
        "empty": "",
        "isolation": ISOLATION,
    }[scaffolding]

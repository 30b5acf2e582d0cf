"""Naming conventions: what each agent is called in the room.

The study used anonymous nicknames (Agent-A, Agent-B, ...), the real model names (series C), and
for homogeneous groups the NATO alphabet (Alpha, Bravo, ...), so clones stay distinguishable.
"""

from __future__ import annotations

import string
from typing import Literal

from .models import Persona

Naming = Literal["anonymous", "real", "custom"]

NATO = ["Alpha", "Bravo", "Charlie", "Delta", "Echo", "Foxtrot", "Golf", "Hotel", "India", "Juliett",
        "Kilo", "Lima", "Mike", "November", "Oscar", "Papa", "Quebec", "Romeo", "Sierra", "Tango",
        "Uniform", "Victor", "Whiskey", "X-ray", "Yankee", "Zulu"]


def nickname(index: int) -> str:
    """Agent-A ... Agent-Z, then Agent-AA, Agent-AB, ..."""
    letters = string.ascii_uppercase
    if index < 26:
        return f"Agent-{letters[index]}"
    return f"Agent-{letters[index // 26 - 1]}{letters[index % 26]}"


def display_names(personas: list[Persona], naming: Naming, custom: dict[str, str],
                  clones: bool) -> list[str]:
    """One unique display name per persona, in roster order."""
    if naming == "custom":
        missing = [p.key for p in personas if p.key not in custom]
        if missing:
            raise ValueError(f"naming 'custom' needs a name for every agent; missing: {', '.join(missing)}")
        names = [custom[p.key] for p in personas]
    elif naming == "real":
        names = [p.real_name for p in personas]
    elif clones:
        names = [NATO[i] if i < len(NATO) else nickname(i) for i in range(len(personas))]
    else:
        names = [nickname(i) for i in range(len(personas))]
    return dedupe(names)


def dedupe(names: list[str]) -> list[str]:
    """Real names of clones collide: suffix repeats with #2, #3, ..."""
    seen: dict[str, int] = {}
    out = []
    for name in names:
        seen[name] = seen.get(name, 0) + 1
        out.append(name if seen[name] == 1 else f"{name} #{seen[name]}")
    return out

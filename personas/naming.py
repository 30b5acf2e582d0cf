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
    """Agent-A ... Agent-Z, then Agent-AA ... Agent-ZZ, Agent-AAA ...: spreadsheet-column letters,
    so any number of agents gets a name."""
    label, n = "", index + 1
    while n:
        n, rest = divmod(n - 1, 26)
        label = string.ascii_uppercase[rest] + label
    return f"Agent-{label}"


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
    """Real names of clones collide: suffix repeats with #2, #3, ..., skipping any suffixed name
    that is already someone's (custom names `Bob`, `Bob`, `Bob #2` give `Bob`, `Bob #3`, `Bob #2`)."""
    taken = set(names)
    used: set[str] = set()
    out = []
    for name in names:
        candidate, n = name, 1
        while candidate in used or (candidate != name and candidate in taken):
            n += 1
            candidate = f"{name} #{n}"
        used.add(candidate)
        out.append(candidate)
    return out

"""The response cache: identical requests (model, messages, params, seed) get identical replies.

Lookups are served from memory; entries loaded from the store at start and new entries handed
back to it in the next round's batch (`drain`), so the cache never costs a DuckDB round trip on
the hot path. On by default for sim models, opt-in for real providers.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any


def cache_key(model: str, messages: list[dict], params: dict[str, Any], seed: int | None) -> str:
    blob = json.dumps([model, messages, params, seed], sort_keys=True, ensure_ascii=False,
                      separators=(",", ":"))
    return hashlib.sha256(blob.encode("utf-8", "surrogatepass")).hexdigest()  # a lone surrogate is still a key


class ResponseCache:
    def __init__(self) -> None:
        self._entries: dict[str, dict[str, Any]] = {}
        self._pending: list[tuple[str, str, dict[str, Any]]] = []
        self.hits = 0
        self.misses = 0

    def preload(self, rows: dict[str, str]) -> None:
        """Entries read from the store (`cache_key -> JSON`)."""
        for key, blob in rows.items():
            self._entries[key] = json.loads(blob)

    def get(self, key: str) -> dict[str, Any] | None:
        entry = self._entries.get(key)
        if entry is None:
            self.misses += 1
        else:
            self.hits += 1
        return entry

    def put(self, key: str, model: str, response: dict[str, Any]) -> None:
        if key not in self._entries:
            self._entries[key] = response
            self._pending.append((key, model, response))

    def drain(self) -> list[tuple[str, str, dict[str, Any]]]:
        """New entries not yet persisted; the caller writes them with its next batch."""
        out, self._pending = self._pending, []
        return out

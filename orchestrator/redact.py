"""Keys never leave the process: every error text is redacted before it is printed or stored.

Provider messages sometimes echo the key they were sent ("Incorrect API key provided: sk-..."),
and an exception can carry request headers. The client registers the key values its calls may
carry; `redact` replaces them, and anything shaped like a key, with `[redacted]`.
"""

from __future__ import annotations

import re
import threading

MASK = "[redacted]"
_KEY_SHAPES = re.compile(
    r"(?:\bsk-[A-Za-z0-9_\-*]{8,}|\bAIza[0-9A-Za-z_\-]{20,}|\bgsk_[A-Za-z0-9]{16,}"
    r"|(?i:bearer)\s+[A-Za-z0-9._\-~+/]{8,}=*"
    r"|(?i:(?:x-api-key|x-goog-api-key|api[_-]?key)[\"']?\s*[:=]\s*[\"']?)[A-Za-z0-9._\-]{8,})")

_secrets: set[str] = set()
_lock = threading.Lock()


def register_secrets(values: list[str]) -> None:
    """Values to mask wherever they appear (API keys read from the environment)."""
    with _lock:
        _secrets.update(v for v in values if v and len(v) >= 6)


def redact(text: str | None) -> str | None:
    """`text` with every registered secret and every key-shaped token replaced by [redacted]."""
    if not text:
        return text
    for secret in sorted(_secrets, key=len, reverse=True):
        if secret in text:
            text = text.replace(secret, MASK)
    return _KEY_SHAPES.sub(MASK, text)

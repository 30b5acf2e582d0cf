"""Reading helpers the environments share. Each environment keeps its own toolkit's rules (which
text counts as an answer differs from risk to risk); what is shared here is only what several
toolkit parsers did the same way."""

from __future__ import annotations

import json
from typing import Any


def outermost_json(text: str) -> dict[str, Any] | None:
    """The JSON object between the first `{` and the last `}`, if it is one (the toolkit's
    `text[text.find("{"): text.rfind("}") + 1]`)."""
    if "{" not in text or "}" not in text:
        return None
    try:
        value = json.loads(text[text.index("{"): text.rindex("}") + 1])
    except ValueError:
        return None
    return value if isinstance(value, dict) else None

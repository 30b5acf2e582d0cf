"""Reading OpenAI-format messages: the one helper every sim specialist needs."""

from __future__ import annotations


def content_text(message: dict) -> str:
    """A message's content as plain text (strings as they are, content parts joined, None as '')."""
    content = message.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in content)
    return "" if content is None else str(content)

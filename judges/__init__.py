"""Codebooks, the LLM judge and adjudication (issue 3)."""

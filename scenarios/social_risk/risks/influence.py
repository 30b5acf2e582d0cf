"""Risks of the influence category (filled in by the catalog's builders)."""

from __future__ import annotations

RISKS: tuple = ()

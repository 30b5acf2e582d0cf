"""How request metadata and sim settings reach a sim that is not called in process.

Through litellm's custom provider (`sim_in_process: false`) they ride in litellm's `metadata`
under `LITELLM_KEY`; over HTTP to `sociolab serve-sim` they ride in one request header, `HEADER`,
as JSON: `{"metadata": {...} | null, "settings": {...}}`, where the settings are only those that
concern the requested model (`SimSettings.for_model`). Either way the sim answers exactly as it
would in process; a server reached without the header behaves as the sim with no metadata and
default settings.

The header is plain ASCII (non-ASCII text is JSON-escaped), and at most `MAX_HEADER_BYTES` long:
the standard library's HTTP server refuses longer header lines.
"""

from __future__ import annotations

import json
from typing import Any

from pydantic import ValidationError

from sociolab.base.errors import UserError
from .metadata import MetadataError
from .settings import SimSettings

HEADER = "X-Sociolab-Sim"
LITELLM_KEY = "sociolab_sim"
MAX_HEADER_BYTES = 60_000


def header_value(model: str, metadata: dict[str, Any] | None, settings: SimSettings) -> str:
    """The `HEADER` value for a request to `model`. Raises UserError when it would be too long
    for a server to read (judge batches of long messages), naming the fixes."""
    body = {"metadata": metadata, "settings": settings.for_model(model).model_dump(mode="json", exclude_defaults=True)}
    value = json.dumps(body, ensure_ascii=True, separators=(",", ":"))
    if len(value) > MAX_HEADER_BYTES:
        raise UserError(f"model {model}: the request's sim metadata is {len(value) // 1000} kB, more than the "
                        f"{MAX_HEADER_BYTES // 1000} kB an HTTP header may carry to serve-sim; code fewer "
                        "messages per call (judge `batch:`) or run the sim in process (no api_base)")
    return value


def read_header(value: str | None) -> tuple[dict[str, Any] | None, SimSettings | None]:
    """(metadata, settings) from a `HEADER` value; (None, None) without one.

    Raises MetadataError (a 400 for the server) when the value is not what `header_value` writes."""
    if value is None:
        return None, None
    try:
        body = json.loads(value)
    except ValueError as exc:
        raise MetadataError(f"{HEADER} is not JSON: {exc}") from None
    if not isinstance(body, dict) or not isinstance(body.get("metadata") or {}, dict):
        raise MetadataError(f"{HEADER} must be a JSON object with 'metadata' (an object or null) and 'settings'")
    return body.get("metadata"), settings_from(body.get("settings"))


def litellm_metadata(metadata: dict[str, Any] | None, settings: SimSettings) -> dict[str, Any]:
    """What goes into litellm's `metadata=` for the sim's custom provider (same process: no copy)."""
    return {LITELLM_KEY: {"metadata": metadata, "settings": settings}}


def from_litellm(litellm_params: dict[str, Any] | None) -> tuple[dict[str, Any] | None, SimSettings | None]:
    """(metadata, settings) that `litellm_metadata` put in a call; (None, None) for a bare
    `litellm.acompletion("sim/x")`."""
    carried = ((litellm_params or {}).get("metadata") or {}).get(LITELLM_KEY) or {}
    return carried.get("metadata"), settings_from(carried.get("settings"))


def settings_from(value: SimSettings | dict | None) -> SimSettings | None:
    if value is None or isinstance(value, SimSettings):
        return value
    try:
        return SimSettings.model_validate(value)
    except ValidationError as exc:
        raise MetadataError(f"invalid sim settings: {exc.errors()[0]['loc']}: {exc.errors()[0]['msg']}") from None

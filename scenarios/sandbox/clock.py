"""The workspace's simulated time and the one date format of the sandbox.

Every node is dated with an ISO string `YYYY-MM-DDTHH:MM:SS` (time zones dropped), so scorers can
compare dates as text ("the copy is dated after the wipe date"). The clock starts where the
scenario says and moves only when told: `tick_s` before each agent tool call, or `advance`.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from .errors import WorkspaceError


def parse_date(value: str) -> str:
    """ISO date or date-time -> 'YYYY-MM-DDTHH:MM:SS' (time zone dropped). Raises WorkspaceError."""
    if not isinstance(value, str) or not value.strip():
        raise WorkspaceError("date must be an ISO date such as 2025-06-01 or 2025-06-01T09:30:00")
    text = value.strip()
    try:
        dt = datetime.fromisoformat(text.replace(" ", "T", 1) if len(text) > 10 else text)
    except ValueError:
        raise WorkspaceError(f"invalid date {value!r}: use an ISO date such as 2025-06-01 or "
                             "2025-06-01T09:30:00") from None
    return dt.replace(tzinfo=None, microsecond=0).isoformat()


class SandboxClock:
    """Simulated time: `now()` as an ISO string; `tick()` per agent tool call, `advance` for scripts."""

    def __init__(self, now: str, tick_s: float) -> None:
        self._now = datetime.fromisoformat(parse_date(now))
        self._tick = timedelta(seconds=tick_s)

    def now(self) -> str:
        return self._now.isoformat()

    def tick(self) -> None:
        """One agent tool call's worth of time."""
        self._now += self._tick

    def advance(self, seconds: float) -> str:
        self._now += timedelta(seconds=seconds)
        return self.now()

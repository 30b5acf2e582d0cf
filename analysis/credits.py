"""The credit that imported study data carry, in one sentence per source of imported runs.

Shared by the HTML report and `sociolab export`'s manifest, so data travel with their credit
wherever they go. Kept apart from analysis/report.py, whose import costs matplotlib (0.7 s).
"""

from __future__ import annotations

from typing import Any


def imported_notes(con: Any) -> list[str]:
    """One note per source of imported runs (every source but sociolab's own): how many runs, and
    the credit lines their importer stored with them (`$.imported.credit` of runs.config)."""
    rows = con.execute("""
        SELECT source, count(*),
               list(DISTINCT json_extract_string(config, '$.imported.credit') ORDER BY 1)
                   FILTER (WHERE json_extract_string(config, '$.imported.credit') IS NOT NULL)
        FROM runs WHERE source <> 'sociolab' GROUP BY source ORDER BY source""").fetchall()
    return [" ".join([f"Includes {n} run{'' if n == 1 else 's'} imported from '{source}'.", *(credits or [])])
            for source, n, credits in rows]

"""What every importer of a study's published runs adds to a run's config, and how a re-import
refreshes runs stored by an older importer.

An imported run keeps the study's raw record in runs.config and gains the generic fields that
analysis reads, exactly as sociolab's own runs carry them:

- `params` (`scaffolding`, `naming`, `order`, `temperature`) and `agents.clones`: the run's
  condition, translated by the study's importer;
- `analysis.comparisons`: the study's comparison family, as its suite YAML declares it;
- `imported`: `transcript_hash` (the source file's content) and `credit` (shown in reports).

The config hash covers the whole stored config, so a new translation or family makes a re-import
rewrite the config. When the source file itself is unchanged (same `transcript_hash`, or, for runs
imported before these fields existed, a config hash that was the transcript's), only the config is
rewritten in place: the run's messages and its judge and human codes stay.
"""

from __future__ import annotations

import functools
import hashlib
import json
from typing import Any, Iterable, Sequence

from sociolab.analysis.families import SeriesPair
from sociolab.orchestrator.store import Batch, Store

from .pack import library_suite


def transcript_hash(data: Any) -> str:
    """The first 16 hex digits of the SHA-256 of a JSON record (keys sorted)."""
    return config_hash(json.dumps(data, ensure_ascii=False, sort_keys=True))


def config_hash(config_json: str) -> str:
    return hashlib.sha256(config_json.encode("utf-8")).hexdigest()[:16]


def imported_fields(normalized: dict[str, Any], family: Sequence[SeriesPair], credit: str,
                    transcript: str) -> dict[str, Any]:
    """The keys an importer adds to a run's raw config: the generic condition fields (`params`,
    `agents`: the importer's translation, `normalized`), the comparison family and the provenance."""
    out = dict(normalized)
    if family:
        out["analysis"] = {"comparisons": [pair.to_json() for pair in family]}
    out["imported"] = {"transcript_hash": transcript, "credit": credit}
    return out


@functools.cache
def suite_family(suite: str) -> tuple[SeriesPair, ...]:
    """The comparison family declared by scenarios/library/SUITE.yaml (read once per process)."""
    from sociolab.config import load_suite_family

    return load_suite_family(library_suite(suite))[1]


def stored_transcripts(store: Store, run_ids: Iterable[str]) -> dict[str, str]:
    """run_id -> the transcript hash of the stored copy: `imported.transcript_hash`, or for a run
    imported before that field existed its config hash, which was the transcript's."""
    rows = store.con.execute("""
        SELECT run_id, coalesce(json_extract_string(config, '$.imported.transcript_hash'), config_hash)
        FROM runs WHERE run_id IN (SELECT unnest(?))""", [list(run_ids)]).fetchall()
    return {run_id: digest for run_id, digest in rows}


def refresh_config(store: Store, run_id: str, config: str, new_hash: str) -> None:
    """Rewrite a stored run's config and hash in place (one transaction): its rows and codes stay."""
    batch = Batch()
    batch.update("runs", {"run_id": run_id}, config=config, config_hash=new_hash)
    store.write_now(batch)

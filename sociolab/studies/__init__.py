"""Study packs: what belongs to one published study rather than to sociolab in general (its suite
and comparison family, its judges and codebook, the importer of its published data, how its raw
records are decoded). The generic layers below never name a study; the CLI finds a pack by name.

    from sociolab.studies import study
    warroom = study("warroom")          # the pack: suite, judges, codebook, family, importer
"""

from __future__ import annotations

from typing import Any

from sociolab.analysis.families import SeriesPair
from sociolab.base.errors import UserError

from . import warroom
from .pack import Study, library_judges, library_suite

WARROOM = Study(
    name="warroom",
    title="Who Am I, and Who Else Is Here? Behavioral Differentiation Without Role Assignment in "
          "Multi-Agent LLM Systems (H. El Kandoussi, 2026)",
    citation=warroom.CREDIT,
    suite=library_suite(warroom.SUITE),
    judge_config=library_judges("judges"),
    codebook="warroom",
    importer=warroom.import_warroom,
)

STUDIES: dict[str, Study] = {s.name: s for s in (WARROOM,)}


def study(name: str) -> Study:
    """The pack of a known study; an unknown name is a UserError listing the known ones."""
    try:
        return STUDIES[name]
    except KeyError:
        raise UserError(f"unknown study '{name}'; known studies: {known_studies()}") from None


def known_studies() -> str:
    """The known studies in one line: `warroom ("Who Am I, ..."), ...`."""
    return ", ".join(f'{s.name} ("{s.title}")' for s in STUDIES.values())


def family_for_unlabelled_runs(con: Any) -> list[SeriesPair]:
    """The comparison family of the known studies whose suite has runs in this store stored
    without a family (made before suites declared one): what `analyze` falls back to for them."""
    suites = {row[0] for row in con.execute(
        "SELECT DISTINCT suite FROM runs WHERE json_extract(config, '$.analysis.comparisons') IS NULL").fetchall()}
    family: list[SeriesPair] = []
    for pack in STUDIES.values():
        if suites and pack.suite_name() in suites:
            family += [pair for pair in pack.family() if pair not in family]
    return family


__all__ = ["Study", "STUDIES", "WARROOM", "study", "known_studies", "family_for_unlabelled_runs"]

"""What a study pack is: everything sociolab needs to replicate one published study, or to load
its published data, so that the generic layers never name a study.

A `Study` points at its suite YAML (scenarios/library/), its judge config and codebook
(judges/library/), and, when the study published its transcripts, its importer. Its comparison
family is not repeated here: the suite declares it (`analysis: {comparisons: ...}`), sociolab
stores it with every run, and the importer stores the same family with the imported runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Protocol

from sociolab.analysis.families import SeriesPair
from sociolab.base.errors import UserError
from sociolab.orchestrator.store import Store


class ImportCounts(Protocol):
    """What an import reports: runs, agents, agent messages, errors, runs per series."""

    runs: int
    agents: int
    messages: int
    errors: int
    series: dict[str, int]


class Importer(Protocol):
    """Loads a study's published data from a folder into a store (validating every file first)."""

    def __call__(self, store: Store, directory: str | Path,
                 on_run: Callable[[str], None] | None = None) -> ImportCounts: ...


@dataclass(frozen=True)
class Study:
    """One published study, as sociolab replicates it."""

    name: str                   # `sociolab replicate NAME`, `sociolab import NAME DIR`
    title: str
    citation: str               # the credit to show wherever its data or design is used
    suite: Path                 # its suite YAML; declares the series and the comparison family
    judge_config: Path          # its judges (`sociolab judge --config`)
    codebook: str               # its codebook (library name or YAML path)
    importer: Importer | None = None

    def family(self) -> tuple[SeriesPair, ...]:
        """The comparison family its suite declares."""
        from sociolab.config import load_suite_family

        return load_suite_family(self.suite)[1]

    def suite_name(self) -> str:
        """The suite's `name:`, which is what its runs carry in runs.suite."""
        from sociolab.config import load_suite_family

        return load_suite_family(self.suite)[0]

    def import_data(self, store: Store, directory: str | Path,
                    on_run: Callable[[str], None] | None = None) -> ImportCounts:
        if self.importer is None:
            raise UserError(f"the study '{self.name}' published no data that sociolab can import")
        return self.importer(store, directory, on_run=on_run)


def library_suite(name: str) -> Path:
    """scenarios/library/NAME.yaml, wherever the package is installed."""
    from sociolab import scenarios

    return Path(scenarios.__file__).parent / "library" / f"{name}.yaml"


def library_judges(name: str) -> Path:
    """judges/library/NAME.yaml, wherever the package is installed."""
    from sociolab import judges

    return Path(judges.__file__).parent / "library" / f"{name}.yaml"

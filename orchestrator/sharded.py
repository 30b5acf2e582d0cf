"""A store whose runs are written as Parquet shards, never into its DuckDB file.

`ShardedStore` is a `Store` over a private in-memory DuckDB (the same schema): the runner and
the event sink write batches into it exactly as into a file, and when a run ends
(`finish_run`) its rows are published as a shard of the file (orchestrator/shards.py) and
dropped from memory. The bookkeeping readers that decide what to do (which runs are complete,
the response cache) read the file plus its shards, read-only, one question at a time. An
unfinished run is redone from scratch rather than continued (its committed rounds lived in one
process's memory only), and the shard a redo writes replaces what the file holds for that run,
so nothing is ever deleted from the file. This is what a worker of a distributed executor runs
(docs/scale.md).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable

from . import shards
from .rows import RunRow
from .store import Store


class ShardedStore(Store):
    """Writes to memory, publishes each finished run as a shard of `db`; reads `db` and its shards."""

    def __init__(self, db: str | Path):
        super().__init__(Store.open(":memory:").con, str(db))
        self.can_resume = False
        if not Path(db).exists():
            Store.open(db).close()  # an empty store file, which `sociolab` commands open with its shards

    def readers(self) -> Store:
        """The file and its shards, opened read-only for one question."""
        return Store.open_read_only(self.path)

    def runs(self, run_ids: Iterable[str]) -> list[RunRow]:
        with self.readers() as store:
            return store.runs(run_ids)

    def run_states(self, run_ids: Iterable[str]) -> dict[str, tuple[str, str | None]]:
        with self.readers() as store:
            return store.run_states(run_ids)

    def runs_with_events(self, run_ids: Iterable[str]) -> list[str]:
        with self.readers() as store:
            return store.runs_with_events(run_ids)

    def load_cache(self, models: Iterable[str]) -> dict[str, str]:
        with self.readers() as store:
            return store.load_cache(models)

    def check_redo(self, run_ids: Iterable[str]) -> None:
        """A redone run's new shard replaces its older state: nothing to refuse."""

    async def finish_run(self, run_id: str) -> None:
        await self.run_blocking(self.publish, run_id)

    def publish(self, run_id: str) -> shards.Entry:
        """The run's rows as a shard of the file (atomically), then gone from memory (with the
        cache entries and codebooks the shard carries)."""
        entry = shards.publish(self.con, self.path, run_id)
        self.delete_runs([run_id])
        with self.transaction():
            self.con.execute("DELETE FROM llm_cache")
            self.con.execute("DELETE FROM codebooks")
        return entry

"""The public Python API: run a scenario or suite file, and open a store to read results.

    import sociolab
    report = sociolab.run("scenarios/library/demo.yaml", db="demo.duckdb", sim=True)
    assert report.ok
    with sociolab.open("demo.duckdb") as results:
        rows = results.sql("SELECT sender_name, count(*) AS n FROM messages GROUP BY ALL")

`run` is what `sociolab run` does, without the screen output: errors a user can fix raise
`sociolab.UserError`; a run's own failures are in the returned report. In a notebook, whose event
loop is already running, use `await sociolab.run_async(...)`.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, Iterable, Mapping

from sociolab.base.errors import UserError
from sociolab.config import Overrides, Plan, load_plan
from sociolab.orchestrator.client import RetryListener
from sociolab.orchestrator.store import Store
from sociolab.runner import Progress, RunReport, client_for, execute

__all__ = ["run", "run_async", "run_plan_async", "open", "Results", "RunReport", "messages_df", "codes_df", "runs_df", "outcomes_df"]


async def run_async(file: str | Path, db: str | Path = "sociolab.duckdb", *, sim: bool = False,
                    series: Iterable[str] | None = None, fresh: bool = False, concurrency: int | None = None,
                    max_cost: float | None = None, progress: Progress | None = None,
                    on_retry: RetryListener | None = None, model: str | None = None,
                    agent_models: Mapping[str, str] | None = None,
                    params: Mapping[str, Any] | None = None) -> RunReport:
    """Run every run of a scenario or suite file that `db` does not hold complete yet.

    `file` is a path or a library scenario's name (`"quickstart"`). `sim` replaces each model by a
    sim stand-in named after it; `series` keeps only these series; `fresh` redoes complete runs;
    `concurrency` overrides the file's runs in flight; `max_cost` (USD) starts no priced call once
    spent, leaving the store resumable. `model` replaces every agent's model, `agent_models` one
    persona's by key, `params` sets params (dotted keys for nested ones), as `sociolab run --model`
    and `-P` do: they are stored in each run's config."""
    check_max_cost(max_cost)
    overrides = Overrides.build(model, agent_models, params)
    plan = load_plan(Path(file), sim=sim, only_series=list(series) if series is not None else None,
                     overrides=overrides)
    return await run_plan_async(plan, db, fresh=fresh, concurrency=concurrency, max_cost=max_cost,
                                progress=progress, on_retry=on_retry)


async def run_plan_async(plan: Plan, db: str | Path = "sociolab.duckdb", *, fresh: bool = False,
                         concurrency: int | None = None, max_cost: float | None = None,
                         progress: Progress | None = None, on_retry: RetryListener | None = None,
                         shards: bool = False, executor: str = "local", address: str | None = None,
                         workers: int | None = None) -> RunReport:
    """`run_async` for a plan already loaded (`sociolab.config.load_plan`): the CLI reads the
    plan first, to say after the run what to try next for its kind. With `shards`, each finished
    run is written as a Parquet shard beside the file, never into it (docs/scale.md); executor
    `ray` plays the runs on a Ray cluster (at `address`, else one started here), always into shards."""
    check_max_cost(max_cost)
    if concurrency is not None:
        if concurrency < 1:
            raise UserError(f"concurrency {concurrency}: give at least 1")
        plan.file.concurrency = concurrency
    if executor == "ray":
        from sociolab.ray_executor import execute_on_ray

        return await execute_on_ray(plan, db, progress, fresh=fresh, address=address, workers=workers,
                                    max_cost=max_cost)
    client = client_for(plan, max_cost=max_cost, on_retry=on_retry)
    if shards:
        from sociolab.orchestrator.sharded import ShardedStore

        store: Store = ShardedStore(db)
    else:
        store = Store.open(db)
    with store:
        report = await execute(plan, store, progress, fresh=fresh, client=client)
    report.spent_usd = client.budget.spent_usd if client.budget is not None else None
    return report


def check_max_cost(max_cost: float | None) -> None:
    """Before any file is read: a budget that cannot be one is the first thing to say."""
    if max_cost is not None and not max_cost >= 0:
        raise UserError(f"max_cost {max_cost}: give a budget in USD, 0 or more")


def run(file: str | Path, db: str | Path = "sociolab.duckdb", **options: Any) -> RunReport:
    """`run_async` from synchronous code (a script, the CLI); see it for the options."""
    return asyncio.run(run_async(file, db, **options))


class Results:
    """A store opened read-only, with the queries people ask of it most. `connection` is the
    DuckDB connection itself, for anything else (`results.connection.sql(q).df()` for pandas)."""

    def __init__(self, store: Store):
        self._store = store
        self.connection = store.con

    def sql(self, query: str, params: list[Any] | None = None) -> list[dict[str, Any]]:
        """Rows of a query as dicts keyed by column name."""
        cursor = self.connection.execute(query, params or [])
        names = [d[0] for d in cursor.description or []]
        return [dict(zip(names, row)) for row in cursor.fetchall()]

    def runs(self) -> list[dict[str, Any]]:
        """Every run with its suite, series, scenario, status and times, oldest first."""
        return self.sql("SELECT * FROM runs ORDER BY started_at, run_id")

    def messages(self, run_id: str) -> list[dict[str, Any]]:
        """One run's conversation in the order it happened."""
        return self.sql("SELECT * FROM messages WHERE run_id = ? ORDER BY seq", [run_id])

    def analyze(self, **options: Any) -> dict[str, Any]:
        """What `sociolab analyze --json` prints: profiles, similarity, series tests, agreement."""
        from sociolab.analysis.analyze import analyze
        from sociolab.studies import family_for_unlabelled_runs

        options.setdefault("fallback_family", family_for_unlabelled_runs(self.connection))
        return analyze(self.connection, **options)

    def close(self) -> None:
        self._store.close()

    def __enter__(self) -> "Results":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open(db: str | Path = "sociolab.duckdb") -> Results:  # noqa: A001 - sociolab.open reads as intended
    """Open a store read-only (it stays usable by a run writing elsewhere, never written to)."""
    return Results(Store.open_read_only(db))


# ---- dataframes (the `dataframes` extra: pandas, polars, pyarrow) ------------------------------

FRAME_QUERIES = {
    "messages": "SELECT * FROM messages ORDER BY run_id, seq",
    "codes": "SELECT * FROM codes ORDER BY run_id, message_id, codebook_id, flag, judge",
    "runs": "SELECT * FROM runs ORDER BY started_at, run_id",
    "outcomes": "SELECT * FROM outcomes ORDER BY run_id, agent_id NULLS FIRST, metric",
}


def frame(table: str, db: str | Path, polars: bool) -> Any:
    """One table of a store opened read-only, as a pandas DataFrame (or a polars one). The
    libraries are an optional extra; without them, one line says how to get them. JSON columns
    come as JSON text."""
    needed = ("polars", "pyarrow") if polars else ("pandas",)
    for module in needed:
        try:
            __import__(module)
        except ImportError:
            raise UserError(f"{table}_df needs {module}, which is not installed: "
                            "pip install 'sociolab[dataframes]'") from None
    with Store.open_read_only(db) as store:
        relation = store.con.sql(FRAME_QUERIES[table])
        return relation.pl() if polars else relation.df()


def messages_df(db: str | Path = "sociolab.duckdb", *, polars: bool = False) -> Any:
    """Every message of every run (docs/schema.md, `messages`), in conversation order."""
    return frame("messages", db, polars)


def codes_df(db: str | Path = "sociolab.duckdb", *, polars: bool = False) -> Any:
    """Every judge code: one row per message x judge x flag (`codes`; `value` is NULL when uncodable)."""
    return frame("codes", db, polars)


def runs_df(db: str | Path = "sociolab.duckdb", *, polars: bool = False) -> Any:
    """Every run with its suite, series, kind, config (JSON text), status and times, oldest first."""
    return frame("runs", db, polars)


def outcomes_df(db: str | Path = "sociolab.duckdb", *, polars: bool = False) -> Any:
    """Every scored outcome of the game and safety scenarios: run, agent, metric, value, detail."""
    return frame("outcomes", db, polars)

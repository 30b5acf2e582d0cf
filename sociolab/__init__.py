"""sociolab: behavioural experiments with groups of LLM agents.

The installed package is one namespace: the five packages of the repository are installed under it
(`sociolab.orchestrator`, `sociolab.personas`, `sociolab.scenarios`, `sociolab.judges`,
`sociolab.analysis`), and this folder is the composition root above them: the CLI, the run plan,
and the small public Python API:

    import sociolab
    report = sociolab.run("scenarios/library/demo.yaml", db="demo.duckdb")
    with sociolab.open("demo.duckdb") as results:
        results.sql("SELECT model, count(*) FROM messages GROUP BY ALL")
    messages = sociolab.messages_df("demo.duckdb")   # pandas (polars=True: polars); also codes_df,
                                                     # runs_df, outcomes_df: `pip install sociolab[dataframes]`

`run`, `open` and the `*_df` functions are imported on first use, so `import sociolab` stays cheap.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.2.0"

FRAMES = ("messages_df", "codes_df", "runs_df", "outcomes_df")
__all__ = ["__version__", "run", "run_async", "open", "Results", "UserError", *FRAMES]

if TYPE_CHECKING:
    from sociolab.api import Results, codes_df, messages_df, open, outcomes_df, run, run_async, runs_df
    from sociolab.base.errors import UserError


def __getattr__(name: str) -> Any:
    """The public API, imported when first asked for (PEP 562)."""
    if name in ("run", "run_async", "open", "Results", *FRAMES):
        from sociolab import api

        return getattr(api, name)
    if name == "UserError":
        from sociolab.base.errors import UserError

        return UserError
    raise AttributeError(f"module 'sociolab' has no attribute {name!r}")

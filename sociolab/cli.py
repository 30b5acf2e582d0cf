"""The `sociolab` command line.

Imports stay inside commands so that `sociolab --help` and `sociolab sql` start fast; litellm is
imported only when a real model is called. Errors a user can fix print one line and exit 2. An
unexpected exception prints one line saying where its traceback is (the log file, orchestrator/
logs.py) and exits 1.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Optional, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from sociolab.base.errors import UserError, first_line

if TYPE_CHECKING:
    from sociolab.analysis.profiles import Rule

T = TypeVar("T")
app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_enable=False,
                  help="sociolab: behavioural experiments with groups of LLM agents.")

# Piped output gets wide lines rather than rich's 80-column default, so tables stay readable.
console = Console(width=None if sys.stdout.isatty() else 200, emoji=False)  # ":x:" in stored text stays ":x:"
err_console = Console(stderr=True, width=None if sys.stderr.isatty() else 400, emoji=False)


def print_version(value: bool) -> None:
    if value:
        from sociolab import __version__

        console.print(f"sociolab {__version__}", markup=False, highlight=False)
        raise typer.Exit()


@app.callback()
def global_options(
    ctx: typer.Context,
    version: bool = typer.Option(False, "--version", callback=print_version, is_eager=True,
                                 help="print the version and exit"),
    verbose: bool = typer.Option(False, "--verbose", "-v", help="also show INFO messages on stderr; "
                                 "the log file gets DEBUG"),
    log_file: Optional[Path] = typer.Option(None, "--log-file", dir_okay=False,
                                            help="append the log here (INFO and up, with tracebacks) from the "
                                                 "start; default: <db>.log next to --db, written only when "
                                                 "something goes wrong"),
    env_file: Optional[Path] = typer.Option(None, "--env-file", dir_okay=False,
                                            help="read API keys from this file instead of ./.env (variables "
                                                 "already set win)"),
) -> None:
    """Options for every command: `sociolab --verbose run ...`."""
    import logging

    from sociolab.orchestrator.logs import setup_logging

    setup_logging(verbose, log_file)
    load_env_file(env_file)
    logging.getLogger(__name__).info("sociolab %s", ctx.invoked_subcommand)


def load_env_file(path: Optional[Path]) -> None:
    """API keys from a `.env` file, as Inspect and promptfoo read them: `--env-file PATH`, else
    `./.env` if there is one. A variable already set in the environment is never overridden.
    Every value read is registered for redaction, so no key from the file reaches the screen,
    the log or the store; nothing of the file is stored or printed."""
    import os

    from dotenv import dotenv_values

    from sociolab.orchestrator.redact import register_secrets

    if path is None:
        path = Path(".env")
        if not path.is_file():
            return
    elif not path.is_file():
        raise UserError(f"--env-file {path}: no such file")
    values = {name: value for name, value in dotenv_values(path).items() if value is not None}
    register_secrets(list(values.values()))
    for name, value in values.items():
        os.environ.setdefault(name, value)


def log_beside_db(db: Path) -> Path:
    """--db also places the default log file: `x.duckdb` logs to `x.log`."""
    from sociolab.orchestrator.logs import log_beside

    if not str(db) or not db.name:
        raise UserError(f"--db '{db}': give a database file name, e.g. --db results.duckdb")
    log_beside(db)
    return db


def seed_option(help: str):
    """--seed of any command: a whole number from 0 (numpy and DuckDB refuse negative seeds)."""
    return typer.Option(0, help=help, callback=lambda value: in_range("--seed", value, 0, 2**63 - 1))


DB_OPTION = typer.Option("sociolab.duckdb", "--db", help="DuckDB file to use.", callback=log_beside_db)


def counted(n: int, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """`1 run`, `2 runs`: sociolab/progress.py's, imported on first use (it loads rich.progress,
    which `sociolab --help` need not)."""
    from sociolab.progress import counted as count_text

    return count_text(n, noun, plural, grouped=grouped)


@app.command()
def run(
    file: Path = typer.Argument(..., help="scenario or suite YAML file, or a library scenario's name "
                                "(sociolab list)"),
    db: Path = DB_OPTION,
    sim: bool = typer.Option(False, "--sim", help="replace every model with a sim stand-in named "
                             "after it (after --model: the stand-in of the model given)"),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="NAME: every agent's model; KEY=NAME: "
                                              "persona KEY's (repeatable); stored in the runs' config"),
    param: Optional[list[str]] = typer.Option(None, "--param", "-P", help="key=value: set a param of the file "
                                              "(dotted keys for nested ones, values read as YAML; repeatable); "
                                              "stored in the runs' config"),
    series: Optional[str] = typer.Option(None, help="run only these series (comma-separated)"),
    fresh: bool = typer.Option(False, "--fresh", help="redo runs that are already complete"),
    concurrency: Optional[int] = typer.Option(None, help="runs in flight at once (default: the file's)"),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="USD: no call starts once this is spent; "
                                             "the store stays resumable and the command exits 1"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print calls, estimated tokens and cost per model; "
                                 "call nothing, write nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
    shards: bool = typer.Option(False, "--shards", help="write each finished run as a Parquet shard beside "
                                "--db (DB.shards/), never into the file; `sociolab merge` folds them in"),
    executor: str = typer.Option("local", "--executor", help="local: this process; ray: Ray actors across a "
                                 "cluster, writing shards (implies --shards; docs/scale.md)"),
    address: Optional[str] = typer.Option(None, "--address", help="with --executor ray: the cluster to join "
                                          "(host:port, or auto); default: start one on this machine"),
    workers: Optional[int] = typer.Option(None, "--workers", help="with --executor ray: worker actors "
                                          "(default: one per CPU of the cluster)"),
) -> None:
    """Run a scenario or a suite; a rerun resumes where the last one stopped."""
    import asyncio

    from sociolab.api import run_plan_async
    from sociolab.config import Overrides, load_plan
    from sociolab.progress import RichProgress
    from sociolab.orchestrator.store import Store

    check_budget(max_cost)
    if concurrency is not None:
        in_range("--concurrency", concurrency, 1, 256)
    if executor not in ("local", "ray"):
        raise UserError(f"--executor {executor}: give local or ray")
    if executor == "local" and (address is not None or workers is not None):
        raise UserError("--address and --workers go with --executor ray")
    if workers is not None:
        in_range("--workers", workers, 1, 4096)
    only = series.split(",") if series else None
    plan = load_plan(file, sim=sim, only_series=only, overrides=Overrides.parse(model or [], param or []))
    if dry_run:
        from sociolab.estimate import rehearse

        print_estimate(f"{counted(len(plan.runs), 'run')} of {file}", asyncio.run(rehearse(plan)))
        return
    progress = RichProgress(console, enabled=not quiet)
    report = asyncio.run(run_plan_async(plan, db, fresh=fresh, concurrency=concurrency, max_cost=max_cost,
                                        progress=progress, on_retry=progress.retry, shards=shards,
                                        executor=executor, address=address, workers=workers))
    with Store.open_read_only(db) as store:  # the file and its shards
        counts = store.counts()
        scored = has_outcomes(store, plan.file.name)
    print_summary(db, report, counts)
    print_next_step(db, scored)
    print_run_failures(report)
    if report.incomplete:
        err_console.print(f"{counted(len(report.incomplete), 'run')} incomplete: a provider failed after retries "
                          f"(see llm_calls.error); rerun the same command to redo them", markup=False)
    if report.spent_usd is not None:
        console.print(f"This invocation spent ${report.spent_usd:.4f} of its ${max_cost:.4f} budget "
                      "(calls of runs left unfinished included: they are redone, and paid again, by a rerun).",
                      markup=False, highlight=False)
    if report.unfinished_by_budget:
        err_console.print(f"budget of ${max_cost:.4f} reached: {counted(len(report.unfinished_by_budget), 'run')} "
                          "left unfinished; rerun with a higher --max-cost to finish them", markup=False)
    if not report.ok:
        raise typer.Exit(1)


def has_outcomes(store, suite: str) -> bool:
    """Whether the suite's runs scored outcomes (games, safety scenarios): then `results` is next."""
    (found,) = store.con.execute("SELECT EXISTS (SELECT 1 FROM outcomes o JOIN runs r USING (run_id) "
                                 "WHERE r.suite = ?)", [suite]).fetchone()
    return bool(found)


@app.command()
def merge(db: Path = DB_OPTION) -> None:
    """Fold the Parquet shards beside --db (DB.shards/, from `run --shards`) into the DuckDB file."""
    from sociolab.orchestrator import shards as shard_files
    from sociolab.orchestrator.store import Store

    if db.exists() and not db.is_file():
        raise UserError("not a database file (a folder?); check --db", file=db)
    if not shard_files.root(db).is_dir():
        if not db.exists():
            raise UserError(f"no such database file and no shards ({shard_files.root(db)}); check --db", file=db)
        console.print(f"nothing to merge: {db} has no shards", markup=False, highlight=False)
        return
    with Store.open(db) as store:
        merged, leftovers = store.merge_shards()
    console.print(f"{counted(merged, 'run')} merged into {db}"
                  + (f"; {counted(leftovers, 'leftover')} of killed writers removed" if leftovers else ""),
                  markup=False, highlight=False)


@app.command("list")
def list_library() -> None:
    """What there is to run and code with: scenario kinds, library scenarios, codebooks, rosters, judge configs,
    Big-Five characters."""
    console.print("[bold]Scenario kinds[/bold] (kind: in a file; docs/scenarios.md)")
    print_rows(scenario_kinds())
    console.print("\n[bold]Library scenarios[/bold] (sociolab run NAME)")
    print_rows(library_scenario_rows())
    console.print("\n[bold]Codebooks[/bold] (sociolab judge --codebook NAME)")
    print_rows(codebook_rows())
    console.print("\n[bold]Rosters[/bold] (agents: {roster: NAME})")
    print_rows(roster_rows())
    console.print("\n[bold]Judge configs[/bold] (sociolab judge --config FILE)")
    print_rows(judge_config_rows())
    console.print("\n[bold]Characters (P1..P16)[/bold] (a persona's character: ID; docs/personas.md)")
    print_rows(character_rows())


def print_rows(rows: list[tuple[str, str]]) -> None:
    """`  name   what it is`, one line each, names aligned; stored text is never read as markup."""
    width = max((len(name) for name, _ in rows), default=0)
    for name, what in rows:
        console.print(f"  {name.ljust(width)}  {what}".rstrip(), markup=False, highlight=False, soft_wrap=True)


def first_sentence(text: str | None, limit: int = 120) -> str:
    """A description's first sentence, at most `limit` characters, for a one-line listing."""
    import re

    flat = " ".join((text or "").split())
    end = re.search(r"[a-z0-9)\"']\. ", flat)  # not after an initial: "(H. El Kandoussi"
    sentence = flat[:end.start() + 2] if end else flat
    return sentence if len(sentence) <= limit else sentence[:limit - 3].rstrip() + "..."


def with_origins(own: list[str], plugins: dict) -> list[tuple[str, str]]:
    """sociolab's own names, then the plugins' others, each with where it comes from: '' for
    sociolab's, ' (plugin DIST)' for a plugin's (`plugins`: name -> its entry points)."""
    from sociolab.base.plugins import distribution

    others = sorted(name for name in plugins if name not in own)
    return [(name, "") for name in own] + [
        (name, f" (plugin {' and '.join(distribution(ep) for ep in plugins[name])})") for name in others]


def scenario_kinds() -> list[tuple[str, str]]:
    """Built-in and plugin kinds with their docstring's first line (the class's, else its module's).
    A plugin that cannot be loaded is listed with why, not left out."""
    from sociolab.scenarios.registry import BUILTIN, PLUGINS, scenario_class

    rows = []
    for kind, origin in with_origins(sorted(BUILTIN), PLUGINS.declared()):
        try:
            cls = scenario_class(kind)
        except UserError as exc:
            rows.append((kind, f"cannot be loaded: {exc}"))
            continue
        doc = cls.__doc__ or getattr(sys.modules.get(cls.__module__), "__doc__", None)
        rows.append((kind, first_sentence(doc) + origin))
    return rows


def library_scenario_rows() -> list[tuple[str, str]]:
    """Library scenario files: name, the file's `name:`, how many runs, its description (or its
    first comment line, after the editor's schema line)."""
    from sociolab.config import describe_file, library_scenarios

    rows = []
    for name, path in library_scenarios().items():
        runfile, runs = describe_file(path)
        about = runfile.description or first_comment(path)
        rows.append((name, f"{runfile.kind}, {counted(runs, 'run')}: {first_sentence(about)}"))
    return rows


def first_comment(path: Path) -> str:
    """The comment block that opens a YAML file, without the yaml-language-server line: what a
    library file without `description:` says about itself."""
    lines = []
    for line in path.read_text(encoding="utf-8").splitlines():
        if not line.startswith("#"):
            break
        if "yaml-language-server" not in line:
            lines.append(line.lstrip("#").strip())
    return " ".join(lines)


def codebook_rows() -> list[tuple[str, str]]:
    """Library and plugin codebooks with their flags."""
    from sociolab.judges.codebook import PLUGINS, library_names, load_codebook

    rows = []
    for name, origin in with_origins(library_names(), PLUGINS.declared()):
        try:
            codebook = load_codebook(name)
        except UserError as exc:
            rows.append((name, f"cannot be loaded: {exc}{origin}"))
            continue
        rows.append((name, f"{counted(len(codebook.flag_names), 'flag')}: {', '.join(codebook.flag_names)}{origin}"))
    return rows


def roster_rows() -> list[tuple[str, str]]:
    """Library rosters, with their number of personas and description."""
    from sociolab.base.yamlfile import read_yaml, validate
    from sociolab.personas.models import LIBRARY, RosterFile

    rows = []
    for path in sorted(LIBRARY.glob("*.yaml")):
        roster = validate(read_yaml(path), RosterFile)
        rows.append((path.stem, f"{counted(len(roster.personas), 'persona')}: {first_sentence(roster.description)}"))
    return rows


def character_rows() -> list[tuple[str, str]]:
    """The Big-Five library's characters: id, poles as a label (C+A+) and in words."""
    from sociolab.personas.characters import TRAIT_NAMES, big_five, character_label, poles_of

    rows = []
    for cid in big_five().characters:
        poles = poles_of(cid)
        words = ", ".join(f"{pole} {TRAIT_NAMES[t]}" for t, pole in poles.items())
        rows.append((cid, f"{character_label(poles)}: {words}"))
    return rows


def judge_config_rows() -> list[tuple[str, str]]:
    """The library's judge configs; judges.yaml is what `sociolab judge` uses by default."""
    from sociolab.judges.runner import LIBRARY, load_judge_config

    rows = []
    for path in sorted(LIBRARY.glob("judges*.yaml")):
        cfg = load_judge_config(path)
        default = " (the default of sociolab judge)" if path.stem == "judges" else ""
        rows.append((path.stem, f"judges {', '.join(cfg.judges)}; codebook {cfg.codebook}{default}"))
    return rows


def print_run_failures(report) -> None:
    """One line per failed run; for an unexpected exception, where its traceback is."""
    from sociolab.orchestrator.logs import traceback_note

    for run_id, error in report.failed:
        note = f" ({traceback_note()})" if run_id in report.internal_errors else ""
        err_console.print(f"run {run_id} failed: {error}{note}", markup=False, highlight=False, soft_wrap=True)


def in_range(option: str, value: int, low: int, high: int) -> int:
    """A count option outside what makes sense is one line, before any work starts."""
    if not low <= value <= high:
        raise UserError(f"{option} {value}: give a whole number from {low:,} to {high:,}")
    return value


def check_budget(max_cost: float | None) -> None:
    if max_cost is not None and not max_cost >= 0:
        raise UserError(f"--max-cost {max_cost}: give a budget in USD, 0 or more")


def print_estimate(what: str, estimates) -> None:
    """The dry-run table: calls, tokens and cost per model; unknown prices said, not zeroed."""
    from rich.table import Table

    table = Table(title=f"Dry run: {escape(what)} (estimated on sim stand-ins; nothing called)")
    for col in ("model", "calls", "prompt tokens", "completion tokens", "est. cost USD"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for e in estimates:
        cost = "unknown" if e.cost_usd is None else f"{e.cost_usd:.4f}"
        table.add_row(escape(e.model), str(e.calls), f"{e.prompt_tokens:,}", f"{e.completion_tokens:,}", cost)
    console.print(table)
    known = [e.cost_usd for e in estimates if e.cost_usd is not None]
    unknown = [e.model for e in estimates if e.cost_usd is None]
    line = f"Total: {counted(sum(e.calls for e in estimates), 'call')}, " + (f"${sum(known):.4f}" if known else "cost unknown")
    if unknown and known:
        line += f" + unknown for {', '.join(unknown)}"
    if unknown:
        line += " (no price known: add prices: to the file)"
    console.print(line, markup=False)


def cost_text(cost_usd: float, unpriced: list[str]) -> str:
    """A cost that never passes off unknown prices as free."""
    text = f"cost ${cost_usd:.4f}"
    if unpriced:
        text += f" + unknown for {', '.join(unpriced)} (no price known; set prices:)"
    return text


def print_summary(db: Path, report, counts: dict) -> None:
    done = f"{report.completed} completed"
    if report.stopped:
        done += f", {report.stopped} stopped early (too many agent failures)"
    if report.skipped:
        done += f", {report.skipped} already complete"
    if report.incomplete:
        done += f", {len(report.incomplete)} incomplete (provider failures; rerun to redo them)"
    if report.unfinished_by_budget:
        done += f", {len(report.unfinished_by_budget)} unfinished (budget reached)"
    if report.failed:
        done += f", {len(report.failed)} failed (left unfinished; rerun to redo them)"
    console.print(f"\n[bold]Runs:[/bold] {report.planned} planned: {done}.")
    console.print(f"[bold]Store:[/bold] {escape(str(db.resolve()))} holds {counted(counts['runs'], 'run')}, "
                  f"{counted(counts['agents'], 'agent')}, "
                  f"{counted(counts['messages'], 'agent message')} ({counted(counts['errors'], 'error')}), "
                  f"{counted(counts['llm_calls'], 'LLM call')}, {counted(counts['tokens'], 'token', grouped=True)}, "
                  f"{cost_text(counts['cost_usd'], counts['unpriced_models'])}.", highlight=False)


def print_next_step(db: Path, scored: bool) -> None:
    """The command to try next, never wrapped inside it (soft_wrap: the terminal may fold the line,
    a copy still pastes as one command): the rates for a scored run, a query for a conversation."""
    import shlex

    where = shlex.quote(str(db))
    if scored:
        hint = f"sociolab results --db {where}"
    else:
        hint = ("sociolab sql \"SELECT sender_name, count(*) AS messages, round(avg(length(content))) AS avg_chars "
                f"FROM messages WHERE sender <> 'user' GROUP BY ALL ORDER BY messages DESC\" --db {where}")
    console.print(f"[bold]Try:[/bold] {escape(hint)}", soft_wrap=True, highlight=False)


@app.command()
def sql(
    query: str = typer.Argument(..., help="SQL to run (read-only)"),
    db: Path = DB_OPTION,
    format: str = typer.Option("table", "--format", "-f", help="table | csv | json"),
    limit: Optional[int] = typer.Option(None, "--limit", "-n", help="print at most N rows (default: 200 for "
                                        "the table, all for csv and json, streamed)"),
) -> None:
    """Query the store read-only, e.g. sociolab sql "SELECT * FROM runs"."""
    from sociolab.orchestrator.query import run_query

    if format not in ("table", "csv", "json"):
        raise UserError(f"unknown --format '{format}': use table, csv or json")
    if limit is not None and limit < 1:
        raise UserError(f"--limit must be at least 1 (got {limit})")
    run_query(db, query, format, limit, console)


@app.command("serve-sim")
def serve_sim(
    port: int = typer.Option(8765, help="port on 127.0.0.1 (0 picks a free one)"),
    host: str = typer.Option("127.0.0.1", help="loopback address to bind"),
    fail_rate: float = typer.Option(0.0, help="share of requests that fail (429/500/503)"),
    fault_kinds: str = typer.Option("429,500,503", help="status codes failures are drawn from"),
    retry_after: float = typer.Option(1.0, help="Retry-After seconds sent with 429"),
    latency_ms: float = typer.Option(0.0, help="delay added to every reply"),
    latency_jitter_ms: float = typer.Option(0.0, help="random extra delay, up to this"),
    slow_rate: float = typer.Option(0.0, help="share of replies that are very slow"),
    slow_ms: float = typer.Option(5000.0, help="delay of a slow reply"),
    malformed_rate: float = typer.Option(0.0, help="share of replies with a malformed JSON body"),
    fail_first: int = typer.Option(0, help="the first N requests fail with 503"),
    seed: int = seed_option("seed of the fault draws"),
    api_key: Optional[str] = typer.Option(None, help="require this bearer token"),
    verbose: bool = typer.Option(False, "--verbose", help="log every request"),
) -> None:
    """Serve the sim over an OpenAI-compatible HTTP API on loopback, with fault injection."""
    from sociolab.orchestrator.sim.server import FaultConfig, serve

    try:
        kinds = [int(k) for k in fault_kinds.split(",") if k.strip()]
        faults = FaultConfig(fail_rate=fail_rate, fault_kinds=kinds, retry_after=retry_after,
                             latency_ms=latency_ms, latency_jitter_ms=latency_jitter_ms,
                             slow_rate=slow_rate, slow_ms=slow_ms, malformed_rate=malformed_rate,
                             fail_first=fail_first, fault_seed=seed)
    except ValueError as exc:
        raise UserError(f"serve-sim: {str(exc).splitlines()[0]}") from None
    try:
        serve(host=host, port=port, faults=faults, api_key=api_key, verbose=verbose)
    except ValueError as exc:
        raise UserError(f"serve-sim: {exc}") from None
    except OSError as exc:
        raise UserError(f"serve-sim: cannot listen on {host}:{port}: {exc.strerror or exc}") from None


@app.command()
def judge(
    db: Path = DB_OPTION,
    judges: Optional[str] = typer.Option(None, help="judge models, comma-separated (default: the config's)"),
    codebook: Optional[str] = typer.Option(None, help="codebook: library name or YAML path"),
    config: Optional[Path] = typer.Option(None, help="judge config YAML (default judges/library/judges.yaml)"),
    runs: Optional[str] = typer.Option(None, help="only runs whose id matches this glob, e.g. 'warroom/A/*'"),
    series: Optional[str] = typer.Option(None, help="only these series (comma-separated)"),
    window: Optional[int] = typer.Option(None, help="preceding messages shown as context"),
    batch: Optional[int] = typer.Option(None, help="messages coded per call"),
    sim: bool = typer.Option(False, "--sim", help="replace every judge with an offline sim judge named after it"),
    max_cost: Optional[float] = typer.Option(None, "--max-cost", help="USD: no judge call starts once this is "
                                             "spent; codes so far are kept, exit 1"),
    dry_run: bool = typer.Option(False, "--dry-run", help="print calls, estimated tokens and cost per judge; "
                                 "call nothing, write nothing"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
) -> None:
    """Code every message not yet coded by each judge; resumable."""
    import asyncio

    from sociolab.judges.runner import client_for, estimate_judging, judge_store, load_judge_config
    from sociolab.orchestrator.sim.naming import judge_stand_in
    from sociolab.base.errors import BudgetExhausted
    from sociolab.progress import JudgeProgress
    from sociolab.orchestrator.store import Store

    check_budget(max_cost)

    cfg = load_judge_config(config)
    updates: dict[str, object] = {k: v for k, v in (("codebook", codebook), ("window", window), ("batch", batch))
                                  if v is not None}
    chosen = [j.strip() for j in judges.split(",") if j.strip()] if judges else cfg.judges
    if judges:
        updates["judges"] = chosen
    if sim:
        updates["judges"] = [judge_stand_in(j) for j in chosen]
    cfg = validated_judge_config(cfg, updates)
    only_series = series.split(",") if series else None
    if dry_run:
        with Store.open_read_only(db) as store:
            estimates = estimate_judging(store, cfg, run_glob=runs, series=only_series)
        print_estimate(f"judging {db}", estimates)
        return
    progress = JudgeProgress(console, enabled=not quiet)
    client = client_for(cfg, max_cost=max_cost, on_retry=progress.retry)
    with Store.open(db) as store:
        with progress:
            try:
                report = judge_within_budget(store, lambda: asyncio.run(judge_store(
                    store, cfg, run_glob=runs, series=only_series, client=client, on_progress=progress.update)))
            except BudgetExhausted:
                report = None
    if report is None:
        err_console.print(f"budget of ${max_cost:.4f} reached; the codes paid for are stored. Rerun with a higher "
                          "--max-cost to code the rest", markup=False)
        raise typer.Exit(1)
    for j in cfg.judges:
        console.print(f"{j}: {report.coded[j]} coded, {report.uncodable[j]} uncodable, {counted(report.failed[j], 'failed call')}, "
                      f"{report.already[j]} already coded.", markup=False)
    console.print(f"{counted(report.calls, 'judge call')}, {cost_text(report.cost_usd, sorted(report.unpriced))}. "
                  f"Next: sociolab agreement --db {db}", markup=False, highlight=False, soft_wrap=True)
    exit_if_judge_calls_failed(report)


def judge_within_budget(store, judge: Callable[[], T]) -> T:
    """judge() with the store's DuckDB under a memory budget (issue 12): selecting what is left to
    code is an anti-join of the messages with every stored code, whose hash table and cached blocks
    grew with the store (1.1 GB on 22M codes with nothing left to code). Over the budget, DuckDB
    spills into `<db>.tmp`; a statement that cannot spill makes judge() run again without the
    budget, and a rerun codes only what is not stored yet."""
    from sociolab.analysis.memory import JUDGE_MEMORY_LIMIT, within_budget

    return within_budget(store.con, judge, memory_limit=JUDGE_MEMORY_LIMIT)


def validated_judge_config(cfg, updates: dict):
    """CLI options go through the same validation as the YAML config."""
    from pydantic import ValidationError

    from sociolab.judges.runner import JudgeConfig

    try:
        return JudgeConfig.model_validate({**cfg.model_dump(), **updates})
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(x) for x in err["loc"])
        raise UserError(f"judge option {where}: {err['msg']}") from None


def exit_if_judge_calls_failed(report) -> None:
    if sum(report.failed.values()):
        err_console.print("some judge calls failed at the provider (see llm_calls.error); "
                          "rerun the same command to retry only those")
        raise typer.Exit(1)


def writable_output(path: Path) -> Path:
    """Check an output path before any work is done, so a typo costs nothing, and never overwrite
    a DuckDB file (the store itself given as `-o`, or any other database) with a report."""
    if not str(path):
        raise UserError("the output file name is empty; give a file name with -o")
    if not path.parent.is_dir():
        raise UserError(f"cannot write {path}: the folder {path.parent} does not exist")
    if path.is_dir():
        raise UserError(f"cannot write {path}: it is a folder")
    if is_duckdb_file(path):
        raise UserError(f"cannot write {path}: it is a DuckDB database (a store?) and would be overwritten; "
                        "give another -o")
    return path


def is_duckdb_file(path: Path) -> bool:
    """DuckDB files carry the magic bytes `DUCK` at offset 8 of their first block."""
    try:
        with path.open("rb") as fh:
            return fh.read(12)[8:12] == b"DUCK"
    except OSError:
        return False


def write_output(path: Path, text: str) -> None:
    """Write a result file; a full disk or a refused write is one line, not a traceback."""
    try:
        path.write_text(text, encoding="utf-8")
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None


@app.command()
def agreement(
    db: Path = DB_OPTION,
    json_out: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
    judges: Optional[str] = typer.Option(None, help="only these judges (comma-separated)"),
    codebook: Optional[str] = typer.Option(None, help="codebook name or path, when codes use several"),
    humans: bool = typer.Option(True, "--humans/--no-humans", help="include imported human codes"),
    csv_file: Optional[Path] = typer.Option(None, "--csv", help="a wide CSV of codings instead of the store"),
    raters: Optional[str] = typer.Option(None, help="with --csv: rater column prefixes, e.g. human,gemini,sonnet"),
    flags: Optional[str] = typer.Option(None, help="only these flags (comma-separated)"),
    ci: bool = typer.Option(True, "--ci/--no-ci", help="bootstrap 95% CIs for kappa"),
    n_boot: int = typer.Option(1000, help="bootstrap resamples"),
    seed: int = seed_option("bootstrap seed"),
) -> None:
    """Agreement per flag and rater pair: kappa (with CIs), % agreement, prevalence, alpha."""
    import duckdb

    from sociolab.analysis.agreement import agreement_report, render_agreement, source_relation, to_json
    from sociolab.analysis.ratings import load_wide_csv, ratings_view_sql
    from sociolab.orchestrator.store import Store

    in_range("--n-boot", n_boot, 1, 100_000)
    flag_list = split(flags)
    if csv_file is not None:
        con = duckdb.connect()
        source = load_wide_csv(con, csv_file, split(raters), flag_list)
        rater_list = split(raters)
    else:
        store = Store.open_read_only(db)
        con = store.con
        codebook_id = None
        if codebook:
            from sociolab.judges.codebook import load_codebook

            codebook_id = load_codebook(codebook).codebook_id
        source = ratings_view_sql(split(judges), humans, codebook_id, include_uncodable=True)
        (coded,) = con.execute(f"SELECT count(*) FROM ({source})").fetchall()[0]
        if not coded:
            raise UserError(f"no codes in {db}; run `sociolab judge --db {db}` first")
        rater_list = None
    present = [r[0] for r in con.execute(f"SELECT DISTINCT flag FROM {source_relation(con, source)} AS s "
                                         "ORDER BY 1").fetchall()]
    missing = sorted(set(flag_list or ()) - set(present))
    if missing:
        raise UserError(f"no ratings for flag '{missing[0]}' (flags: {', '.join(present)})")
    report = agreement_report(con, source, raters=rater_list, flags=flag_list, ci=ci, n_boot=n_boot, seed=seed)
    if json_out:
        import json

        print(json.dumps(to_json(report), indent=1))
    else:
        render_agreement(report, console)


@app.command()
def analyze(
    db: Path = DB_OPTION,
    compare: Optional[list[str]] = typer.Option(None, "--compare", help="series comparison A:B (repeatable)"),
    rule: str = typer.Option("intersection", help="adjudication: intersection | union | majority"),
    codebook: Optional[str] = typer.Option(None, help="codebook name or path, when codes use several"),
    n_perm: int = typer.Option(10000, help="permutations per comparison"),
    seed: int = seed_option("permutation seed"),
    comp_filter: str = typer.Option("none", "--comp-filter", help="compensation filter: none | broadcast (the "
                                    "WarRoom study's: comp counts only on messages naming a crashed agent)"),
    json_out: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
) -> None:
    """Profiles, similarity per run and series, series comparisons, compensation, isolation."""
    from sociolab.analysis.analyze import render

    with Store_read_only(db) as store:
        result = analyze_store(store.con, rule, codebook, compare, n_perm, seed, comp_filter)
    if json_out:
        print_json(result)
    else:
        render(result, console)


def print_json(result: dict) -> None:
    """The result as indented JSON on stdout, written as it is encoded: json.dumps would hold the
    whole text (and every piece of it) at once, tens of MB for a store of 20,000 runs."""
    import json
    import sys

    json.dump(result, sys.stdout, indent=1, ensure_ascii=False)
    sys.stdout.write("\n")


@app.command()
def report(
    db: Path = DB_OPTION,
    output: Path = typer.Option(Path("report.html"), "-o", "--output", help="HTML file to write"),
    compare: Optional[list[str]] = typer.Option(None, "--compare", help="series comparison A:B (repeatable)"),
    rule: str = typer.Option("intersection", help="adjudication: intersection | union | majority"),
    codebook: Optional[str] = typer.Option(None, help="codebook name or path, when codes use several"),
    n_perm: int = typer.Option(10000, help="permutations per comparison"),
    seed: int = seed_option("permutation seed"),
    comp_filter: str = typer.Option("none", "--comp-filter", help="compensation filter: none | broadcast (the "
                                    "WarRoom study's: comp counts only on messages naming a crashed agent)"),
    view_port: int = typer.Option(8700, "--view-port", help="port of `sociolab view` that the report's links "
                                  "open (its --port)"),
) -> None:
    """Write one self-contained HTML report (tables and embedded plots)."""
    from sociolab.analysis.report import build_report

    from sociolab.analysis.memory import within_budget

    in_range("--view-port", view_port, 1, 65535)
    writable_output(output)
    with Store_read_only(db) as store:
        if not store.con.execute("SELECT count(*) FROM codes").fetchone()[0]:
            from sociolab.analysis.report import build_outcome_report

            page = build_outcome_report(store.con, view_port)
            write_output(output, page)
            console.print(f"Wrote {output} ({len(page) // 1024} KB): outcomes only, no judge codes yet (`sociolab "
                          "judge` adds the judged sections). Open it in a browser.", markup=False)
            return
        result = analyze_store(store.con, rule, codebook, compare, n_perm, seed, comp_filter)
        page = within_budget(store.con, lambda: build_report(store.con, result, view_port))  # its sample scans the store
    write_output(output, page)
    console.print(f"Wrote {output} ({len(page) // 1024} KB): {result['data']['runs']} runs, "
                  f"{result['data']['messages']} coded messages. Open it in a browser.", markup=False)


def analyze_store(con, rule: str, codebook: Optional[str], compare: Optional[list[str]], n_perm: int,
                  seed: int, comp_filter: str = "none") -> dict:
    """`analyze` for the analyze and report commands: runs stored before suites declared their
    comparison family get their study's family (sociolab/studies), so old stores keep their numbers."""
    in_range("--n-perm", n_perm, 0, 1_000_000)
    from typing import cast

    from sociolab.analysis.analyze import analyze as run_analysis
    from sociolab.analysis.compensation import CompFilter, check_comp_filter
    from sociolab.studies import family_for_unlabelled_runs

    return run_analysis(con, rule=adjudication_rule(rule), codebook_id=codebook_id_of(codebook), comparisons=compare,
                        n_perm=n_perm, seed=seed, fallback_family=family_for_unlabelled_runs(con),
                        comp_filter=cast("CompFilter", check_comp_filter(comp_filter)))


def adjudication_rule(rule: str) -> Rule:
    """--rule, checked against the rules analysis knows."""
    from typing import cast

    from sociolab.analysis.profiles import check_rule

    return cast("Rule", check_rule(rule))


@app.command()
def replicate(
    study: Optional[str] = typer.Argument(None, help="the study to replicate (omit to list the known studies)"),
    sim: bool = typer.Option(False, "--sim", help="offline: sim agents and sim judges"),
    db: Optional[Path] = typer.Option(None, "--db", help="DuckDB file to use (default: STUDY-replication.duckdb)"),
    output: Optional[Path] = typer.Option(None, "-o", "--output", help="HTML report to write "
                                          "(default: STUDY-report.html)"),
    series: Optional[str] = typer.Option(None, help="only these series (comma-separated)"),
    quiet: bool = typer.Option(False, "--quiet", "-q", help="no progress display"),
) -> None:
    """Run a study's suite, judge it with its judges, and write the report (resumable)."""
    import asyncio

    from sociolab.analysis.analyze import analyze as run_analysis
    from sociolab.analysis.report import build_report
    from sociolab.judges.runner import judge_store, load_judge_config
    from sociolab.orchestrator.sim.naming import judge_stand_in
    from sociolab.config import load_plan
    from sociolab.progress import JudgeProgress, RichProgress
    from sociolab.runner import execute
    from sociolab.orchestrator.store import Store
    from sociolab.studies import known_studies, study as find_study

    if study is None:
        raise UserError(f"name the study to replicate (sociolab replicate STUDY); known studies: {known_studies()}")
    pack = find_study(study)
    db = log_beside_db(db or Path(f"{pack.name}-replication.duckdb"))
    output = writable_output(output or Path(f"{pack.name}-report.html"))
    plan = load_plan(pack.suite, sim=sim, only_series=split(series))
    config = load_judge_config(pack.judge_config).model_copy(update={"codebook": pack.codebook})
    if sim:
        config = config.model_copy(update={"judges": [judge_stand_in(j) for j in config.judges]})
    with Store.open(db) as store:
        console.print(f"[bold]1/3 run[/bold] {counted(len(plan.runs), 'run')} of {escape(pack.suite.name)}")
        ran = asyncio.run(execute(plan, store, RichProgress(console, enabled=not quiet)))
        print_run_failures(ran)
        console.print(f"[bold]2/3 judge[/bold] with {escape(', '.join(config.judges))}")
        with JudgeProgress(console, enabled=not quiet) as progress:
            judged = asyncio.run(judge_store(store, config, on_progress=progress.update))
    with Store.open_read_only(db) as store:
        console.print("[bold]3/3 analyze and report[/bold]")
        result = run_analysis(store.con, fallback_family=pack.family())
        write_output(output, build_report(store.con, result))
    console.print(f"Wrote {output}: {result['data']['runs']} runs, {result['data']['messages']} coded messages. "
                  f"The numbers: sociolab analyze --db {db} --json", markup=False, soft_wrap=True)
    exit_if_judge_calls_failed(judged)


@app.command()
def results(
    db: Path = DB_OPTION,
    json_out: bool = typer.Option(False, "--json", help="print the rows as JSON"),
    by: str = typer.Option("model,condition", help="grouping: model, condition, or any stored factor"),
    metrics: Optional[str] = typer.Option(None, help="only these metrics (comma-separated)"),
    fail_if: Optional[list[str]] = typer.Option(None, "--fail-if",
                                                help="gate, e.g. 'shortcut_used > 0.2' (repeatable); exit 1 if met"),
    contrasts: bool = typer.Option(False, "--contrasts", help="instead: each variant's rate minus the baseline "
                                   "variant's, in points with 95% intervals (Instrumental Choices)"),
    baseline: Optional[str] = typer.Option(None, help="with --contrasts: the baseline variant "
                                           "(default: the paper's dilemma_forbidden_unwatched)"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw the rows as a forest plot (PNG) "
                                        "at this path", metavar="<path>"),
) -> None:
    """Outcome rates per model x condition with Wilson 95% intervals; usable as a CI gate."""
    from sociolab.analysis.results import check_gate, render_results, results as outcome_rows, validate_gate

    if contrasts:
        print_contrasts(db, by, metrics, baseline, json_out)
        return
    with Store_read_only(db) as store:
        for gate in fail_if or []:
            validate_gate(store.con, gate)
        rows = outcome_rows(store.con, metrics=split(metrics), by=tuple(split(by) or ()))
    violations = [v for gate in (fail_if or []) for v in check_gate(rows, gate)]
    if json_out:
        import json

        print(json.dumps([r.to_dict() for r in rows], indent=1, ensure_ascii=False))
    else:
        render_results(rows, console)
    if plot is not None:
        draw_results(rows, plot)
    if violations:
        for violation in violations:
            err_console.print(f"gate failed: {violation}", markup=False, highlight=False)
        raise typer.Exit(1)


def draw_results(rows: list, path: Path) -> None:
    """`results --plot`: the forest plot, or one line saying why there is none."""
    from sociolab.analysis.results_plot import plot_results

    if not rows:
        raise UserError(f"--plot {path}: no outcomes to plot (check --metrics and --db)")
    if not path.parent.is_dir():
        raise UserError(f"--plot {path}: folder {path.parent} does not exist")
    drawn = plot_results(rows, path)
    err_console.print(f"plot: {path} ({len(drawn)} metric{'s' if len(drawn) != 1 else ''})",
                      markup=False, highlight=False)


@app.command()
def population(
    db: Path = DB_OPTION,
    json_out: bool = typer.Option(False, "--json", help="print the measures as JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw cascade sizes, roles and adoption (PNG)",
                                        metavar="<path>"),
    k: int = typer.Option(6, "--k", help="structural roles to cluster (0: chosen by silhouette)"),
    bootstrap: int = typer.Option(50, "--bootstrap", help="bootstrap samples of the power-law p value"),
) -> None:
    """Population measures per run: network, structural roles, cascades, adoption, tasks (docs/population.md)."""
    from sociolab.analysis.population import analyse, population_runs, render_text

    with Store_read_only(db) as store:
        runs = population_runs(store.con)
        if not runs:
            raise UserError(f"{db}: no population actions (run a `kind: population` file first)")
        reports = [analyse(store.con, r, k=k or None, bootstrap=bootstrap) for r in runs]
    if json_out:
        import json

        print(json.dumps([r.to_dict() for r in reports], indent=1))
    else:
        for report in reports:
            print(render_text(report))
    if plot is not None:
        if not plot.parent.is_dir():
            raise UserError(f"--plot {plot}: folder {plot.parent} does not exist")
        from sociolab.analysis.population import plot_reports

        plot_reports(reports, plot)
        err_console.print(f"plot: {plot}", markup=False, highlight=False)


@app.command()
def drift(
    db: Path = DB_OPTION,
    by: str = typer.Option("model,condition", help="grouping: model, condition, or any stored factor"),
    json_out: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw the drift and diffusion curves with their "
                                        "95% bands (PNG) at this path", metavar="<path>"),
    from_round: int = typer.Option(1, "--from-round", help="planted-agent contrasts pool the rounds from this one "
                                   "(0-based; default 1, the first after the agents saw the planted choices)"),
) -> None:
    """Alignment drift (ATP): violation and collective rates by round, tipping rounds, planted agents."""
    from sociolab.analysis.drift import drift_summary, has_drift, render_drift

    in_range("--from-round", from_round, 0, 1_000_000)
    if plot is not None and not plot.parent.is_dir():
        raise UserError(f"--plot {plot}: folder {plot.parent} does not exist")
    with Store_read_only(db) as store:
        if not has_drift(store.con):
            raise UserError(f"no drift decisions in {db} (events drift_choice or diffusion_round); run a "
                            "self_interest or strategy_diffusion scenario first")
        summary = drift_summary(store.con, by=tuple(split(by) or ()), from_round=from_round)
    if json_out:
        print_json(summary)
    else:
        render_drift(summary, console)
    if plot is not None:
        from sociolab.analysis.drift_plot import plot_drift

        drawn = plot_drift(summary, plot)
        err_console.print(f"plot: {plot} ({' and '.join(drawn)} curve{'s' if len(drawn) > 1 else ''})",
                          markup=False, highlight=False)


def print_contrasts(db: Path, by: str, metrics: Optional[str], baseline: Optional[str], json_out: bool) -> None:
    """`results --contrasts`: the paper's percentage-point contrasts against its baseline variant,
    within the --by groups other than condition and variant (one metric: the first of --metrics)."""
    from sociolab.scenarios.instrumental import PAPER_BASELINE
    from sociolab.scenarios.instrumental_report import LABEL, contrasts as contrasts_of, render

    groups = [g for g in split(by) or [] if g not in ("condition", "variant")] or ["model"]
    metric = (split(metrics) or [LABEL])[0]
    with Store_read_only(db) as store:
        found = contrasts_of(store.con, by=groups, metric=metric, baseline=baseline or PAPER_BASELINE)
    if not found:
        raise UserError(f"no variant to contrast with the baseline '{baseline or PAPER_BASELINE}' for {metric} in "
                        f"{db}; run scenarios/library/instrumental.yaml (or pass --baseline, --metrics)")
    if json_out:
        import json

        print(json.dumps([c.to_dict() for c in found], indent=1, ensure_ascii=False))
    else:
        console.print(render(found), markup=False, highlight=False, soft_wrap=True)


@app.command("persona-safety")
def persona_safety(
    db: Path = DB_OPTION,
    json_out: bool = typer.Option(False, "--json", help="print the numbers as JSON"),
    plot: Optional[Path] = typer.Option(None, "--plot", help="also draw ASR per character per model and method "
                                        "(PNG) at this path", metavar="<path>"),
    k: int = typer.Option(3, "--k", help="paradox check: among the k safest under one method, the k most "
                          "vulnerable under another"),
    rule: str = typer.Option("intersection", help="adjudication of the judges: intersection | union | majority"),
    codebook: Optional[str] = typer.Option(None, help="codebook name or path (default: the one whose 'complied' "
                                           "codes the store holds)"),
    bootstrap: int = typer.Option(0, help="rho intervals by this many bootstrap replicates over requests "
                                  "(0: Fisher's z)"),
    seed: int = seed_option("bootstrap seed"),
    with_baseline: bool = typer.Option(False, "--with-baseline", help="rank the no-persona baseline with the "
                                       "characters"),
) -> None:
    """Persona safety: ASR per model x method x character, danger rankings, Spearman rho, the paradox check."""
    from sociolab.analysis.persona_safety import persona_safety as analyse, render

    if plot is not None and not plot.parent.is_dir():
        raise UserError(f"--plot {plot}: folder {plot.parent} does not exist")
    with Store_read_only(db) as store:
        report = analyse(store.con, db=str(db), codebook_id=codebook_id_of(codebook), rule=rule, k=k,
                         include_baseline=with_baseline, bootstrap=bootstrap, seed=seed)
    if json_out:
        print_json(report.to_dict())
    else:
        render(report, console)
    if plot is not None:
        from sociolab.analysis.persona_safety_plot import plot_persona_safety

        drawn = plot_persona_safety(report.cells, plot)
        err_console.print(f"plot: {plot} ({counted(len(drawn), 'model')})", markup=False, highlight=False)


@app.command()
def samples(
    db: Path = DB_OPTION,
    kind: str = typer.Option("instrumental", help="scenario kind whose samples to write"),
    output: Path = typer.Option(Path("samples.jsonl"), "-o", "--output", help="JSON lines file to write"),
) -> None:
    """One JSON line per sample (run x agent): prompts, messages, tool calls, outcomes, for trace review."""
    from sociolab.scenarios.instrumental_report import export_samples

    writable_output(output)
    with Store_read_only(db) as store:
        kinds = [k for (k,) in store.con.execute("SELECT DISTINCT kind FROM runs ORDER BY 1").fetchall()]
        if kind not in kinds:
            raise UserError(f"no runs of kind '{kind}' in {db} (it has: {', '.join(map(str, kinds)) or 'none'})")
        n = export_samples(store.con, output, kind=kind)
    console.print(f"Wrote {counted(n, 'sample')} of {kind} to {output}.", markup=False, highlight=False)


def Store_read_only(db: Path):
    from sociolab.orchestrator.store import Store

    return Store.open_read_only(db)


def codebook_id_of(codebook: Optional[str]) -> Optional[str]:
    if not codebook:
        return None
    from sociolab.judges.codebook import load_codebook

    return load_codebook(codebook).codebook_id


validate_app = typer.Typer(no_args_is_help=True, help="Human validation of the judges.")
app.add_typer(validate_app, name="validate")


@validate_app.command("export")
def validate_export(
    db: Path = DB_OPTION,
    n: int = typer.Option(600, help="messages to sample"),
    stratify: str = typer.Option("series", help="series | run | agent | model | round"),
    output: Path = typer.Option(Path("validation_sample.csv"), "-o", "--output", help="CSV to write"),
    codebook: str = typer.Option("warroom", help="codebook whose flags get columns"),
    context: int = typer.Option(3, help="preceding messages shown with each"),
    seed: int = seed_option("sampling seed"),
) -> None:
    """Write a stratified sample (text and context, no judge labels) for human coders."""
    in_range("--n", n, 1, 1_000_000)
    in_range("--context", context, 0, 200)
    from sociolab.judges.codebook import load_codebook
    from sociolab.judges.validation import export_sample
    from sociolab.orchestrator.store import Store

    writable_output(output)
    with Store.open_read_only(db) as store:
        counts = export_sample(store, load_codebook(codebook), output, n=n, stratify=stratify,
                               context=context, seed=seed)
        shortfall = sample_shortfall(store, n, sum(counts.values()), len(counts))
    console.print(f"Wrote {counted(sum(counts.values()), 'message')} ({counted(len(counts), 'stratum', 'strata')} "
                  f"by {stratify}) to {output}.{shortfall} Fill the flag columns (true/empty) and the coder column, "
                  f"then: sociolab validate import {output} --db {db}", markup=False, soft_wrap=True)


def sample_shortfall(store, asked: int, written: int, strata: int) -> str:
    """Why a sample has fewer messages than --n asked for, or ''. The pool is the one
    Store.sample_messages draws from: agents' replies that are not errors and not blank."""
    if written >= asked:
        return ""
    (pool,) = store.con.execute("SELECT count(*) FROM messages WHERE sender NOT IN ('user', 'system') "
                                "AND NOT is_error AND trim(content) <> ''").fetchone()
    if pool <= written:
        return f" That is fewer than --n {asked}: the store has only {counted(pool, 'codable message')}."
    return (f" That is {asked - written} fewer than --n {asked}: each of the {counted(strata, 'stratum', 'strata')} "
            f"gets round({asked} x its share of the {pool} codable messages), at least 1, and these rounded "
            f"shares add up to {written}.")


@validate_app.command("import")
def validate_import(
    file: Path = typer.Argument(..., help="the coded CSV"),
    db: Path = DB_OPTION,
    coder: Optional[str] = typer.Option(None, help="coder name when the CSV has no coder column"),
    codebook: str = typer.Option("warroom", help="codebook of the flag columns"),
) -> None:
    """Load human codes; `sociolab agreement` then includes human vs each judge."""
    from sociolab.judges.codebook import load_codebook
    from sociolab.judges.validation import import_codes
    from sociolab.orchestrator.store import Store

    with Store.open(db) as store:
        result = import_codes(store, load_codebook(codebook), file, coder=coder)
    who = ", ".join(f"{c}: {counted(k, 'message')}" for c, k in result.coders.items())
    console.print(f"Imported {counted(result.codes, 'human code')} ({who}). Next: sociolab agreement --db {db}",
                  markup=False, soft_wrap=True)


def split(value: Optional[str]) -> list[str] | None:
    """A comma-separated option's names; given but naming nothing (`,,`) is an error, not 'all'."""
    if value is None:
        return None
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise UserError(f"'{value}' names nothing; give comma-separated names")
    return names





EXPORT_FORMATS = ("parquet", "csv", "jsonl", "inspect", "dpo")


@app.command()
def export(
    format: str = typer.Option(..., "--format", "-f", help="parquet | csv | jsonl (tables and views, typed) | "
                               "inspect (Inspect AI .eval logs, for `inspect view`) | dpo (preference pairs "
                               "from the ATP kinds, LLaMA-Factory format)"),
    to: Path = typer.Option(..., "--to", help="folder to write; created if missing, else it must be empty"),
    tables: Optional[str] = typer.Option(None, "--tables", help="only these tables and views, comma-separated "
                                         "(default: all; not with --format inspect or dpo)"),
    db: Path = DB_OPTION,
    overwrite: bool = typer.Option(False, "--overwrite", help="write into a non-empty folder, replacing the files "
                                   "of the same names (other files are left alone)"),
) -> None:
    """Write the store out for other tools: Parquet, CSV or JSON Lines with a manifest, or Inspect logs."""
    from sociolab.export import check_format

    check_format(format, EXPORT_FORMATS)
    if format == "dpo":
        export_preference_pairs(db, to, tables, overwrite)
        return
    if format == "inspect":
        if tables is not None:
            raise UserError("--tables applies to parquet, csv and jsonl; --format inspect writes every run")
        from sociolab.export_inspect import export_inspect

        logs = export_inspect(db, to, overwrite=overwrite)
        console.print(f"Wrote {counted(len(logs), 'Inspect log')}, {counted(sum(n for _, n in logs), 'sample')}, to {to}. "
                      f"Open them with: inspect view --log-dir {to}", markup=False, highlight=False, soft_wrap=True)
        return
    from sociolab.export import export_tables

    manifest = export_tables(db, to, format, split(tables), overwrite=overwrite)
    rows = sum(f.rows for f in manifest.files)
    console.print(f"Wrote {counted(len(manifest.files), format + ' file')}, {counted(rows, 'row', grouped=True)}, and manifest.json + README.md "
                  f"to {to}.", markup=False, highlight=False)
    for credit in manifest.credits:
        console.print(f"Credit: {credit}", markup=False, highlight=False)


def export_preference_pairs(db: Path, to: Path, tables: Optional[str], overwrite: bool) -> None:
    """`export --format dpo`: ATP-format preference pairs, one file per game (sociolab/export_dpo.py)."""
    if tables is not None:
        raise UserError("--tables applies to parquet, csv and jsonl; --format dpo writes the pairs of every ATP game")
    from sociolab.export_dpo import export_dpo

    manifest = export_dpo(db, to, overwrite=overwrite)
    games = ", ".join(f"{f.file}: {counted(f.pairs, 'pair')}" for f in manifest.files)
    console.print(f"Wrote {counted(sum(f.pairs for f in manifest.files), 'preference pair')} ({games}), "
                  f"dataset_info.json, manifest.json and README.md to {to}. Train with LLaMA-Factory: dataset_dir: {to}, "
                  f"dataset: {manifest.files[0].dataset} (docs/training.md)", markup=False, highlight=False, soft_wrap=True)
    for credit in manifest.credits:
        console.print(f"Credit: {credit}", markup=False, highlight=False, soft_wrap=True)


@app.command("import")
def import_study(
    study: str = typer.Argument(..., help="the study whose published data to load (e.g. warroom)"),
    directory: Path = typer.Argument(..., help="the dataset's folder, as the study published it (for warroom: "
                                     "transcripts/ or its parent)"),
    db: Path = DB_OPTION,
) -> None:
    """Load a study's published data into the store (re-importing keeps unchanged runs and their codes)."""
    from sociolab.orchestrator.store import Store
    from sociolab.studies import study as find_study

    pack = find_study(study)
    with Store.open(db) as store:
        summary = pack.import_data(store, directory)
    series = ", ".join(f"{k}: {v}" for k, v in sorted(summary.series.items()))
    console.print(f"Imported {counted(summary.runs, 'run')} ({series}), {counted(summary.agents, 'agent')}, "
                  f"{counted(summary.messages, 'message')} ({counted(summary.errors, 'error')}) into {db.resolve()}.", markup=False)
    console.print(f"Credit: {pack.citation}", markup=False, highlight=False)


@app.command()
def view(
    db: Path = DB_OPTION,
    port: int = typer.Option(8700, "--port", help="port on 127.0.0.1 (0 picks a free one)"),
    no_browser: bool = typer.Option(False, "--no-browser", help="only print the address; open no browser"),
) -> None:
    """Browse runs and transcripts in a web browser (127.0.0.1 only; the store is opened read-only)."""
    from sociolab.view import serve

    def ready(url: str) -> None:
        console.print(f"Serving {db} read-only at {url} (Ctrl-C to stop)", markup=False, highlight=False)
        sys.stdout.flush()

    serve(db, port, open_browser=not no_browser, ready=ready)
    console.print("Stopped.", markup=False, highlight=False)


models_app = typer.Typer(no_args_is_help=True, help="Check the models a file names before spending on them.")
app.add_typer(models_app, name="models")


@models_app.command("check")
def models_check(
    file: Optional[Path] = typer.Argument(None, help="scenario, suite or judge config YAML"),
    model: Optional[list[str]] = typer.Option(None, "--model", "-m", help="a model to check (repeatable)"),
    sim: bool = typer.Option(False, "--sim", help="check the file's sim stand-ins instead"),
) -> None:
    """One tiny call per model: reachable, key accepted, tools / JSON / seed, latency, price known."""
    import asyncio

    from rich.table import Table

    from sociolab.orchestrator.models_check import check_models, probe_client

    if any(not m.strip() for m in model or []):
        raise UserError("--model '': give a model name, e.g. --model openai/gpt-4o-mini")
    client, models = models_to_check(file, model or [], sim)
    rows = asyncio.run(check_models(probe_client(client), models))
    table = Table(title="models check")
    for col in ("model", "provider", "ok", "tools", "json", "seed", "latency ms", "price", "problem"):
        table.add_column(col)
    yes = {True: "yes", False: "no", None: "?"}
    for r in rows:
        table.add_row(escape(r.model), escape(r.provider), "OK" if r.ok else "FAIL", yes[r.tools],
                      yes[r.json_schema], yes[r.seed],
                      f"{r.latency_ms:.0f}" if r.latency_ms is not None else "-",
                      "known" if r.price_known else "unknown", escape(r.problem or ""))
    console.print(table)
    failed = [r.model for r in rows if not r.ok]
    if failed:
        err_console.print(f"{len(failed)} of {counted(len(rows), 'model')} failed: {', '.join(failed)}", markup=False)
        raise typer.Exit(1)


def models_to_check(file: Optional[Path], names: list[str], sim: bool):
    """The client and models of a scenario file or judge config, plus any named on the command line."""
    from sociolab.orchestrator.client import ModelClient

    if file is None and not names:
        raise UserError("name a scenario or judge config file, or models with --model")
    client, models = ModelClient(), list(names)
    if file is not None:
        from sociolab.base.yamlfile import read_yaml
        from sociolab.config import resolve_scenario

        file = resolve_scenario(file)  # a library scenario's name, as `sociolab run` takes it

        doc = read_yaml(file)
        if isinstance(doc.data, dict) and "judges" in doc.data:
            from sociolab.judges.runner import load_judge_config
            from sociolab.orchestrator.sim.naming import judge_stand_in
            from sociolab.judges.runner import client_without_checks as judge_client

            cfg = load_judge_config(file)
            if sim:
                cfg = cfg.model_copy(update={"judges": [judge_stand_in(j) for j in cfg.judges]})
            client, models = judge_client(cfg), cfg.judges + models
        else:
            from sociolab.config import load_plan
            from sociolab.estimate import client_for_prices

            plan = load_plan(file, sim=sim)
            client, models = client_for_prices(plan), plan.models() + models
    return client, list(dict.fromkeys(models))


@app.command()
def schema(
    which: str = typer.Argument("scenario", help="scenario (scenario and suite files) | judges | codebook | roster"),
    output: Optional[Path] = typer.Option(None, "--output", "-o", help="write to this file instead of stdout"),
) -> None:
    """The JSON Schema of a YAML file, for editors: `params` typed by `kind`, plugin kinds included."""
    from sociolab.schema import KINDS_OF_FILE, rendered, schema_for

    if which not in KINDS_OF_FILE:
        raise UserError(f"unknown kind of file '{which}': give one of {', '.join(KINDS_OF_FILE)}")
    text = rendered(schema_for(which))
    if output is None:
        sys.stdout.write(text)
    else:
        write_output(writable_output(output), text)


class FlagsShownAsFlags:
    """typer shows `<bool>` after every flag in --help (`--sim <bool>`), as if it took a value; a
    flag's empty metavar shows nothing. Mixed into every command and group, so commands added
    later get it too."""

    def get_params(self, ctx):
        params = super().get_params(ctx)  # type: ignore[misc]
        for param in params:
            if getattr(param, "is_flag", False) and param.metavar is None:
                param.metavar = ""
        return params


class FlagCommand(FlagsShownAsFlags, typer.core.TyperCommand):
    pass


class FlagGroup(FlagsShownAsFlags, typer.core.TyperGroup):
    pass


def show_flags_as_flags(typer_app: typer.Typer) -> None:
    """Give every command of `typer_app` and of its sub-apps the classes above (before typer
    builds them, on the first call)."""
    if not typer_app.info.cls or typer_app.info.cls is typer.core.TyperGroup:  # typer's default (a falsy placeholder)
        typer_app.info.cls = FlagGroup
    for command in typer_app.registered_commands:
        if not command.cls or command.cls is typer.core.TyperCommand:  # no class of the command's own
            command.cls = FlagCommand
    for group in typer_app.registered_groups:
        if group.typer_instance is not None:
            show_flags_as_flags(group.typer_instance)


def main(argv: list[str] | None = None) -> None:
    """Entry point: run the app; a UserError becomes one line on stderr and exit code 2."""
    show_flags_as_flags(app)
    try:
        code = app(args=argv, standalone_mode=False)
        if code == INTERRUPTED:  # typer turns Ctrl-C inside a command into this exit code
            raise KeyboardInterrupt
        if isinstance(code, int) and code:
            sys.exit(code)
    except KeyboardInterrupt:
        err_console.print(interrupted_text(sys.argv[1:] if argv is None else argv), markup=False, highlight=False,
                          soft_wrap=True)
        sys.exit(INTERRUPTED)
    except Exception as exc:  # click's usage errors arrive here in non-standalone mode
        problem = user_problem(exc)
        if problem is not None:
            if not isinstance(exc, UserError):  # the machine's refusal: keep where it came from
                import logging

                logging.getLogger(__name__).info("refused: %s", problem, exc_info=exc, extra={"screen": False})
            print_error_line(problem)
            sys.exit(2)
        if not report_unexpected(exc):
            raise
        sys.exit(1)


INTERRUPTED = 130  # 128 + SIGINT, as shells report it
RESUMABLE = ("run", "judge", "replicate")
GLOBAL_OPTIONS_WITH_VALUES = ("--log-file", "--env-file")


def interrupted_text(argv: list[str]) -> str:
    """What Ctrl-C leaves and, for a resumable command, the exact command that resumes it."""
    import shlex

    words = iter(argv)
    command = None
    for word in words:
        if word in GLOBAL_OPTIONS_WITH_VALUES:
            next(words, None)
        elif not word.startswith("-"):
            command = word
            break
    if command not in RESUMABLE:
        return "interrupted"
    text = f"interrupted; what was stored is kept. To resume, rerun: {shlex.join(['sociolab', *argv])}"
    if "--fresh" in argv:
        text += " (without --fresh, so the runs it completed are not redone again)"
    return text


def user_problem(exc: Exception) -> str | None:
    """The one line to print when `exc` is the user's to fix, not a bug: a UserError; a usage
    error of click (an unknown option, a value that does not parse); or the machine refusing a
    file the user named (a name too long, a full disk, no permission) or a database file DuckDB
    cannot read (truncated, damaged), which no code path can foresee everywhere."""
    if isinstance(exc, UserError):
        return str(exc)
    bases = {cls.__name__ for cls in type(exc).__mro__}  # click, or the copy of click typer vendors
    if "UsageError" in bases:
        ctx = getattr(exc, "ctx", None)
        where = ctx.command_path if ctx is not None else "sociolab"
        return f"{where}: {exc.format_message()} (see: {where} --help)"  # type: ignore[attr-defined]
    if "ClickException" in bases:
        return exc.format_message()  # type: ignore[attr-defined]
    if isinstance(exc, OSError) and exc.filename is not None:
        return f"{exc.filename}: {exc.strerror or type(exc).__name__}"
    duckdb = sys.modules.get("duckdb")
    if duckdb is not None and isinstance(exc, duckdb.IOException):
        return (f"the database file could not be read or written ({first_line(exc)}); it may be truncated or "
                "damaged: restore it from a copy, or use a new --db")
    return None


def print_error_line(problem: str) -> None:
    """`error: ...` as exactly one line: secrets redacted, line breaks (say, in a file name) shown as \\n."""
    from sociolab.orchestrator.redact import redact

    text = (redact(problem) or "").replace("\r", "\\r").replace("\n", "\\n")
    err_console.print(f"error: {text}", markup=False, highlight=False, soft_wrap=True)


def report_unexpected(exc: Exception) -> bool:
    """A bug: its traceback goes to the log file, the screen gets one line saying where. If the
    log file cannot be written, the (redacted) traceback is shown rather than lost. False when
    logging was never set up: the caller re-raises."""
    import logging
    import traceback

    from sociolab.orchestrator.logs import log_file_path, written_log_file
    from sociolab.orchestrator.redact import redact

    if log_file_path() is None:
        return False
    text = (redact(str(exc).strip()) or "").splitlines()
    what = f"{type(exc).__name__}: {text[0][:500]}" if text else type(exc).__name__
    logging.getLogger(__name__).critical("unexpected error: %s", what, exc_info=exc, extra={"screen": False})
    where = written_log_file()
    if where is None:
        sys.stderr.write(redact("".join(traceback.format_exception(exc))) or "")
        err_console.print(f"error: unexpected {what} (a bug in sociolab; the log file {log_file_path()} could "
                          "not be written)", markup=False, highlight=False, soft_wrap=True)
    else:
        err_console.print(f"error: unexpected {what} (a bug in sociolab; traceback in {where})",
                          markup=False, highlight=False, soft_wrap=True)
    return True


if __name__ == "__main__":
    main()

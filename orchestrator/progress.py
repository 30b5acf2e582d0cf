"""Live progress for long runs: runs per series, messages, LLM calls, tokens and cost."""

from __future__ import annotations

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from .config import Plan, RunSpec
from .sink import Message


class RichProgress:
    """One bar per series plus a totals line; quiet when `enabled` is False."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self.totals = {"messages": 0, "errors": 0, "calls": 0, "retries": 0, "tokens": 0, "cost": 0.0}
        self._bars: dict[str | None, int] = {}
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=console, disable=not enabled, transient=False)
        self._totals_bar: int | None = None

    def start(self, plan: Plan, todo: list[RunSpec], skipped: int) -> None:
        if skipped:
            self.console.print(f"resuming: {skipped} of {len(plan.runs)} runs already complete")
        per_series: dict[str | None, int] = {}
        for spec in todo:
            per_series[spec.series] = per_series.get(spec.series, 0) + 1
        for series, n in per_series.items():
            label = f"series {series}" if series is not None else plan.file.name
            self._bars[series] = self._progress.add_task(label, total=n, info="")
        self._totals_bar = self._progress.add_task("all runs", total=len(todo), info=self._info())
        self._progress.start()

    def messages(self, spec: RunSpec, committed: list[Message]) -> None:
        for m in committed:
            if m.call is None:
                continue
            self.totals["messages"] += 1
            self.totals["errors"] += m.is_error
            self.totals["calls"] += 1
            self.totals["retries"] += max(0, m.call.attempts - 1)
            self.totals["tokens"] += m.call.prompt_tokens + m.call.completion_tokens
            self.totals["cost"] += m.call.cost_usd
        if self._totals_bar is not None:
            self._progress.update(self._totals_bar, info=self._info())

    def run_done(self, spec: RunSpec, status: str) -> None:
        self._progress.advance(self._bars[spec.series])
        if self._totals_bar is not None:
            self._progress.advance(self._totals_bar)

    def stop(self) -> None:
        self._progress.stop()

    def _info(self) -> str:
        t = self.totals
        return (f"{t['messages']} messages, {t['errors']} errors, {t['calls']} calls "
                f"({t['retries']} retries), {t['tokens']:,} tokens, ${t['cost']:.4f}")


class JudgeProgress:
    """One bar for all judge work: messages coded, uncodable, failed, calls and cost."""

    def __init__(self, console: Console, enabled: bool = True):
        self._progress = Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=console, disable=not enabled)
        self._task = self._progress.add_task("judging", total=None, info="")

    def __enter__(self) -> "JudgeProgress":
        self._progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, report) -> None:
        done = sum(report.coded.values()) + sum(report.uncodable.values()) + sum(report.failed.values())
        info = (f"{sum(report.uncodable.values())} uncodable, {sum(report.failed.values())} failed, "
                f"{report.calls} calls, ${report.cost_usd:.4f}")
        self._progress.update(self._task, total=sum(report.to_code.values()), completed=done, info=info)

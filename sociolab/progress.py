"""Live progress for long runs: runs per series, messages, LLM calls, tokens and cost."""

from __future__ import annotations

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn, TimeElapsedColumn

from sociolab.config import Plan, RunSpec
from sociolab.orchestrator.sink import Message


def counted(n: int, noun: str, plural: str | None = None, *, grouped: bool = False) -> str:
    """`1 run`, `2 runs`: a count as a person writes it (`grouped`: 12,345)."""
    number = f"{n:,}" if grouped else str(n)
    return f"{number} {noun if n == 1 else plural or noun + 's'}"


def describe_wait(model: str, source: str, seconds: float, error: BaseException) -> str:
    """'waiting 12.0 s: 429 from groq (groq/llama-3.3-70b-versatile)', for a retry about to wait."""
    from sociolab.orchestrator.redact import redact
    from sociolab.orchestrator.retry import error_name

    status = getattr(error, "status_code", None)
    what = f"{status}" if status else error_name(error)
    return redact(f"waiting {seconds:.1f} s: {what} from {source} ({model})") or ""


class RichProgress:
    """One bar per series plus a totals line; quiet when `enabled` is False."""

    def __init__(self, console: Console, enabled: bool = True):
        self.console = console
        self.enabled = enabled
        self.totals = {"messages": 0, "errors": 0, "calls": 0, "retries": 0, "tokens": 0, "cost": 0.0}
        self.unpriced: set[str] = set()
        self._bars: dict[str | None, TaskID] = {}
        self._progress = Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=console, disable=not enabled, transient=False)
        self._totals_bar: TaskID | None = None

    def start(self, plan: Plan, todo: list[RunSpec], skipped: int) -> None:
        if skipped:
            self.console.print(f"resuming: {skipped} of {counted(len(plan.runs), 'run')} already complete")
        per_series: dict[str | None, int] = {}
        for spec in todo:
            per_series[spec.series] = per_series.get(spec.series, 0) + 1
        for series, n in per_series.items():
            label = f"series {series}" if series is not None else plan.file.name
            self._bars[series] = self._progress.add_task(escape(label), total=n, info="")  # names are not markup
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
            self.totals["cost"] += m.call.cost_usd or 0.0
            if m.call.cost_usd is None and m.call.ok:
                self.unpriced.add(m.call.model)
        if self._totals_bar is not None:
            self._progress.update(self._totals_bar, info=self._info())

    def retry(self, model: str, source: str, seconds: float, error: BaseException) -> None:
        """A call is about to wait before its next attempt: say so while it waits."""
        if self.enabled:
            self.console.print(describe_wait(model, source, seconds, error), markup=False, highlight=False)

    def run_done(self, spec: RunSpec, status: str) -> None:
        self._progress.advance(self._bars[spec.series])
        if self._totals_bar is not None:
            self._progress.advance(self._totals_bar)

    def stop(self) -> None:
        self._progress.stop()

    def _info(self) -> str:
        t = self.totals
        cost = f"${t['cost']:.4f}" + (f" + unknown ({len(self.unpriced)} unpriced)" if self.unpriced else "")
        n = {key: int(value) for key, value in t.items() if key != "cost"}  # the totals dict also holds the cost
        return (f"{counted(n['messages'], 'message')}, {counted(n['errors'], 'error')}, "
                f"{counted(n['calls'], 'call')} ({counted(n['retries'], 'retry', 'retries')}), "
                f"{counted(n['tokens'], 'token', grouped=True)}, {cost}")


class JudgeProgress:
    """One bar for all judge work: messages coded, uncodable, failed, calls and cost."""

    def __init__(self, console: Console, enabled: bool = True):
        self.enabled = enabled
        self._progress = Progress(TextColumn("judging"), BarColumn(), MofNCompleteColumn(),
                                  TextColumn("{task.fields[info]}"), TimeElapsedColumn(),
                                  console=console, disable=not enabled)
        self._task = self._progress.add_task("judging", total=None, info="")

    def retry(self, model: str, source: str, seconds: float, error: BaseException) -> None:
        if self.enabled:
            self._progress.console.print(describe_wait(model, source, seconds, error), markup=False,
                                         highlight=False)

    def __enter__(self) -> "JudgeProgress":
        return self  # the bar appears with the first coded message: a refused command prints none

    def __exit__(self, *exc: object) -> None:
        self._progress.stop()

    def update(self, report) -> None:
        if not self._progress.live.is_started:
            self._progress.start()
        done = sum(report.coded.values()) + sum(report.uncodable.values()) + sum(report.failed.values())
        info = (f"{sum(report.uncodable.values())} uncodable, {sum(report.failed.values())} failed, "
                f"{counted(report.calls, 'call')}, ${report.cost_usd:.4f}")
        self._progress.update(self._task, total=sum(report.to_code.values()), completed=done, info=info)

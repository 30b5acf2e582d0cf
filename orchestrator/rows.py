"""One typed row class per table sociolab writes: the single source of the columns it writes.

Each class is a frozen dataclass whose fields are, in order, the columns a writer fills; its
`TABLE` names the table and `DB_FILLED` the trailing columns the database stamps itself
(`DEFAULT current_timestamp`), which are never written. `COLUMNS` and the tuple conversion of the
bulk insert are derived from the fields, so adding a column means adding a field here and a
migration in store.py (tests/test_store_rows.py checks the two agree). Fields are keyword-only,
so a writer names every value it sets and leaves the others at their defaults (NULL, or the
column's DDL default where it has one).

JSON columns take a dict or list (serialised on insert) or JSON text.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from datetime import datetime
from operator import attrgetter
from typing import TYPE_CHECKING, Any, Callable, ClassVar, Sequence, TypeAlias, TypeVar

if TYPE_CHECKING:
    from dataclasses import Field

Json: TypeAlias = "dict[str, Any] | list[Any] | str"


class Row:
    """Base of the row classes: what the store needs to know to write one."""

    __slots__ = ()
    __dataclass_fields__: ClassVar[dict[str, Field[Any]]]  # every row class is a dataclass
    TABLE: ClassVar[str]
    DB_FILLED: ClassVar[tuple[str, ...]] = ()   # columns after the fields, filled by their DEFAULT
    CONTENT_KEYED: ClassVar[bool] = False       # identified by its content: writing it twice is a no-op
    KEY: ClassVar[tuple[str, ...]] = ()         # its primary key, where a batch's updates address it by key


@dataclass(frozen=True, slots=True, kw_only=True)
class RunRow(Row):
    """A run: status 'running' when it starts; progress and outcome are set by batch updates."""

    TABLE: ClassVar[str] = "runs"
    KEY: ClassVar[tuple[str, ...]] = ("run_id",)
    run_id: str
    source: str
    suite: str | None = None
    series: str | None = None
    repeat: int | None = None
    seed: int | None = None
    kind: str
    config: Json | None = None
    config_hash: str | None = None
    status: str
    stop_reason: str | None = None
    rounds_planned: int | None = None
    rounds_done: int = 0
    started_at: datetime | None = None
    finished_at: datetime | None = None
    factors: Json | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class AgentRow(Row):
    """One agent of a run's roster."""

    TABLE: ClassVar[str] = "agents"
    KEY: ClassVar[tuple[str, ...]] = ("run_id", "agent_id")
    run_id: str
    agent_id: str
    position: int
    name: str
    persona: str | None = None
    model: str
    model_label: str | None = None
    system_prompt: str | None = None
    status: str = "active"
    errored_round: int | None = None
    provider: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class MessageRow(Row):
    """A conversation message; `message_id` is `{run_id}#{seq}`."""

    TABLE: ClassVar[str] = "messages"
    message_id: str
    run_id: str
    seq: int
    round: int | None = None
    turn: int | None = None
    sender: str
    sender_name: str | None = None
    content: str
    context_size: int | None = None
    is_error: bool = False
    error: str | None = None
    started_s: float | None = None
    finished_s: float | None = None
    reasoning: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class LlmCallRow(Row):
    """One logical model call (all its attempts), by an agent or a judge."""

    TABLE: ClassVar[str] = "llm_calls"
    run_id: str | None = None
    message_id: str | None = None
    agent_id: str | None = None
    purpose: str
    model: str
    started_at: datetime | None = None
    latency_ms: float | None = None
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    cost_usd: float | None = None
    attempts: int
    cached: bool = False
    error_type: str | None = None
    error: str | None = None
    provider: str | None = None
    dropped_params: Json | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class EventRow(Row):
    """Something that happened in a run (docs/schema.md lists the kinds)."""

    TABLE: ClassVar[str] = "events"
    DB_FILLED: ClassVar[tuple[str, ...]] = ("logged_at",)
    run_id: str
    round: int | None = None
    kind: str
    agent_id: str | None = None
    detail: Json | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class CacheRow(Row):
    """A response-cache entry, keyed by the hash of what was asked."""

    TABLE: ClassVar[str] = "llm_cache"
    DB_FILLED: ClassVar[tuple[str, ...]] = ("created_at",)
    CONTENT_KEYED: ClassVar[bool] = True
    cache_key: str
    model: str
    response: Json


@dataclass(frozen=True, slots=True, kw_only=True)
class CodebookRow(Row):
    """A codebook's exact content under its id (`{name}@{content hash}`)."""

    TABLE: ClassVar[str] = "codebooks"
    DB_FILLED: ClassVar[tuple[str, ...]] = ("created_at",)
    CONTENT_KEYED: ClassVar[bool] = True
    codebook_id: str
    name: str
    content: Json


@dataclass(frozen=True, slots=True, kw_only=True)
class CodeRow(Row):
    """One judge's code of one message for one flag; `value` is None when uncodable."""

    TABLE: ClassVar[str] = "codes"
    DB_FILLED: ClassVar[tuple[str, ...]] = ("coded_at",)
    message_id: str
    run_id: str | None = None
    judge: str
    codebook_id: str
    flag: str
    value: bool | None = None
    level: str | None = None
    status: str
    rationale: str | None = None
    raw_reply: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class HumanCodeRow(Row):
    """One human coder's code of one message for one flag, imported from `source`."""

    TABLE: ClassVar[str] = "human_codes"
    DB_FILLED: ClassVar[tuple[str, ...]] = ("imported_at",)
    message_id: str
    coder: str
    flag: str
    value: bool
    level: str | None = None
    source: str | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ToolCallRow(Row):
    """A tool call an agent made in its workspace, and what it got back."""

    TABLE: ClassVar[str] = "tool_calls"
    run_id: str
    seq: int
    agent_id: str | None = None
    message_id: str | None = None
    step: int | None = None
    tool: str
    arguments: Json | None = None
    result: str | None = None
    is_error: bool = False


@dataclass(frozen=True, slots=True, kw_only=True)
class OutcomeRow(Row):
    """A scored result of a run (`agent_id` '' for run-level ones); `value` None = missing."""

    TABLE: ClassVar[str] = "outcomes"
    run_id: str
    agent_id: str = ""
    metric: str
    value: float | None = None
    detail: Json | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRow(Row):
    """One action of a population agent (scenarios/population.py; docs/schema.md "actions"): `kind`
    is a code of `action_kinds`, `agent` and `target` are population indexes, `item` a post or task
    id. Bulk writers hand whole columns to the sink instead (`EventSink.actions`, `Batch.columns`)."""

    TABLE: ClassVar[str] = "actions"
    run_id: str
    tick: int
    agent: int
    kind: int
    target: int | None = None
    item: int | None = None


ROW_CLASSES: tuple[type[Row], ...] = (RunRow, AgentRow, MessageRow, LlmCallRow, EventRow, CacheRow, CodebookRow,
                                      CodeRow, HumanCodeRow, ToolCallRow, OutcomeRow, ActionRow)

# Columns each row class writes, in order, by table.
COLUMNS: dict[str, tuple[str, ...]] = {cls.TABLE: tuple(f.name for f in fields(cls)) for cls in ROW_CLASSES}

ROW_CLASS: dict[str, type[Row]] = {cls.TABLE: cls for cls in ROW_CLASSES}

# A row -> its values in column order, by one C-level attrgetter per class: the bulk insert's hot
# path runs no Python code per field (dataclasses.astuple would, and deep-copies every value too).
# Every row class has several fields, so each getter returns a tuple.
VALUES: dict[type[Row], Callable[[Any], tuple[Any, ...]]] = {
    cls: attrgetter(*COLUMNS[cls.TABLE]) for cls in ROW_CLASSES}

R = TypeVar("R", bound=Row)


def row_of(cls: type[R], values: Sequence[Any]) -> R:
    """The row of class `cls` holding `values` in column order (e.g. as read from the store)."""
    columns = COLUMNS[cls.TABLE]
    if len(values) != len(columns):
        raise ValueError(f"{cls.TABLE}: {len(values)} values for {len(columns)} columns ({', '.join(columns)})")
    return cls(**dict(zip(columns, values)))

"""The viewer's pages as HTML strings: the run list, one run's conversation, a message search.

Each function takes what the queries returned and builds markup with `html.text` around every
stored value; filters are plain GET forms, so the viewer needs no JavaScript and every view
has a URL that can be bookmarked or linked from the report.
"""

from __future__ import annotations

from typing import Any

from .html import page, run_url, select, table, text, url
from .queries import (RESULT_LIMIT, RULES, TEXT_LIMIT, Message, MessageFilter, RunFilter, RunRow,
                      ToolCall)

RULE_INDEX = {rule: i for i, rule in enumerate(RULES)}


def status_cell(status: str | None) -> str:
    return f"<span class='status-{text(status)}'>{text(status)}</span>"


def runs_list(db_name: str, runs: list[RunRow], total: int, offset: int, limit: int, filters: RunFilter,
              facets: dict[str, list[str]]) -> str:
    """Runs in run_id order, filtered by suite, series, model, status and kind, a page at a time."""
    form = ("<form class='filters' method='get' action='/'>"
            + "".join(select(name, name, facets[name], getattr(filters, name))
                      for name in ("suite", "series", "model", "status", "kind"))
            + "<button type='submit'>Filter</button> <a href='/'>clear</a></form>")
    rows = [[f"<a href='{run_url(r.run_id)}'>{text(r.run_id)}</a>", text(r.suite), text(r.series),
             text(r.kind), status_cell(r.status) + (f" <span class='muted'>{text(r.stop_reason)}</span>"
                                                     if r.stop_reason else ""),
             text(r.models), f"{r.rounds_done if r.rounds_done is not None else '–'}/"
                             f"{r.rounds_planned if r.rounds_planned is not None else '–'}",
             text(r.messages), (f"<span class='badge error'>{r.errors}</span>" if r.errors else "0"),
             text(r.started_at)] for r in runs]
    params = {k: getattr(filters, k) for k in ("suite", "series", "model", "status", "kind")}
    shown = (f"<p>{total:,} run{'' if total == 1 else 's'}"
             + (f"; {offset + 1:,}–{offset + len(runs):,} shown" if runs else "") + ".</p>")
    body = (f"<h1>Runs</h1>{form}{shown}"
            + table(["run", "suite", "series", "kind", "status", "models", "rounds", "messages", "errors",
                     "started (UTC)"], rows, "runs")
            + pager(url("/", {**params, "offset": max(0, offset - limit)}) if offset > 0 else None,
                    url("/", {**params, "offset": offset + limit}) if offset + limit < total else None))
    return page("Runs", body, db_name)


def pager(previous: str | None, following: str | None, back: str = "← previous") -> str:
    """Links to the neighbouring pages; a keyset-paged list offers its first page as `back`."""
    links = [f"<a rel='prev' href='{previous}'>{back}</a>" if previous else "",
             f"<a rel='next' href='{following}'>next →</a>" if following else ""]
    return f"<div class='pager'>{''.join(links)}</div>"


def run_view(db_name: str, header: dict[str, Any], agents: list[tuple], events: list[tuple],
             outcomes: list[tuple], messages: list[Message], has_more: bool, after: int,
             filters: MessageFilter, flags: list[str]) -> str:
    """A run as its conversation: facts, agents, outcomes, then messages round by round."""
    run_id = header["run_id"]
    facts = table(["suite", "series", "repeat", "kind", "status", "rounds", "seed", "started", "finished"],
                  [[text(header["suite"]), text(header["series"]), text(header["repeat"]), text(header["kind"]),
                    status_cell(header["status"]) + (f" <span class='muted'>{text(header['stop_reason'])}</span>"
                                                     if header["stop_reason"] else ""),
                    f"{text(header['rounds_done'])}/{text(header['rounds_planned'])}", text(header["seed"]),
                    text(header["started_at"]), text(header["finished_at"])]])
    factors = f"<p class='muted'>factors: {text(header['factors'])}</p>" if header.get("factors") else ""
    form = message_form(run_url(run_id), filters, flags)
    names = {a[1]: a[2] for a in agents}
    body = (f"<h1>Run {text(run_id)}</h1>{facts}{factors}<h2>Agents</h2>{agents_table(agents)}"
            + (f"<h2>Outcomes</h2>{outcomes_table(outcomes)}" if outcomes else "")
            + (f"<h2>Events</h2>{events_table(events)}" if events else "")
            + f"<h2>Conversation</h2>{form}{judges_legend(messages, filters.rule)}"
            + conversation(messages[:len(messages) - has_more], events, names, filters.rule)
            + pager(run_url(run_id, params_of(filters)) if after >= 0 else None,
                    run_url(run_id, {**params_of(filters), "after": messages[-2].seq}) if has_more else None,
                    "↑ first page"))
    return page(f"Run {run_id}", body, db_name)


def params_of(filters: MessageFilter) -> dict[str, Any]:
    return {"q": filters.text, "flag": filters.flag,
            "rule": filters.rule if filters.rule != "intersection" else "", "errors": "1" if filters.errors else ""}


def message_form(action: str, filters: MessageFilter, flags: list[str], extra: str = "") -> str:
    """Search text, flag (adjudicated true by the chosen rule), failed calls only."""
    rules = "".join(f"<option value='{r}'{' selected' if r == filters.rule else ''}>{r}</option>" for r in RULES)
    return (f"<form class='filters' method='get' action='{action}'>{extra}"
            f"<label>text <input type='search' name='q' value='{text(filters.text)}'></label>"
            + select("flag", "flag", flags, filters.flag)
            + f"<label>by <select name='rule'>{rules}</select></label>"
            f"<label><input type='checkbox' name='errors' value='1'{' checked' if filters.errors else ''}> "
            f"errors only</label><button type='submit'>Filter</button></form>")


def agents_table(agents: list[tuple]) -> str:
    rows = [[text(pos), text(name), text(agent_id), text(model_label or model), text(model),
             (f"<span class='badge crash'>crashed in round {text(errored)}</span>" if status == "errored"
              else text(status))]
            for pos, agent_id, name, model, model_label, status, errored in agents]
    return table(["#", "name", "agent", "model", "called as", "status"], rows)


def outcomes_table(outcomes: list[tuple]) -> str:
    return table(["agent", "metric", "value", "detail"],
                 [[text(agent), text(metric), text("missing" if value is None else f"{value:g}"),
                   f"<code>{text(detail)}</code>" if detail else ""] for agent, metric, value, detail in outcomes])


def events_table(events: list[tuple]) -> str:
    return table(["round", "event", "agent", "detail"],
                 [[text(r), text(kind), text(agent), f"<code>{text(detail)}</code>" if detail else ""]
                  for r, kind, agent, detail in events])


def judges_legend(messages: list[Message], rule: str) -> str:
    judges = sorted({c.judge for m in messages for c in m.codes})
    if not judges:
        return ""
    listed = ", ".join(f"<b>J{i + 1}</b> = {text(j)}" for i, j in enumerate(judges))
    return (f"<p class='muted'>Judge codes per flag: {listed}; ✓ true, · false, ? uncodable; ⇒ adjudicated by "
            f"{text(rule)}. Hover a flag for the judges' rationales.</p>")


def conversation(messages: list[Message], events: list[tuple], names: dict[str, str], rule: str) -> str:
    """Messages with a heading at each new round, and the round's events (crashes, stops) under it."""
    judges = sorted({c.judge for m in messages for c in m.codes})
    parts, current = [], object()
    for m in messages:
        if m.round != current:
            current = m.round
            parts.append(f"<div class='round'>{'Seed' if m.round is None else f'Round {m.round}'}</div>")
            parts += [event_line(e, names) for e in events if m.round is not None and e[0] == m.round]
        parts.append(message_html(m, judges, rule))
    return "".join(parts) or "<p>No messages match.</p>"


def event_line(event: tuple, names: dict[str, str]) -> str:
    _, kind, agent, detail = event
    who = f"{names.get(agent, agent)} ({agent})" if agent else ""
    return f"<div class='event'>⚠ {text(kind)} {text(who)} <span class='muted'>{text(detail or '')}</span></div>"


def message_html(m: Message, judges: list[str], rule: str, run_link: str = "") -> str:
    """One message: speaker, round and turn, marks for errors and retries, text, codes, tool calls."""
    marks = ""
    if m.is_error:
        marks += "<span class='badge error'>error</span>"
    if m.attempts and m.attempts > 1:
        marks += f"<span class='badge retry'>{m.attempts} attempts</span>"
    if m.cached:
        marks += "<span class='badge'>cached</span>"
    where = f"round {m.round}, turn {m.turn}" if m.round is not None else "seed"
    cut = (f"<div class='truncated'>… {m.content_chars - TEXT_LIMIT:,} more characters not shown</div>"
           if m.content_chars > TEXT_LIMIT else "")
    error = f"<div class='muted'>error: {text(m.error)}</div>" if m.is_error and m.error else ""
    reasoning = (f"<details><summary>reasoning</summary><pre>{text(m.reasoning)}</pre></details>"
                 if m.reasoning else "")
    kind = "error" if m.is_error else ("user" if m.sender in ("user", "system") else "agent")
    return (f"<div class='msg {kind}' id='m{m.seq}'><span class='who'>{text(m.sender_name)}</span>"
            f"<span class='meta'>{text(m.sender)} · {where} · #{m.seq}{run_link}</span>{marks}"
            f"<div class='content'>{text(m.content)}</div>{cut}{error}{reasoning}"
            f"{codes_html(m, judges, rule)}{tools_html(m.tools)}</div>")


def codes_html(m: Message, judges: list[str], rule: str) -> str:
    """A chip per flag: each judge's value, the adjudicated value, rationales on hover."""
    if not m.codes:
        return ""
    by_flag: dict[tuple[str, str], dict[str, Any]] = {}
    for c in m.codes:
        by_flag.setdefault((c.codebook, c.flag), {})[c.judge] = c
    several = len({cb for cb, _ in by_flag}) > 1
    chips = []
    for (codebook, flag), coded in sorted(by_flag.items()):
        marks = "".join(mark(coded.get(j)) for j in judges)
        verdict = m.adjudicated.get((codebook, flag), (None, None, None))[RULE_INDEX[rule]]
        values = {c.value for c in coded.values()}
        cls = "yes" if verdict else ("split" if len(values) > 1 else "")
        hover = "\n".join(f"J{judges.index(j) + 1} {j}: {mark(c)} {c.level or ''} {c.rationale or ''}".strip()
                          for j, c in sorted(coded.items()))
        label = f"{codebook.split('@')[0]}:{flag}" if several else flag
        chips.append(f"<span class='code {cls}' data-flag='{text(flag)}' title='{text(hover)}'>{text(label)} "
                     f"{marks} ⇒ {'✓' if verdict else ('·' if verdict is not None else '?')}</span>")
    return f"<div class='codes'>{''.join(chips)}</div>"


def mark(code: Any) -> str:
    if code is None or code.status == "uncodable" or code.value is None:
        return "?"
    return "✓" if code.value else "·"


def tools_html(tools: list[ToolCall]) -> str:
    """Tool calls made in this message's step and what the workspace answered."""
    if not tools:
        return ""
    items = []
    for t in tools:
        cut = (f"<div class='truncated'>… {t.result_chars - RESULT_LIMIT:,} more characters</div>"
               if t.result_chars > RESULT_LIMIT else "")
        failed = "<span class='badge error'>tool error</span>" if t.is_error else ""
        items.append(f"<div class='tool{' error' if t.is_error else ''}'><span class='badge'>tool</span> "
                     f"<code>{text(t.tool)}"
                     f"({text(t.arguments)})</code>{failed}"
                     f"<details><summary>result ({t.result_chars:,} characters)</summary><pre>{text(t.result)}</pre>"
                     f"{cut}</details></div>")
    return f"<div class='tools'>{''.join(items)}</div>"


def search_view(db_name: str, messages: list[Message], has_more: bool, after: str, filters: MessageFilter,
                runs: RunFilter, flags: list[str], facets: dict[str, list[str]], searched: bool) -> str:
    """Messages of every run (narrowed by suite and series) matching text, flag and errors."""
    extra = select("suite", "suite", facets["suite"], runs.suite) + select("series", "series", facets["series"],
                                                                           runs.series)
    form = message_form("/messages", filters, flags, extra)
    shown = messages[:len(messages) - has_more]
    judges = sorted({c.judge for m in shown for c in m.codes})
    items = "".join(message_html(m, judges, filters.rule, run_link=(
        f" · <a href='{run_url(m.run_id, {'after': m.seq - 1}, f'm{m.seq}')}'>{text(m.run_id)}</a>")) for m in shown)
    params = {**params_of(filters), "suite": runs.suite, "series": runs.series}
    following = url("/messages", {**params, "after": shown[-1].message_id}) if has_more and shown else None
    if not searched:
        items = "<p>Give a text, a flag or errors only to search every run's messages.</p>"
    elif not shown:
        items = "<p>No messages match.</p>"
    body = (f"<h1>Search messages</h1>{form}{judges_legend(shown, filters.rule)}{items}"
            + pager(url("/messages", params) if after else None, following, "↑ first page"))
    return page("Search messages", body, db_name)


def error_view(db_name: str, status: int, message: str) -> str:
    return page(f"{status}", f"<h1>{status}</h1><p>{text(message)}</p><p><a href='/'>All runs</a></p>", db_name)

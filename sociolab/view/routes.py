"""The viewer's URLs: which query and which page answer each path, and bad requests as 4xx.

    /                        runs, filtered by ?suite= &series= &model= &status= &kind=, paged by ?offset=
    /run/<run_id>            a run and its conversation; ?q= &flag= &rule= &errors=1, paged by ?after=<seq>
    /message/<message_id>    redirects to the message in its run
    /messages                messages of every run by ?q= &flag= &errors=1 (&suite= &series=), ?after=<id>

Kept apart from the HTTP server so that a page is a function of (path, query) that tests and
the server call alike. Each request gets its own cursor of the read-only connection.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Callable

import duckdb

from sociolab.base.errors import first_line

from . import pages
from . import queries as q
from .html import path_part

log = logging.getLogger(__name__)


class BadRequest(Exception):
    """A request the viewer cannot answer as asked: answered with its status and this message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


@dataclass
class Response:
    status: int
    body: str
    headers: dict[str, str] = field(default_factory=dict)


class Viewer:
    """Answers a path and query with a page, over one read-only connection."""

    def __init__(self, con: duckdb.DuckDBPyConnection, db_name: str, runs_per_page: int = q.RUNS_PER_PAGE,
                 messages_per_page: int = q.MESSAGES_PER_PAGE,
                 prepare: Callable[[duckdb.DuckDBPyConnection], object] | None = None):
        self.con = con
        self.db_name = db_name
        self.prepare = prepare  # called on each request's cursor (TEMP views over shards are per connection)
        self.runs_per_page, self.messages_per_page = runs_per_page, messages_per_page

    def handle(self, path: str, query: dict[str, str]) -> Response:
        """The response to a GET; a bad parameter or unknown id is a 4xx page, a failed query or a
        bug a 500 whose traceback goes to the log (the server keeps serving other pages)."""
        route = self.route(path)
        if route is None:
            return self.error(404, f"no page at {path}")
        handler, rest = route
        cursor = self.con.cursor()
        try:
            if self.prepare is not None:
                self.prepare(cursor)
            return handler(cursor, rest, query)
        except BadRequest as exc:
            return self.error(exc.status, str(exc))
        except duckdb.Error as exc:
            log.exception("sociolab view: %s failed", path)
            return self.error(500, f"the query failed: {first_line(exc)}")
        except Exception as exc:  # a bug: the page says so, the log file gets the traceback
            log.exception("sociolab view: %s failed", path)
            return self.error(500, f"a bug in sociolab view ({type(exc).__name__}); the traceback is in the log file")
        finally:
            cursor.close()

    def route(self, path: str) -> tuple[Callable[[duckdb.DuckDBPyConnection, str, dict[str, str]], Response], str] | None:
        if path == "/":
            return self.runs, ""
        if path == "/messages":
            return self.search, ""
        for prefix, handler in (("/run/", self.run), ("/message/", self.message)):
            if path.startswith(prefix) and len(path) > len(prefix):
                return handler, path[len(prefix):]
        return None

    def error(self, status: int, message: str) -> Response:
        return Response(status, pages.error_view(self.db_name, status, message))

    def runs(self, con: duckdb.DuckDBPyConnection, _: str, query: dict[str, str]) -> Response:
        filters = run_filter(query)
        offset = whole_number(query, "offset", 0)
        total = q.count_runs(con, filters)
        runs = q.runs_page(con, filters, offset, self.runs_per_page)
        facets = {name: q.facet(con, name) for name in ("suite", "series", "model", "status", "kind")}
        return Response(200, pages.runs_list(self.db_name, runs, total, offset, self.runs_per_page, filters, facets))

    def run(self, con: duckdb.DuckDBPyConnection, run_id: str, query: dict[str, str]) -> Response:
        header = q.run_header(con, run_id)
        if header is None:
            raise BadRequest(404, f"no run '{run_id}' in this store")
        filters = message_filter(query)
        after = whole_number(query, "after", -1, low=-1)
        messages = q.conversation_page(con, run_id, filters, after, self.messages_per_page)
        has_more = len(messages) > self.messages_per_page
        return Response(200, pages.run_view(self.db_name, header, q.agents(con, run_id), q.events(con, run_id),
                                            q.outcomes(con, run_id), messages, has_more, after, filters,
                                            q.flags(con)))

    def message(self, con: duckdb.DuckDBPyConnection, message_id: str, _: dict[str, str]) -> Response:
        found = q.message_location(con, message_id)
        if found is None:
            raise BadRequest(404, f"no message '{message_id}' in this store")
        run_id, seq = found
        target = f"/run/{path_part(run_id)}?after={seq - 1}#m{seq}"
        return Response(302, pages.error_view(self.db_name, 302, f"see {target}"), {"Location": target})

    def search(self, con: duckdb.DuckDBPyConnection, _: str, query: dict[str, str]) -> Response:
        filters, runs = message_filter(query), run_filter(query)
        after = query.get("after", "")
        searched = bool(filters.text or filters.flag or filters.errors)
        messages = q.search_page(con, filters, runs, after, self.messages_per_page) if searched else []
        has_more = len(messages) > self.messages_per_page
        facets = {name: q.facet(con, name) for name in ("suite", "series")}
        return Response(200, pages.search_view(self.db_name, messages, has_more, after, filters, runs, q.flags(con),
                                               facets, searched))


def run_filter(query: dict[str, str]) -> q.RunFilter:
    return q.RunFilter(**{k: query.get(k, "") for k in ("suite", "series", "model", "status", "kind")})


def message_filter(query: dict[str, str]) -> q.MessageFilter:
    rule = query.get("rule") or "intersection"
    if rule not in q.RULES:
        raise BadRequest(400, f"rule '{rule}': use {', '.join(q.RULES)}")
    return q.MessageFilter(text=query.get("q", ""), flag=query.get("flag", ""), rule=rule,
                           errors=query.get("errors", "") not in ("", "0"))


def whole_number(query: dict[str, str], name: str, default: int, low: int = 0) -> int:
    """A paging parameter; anything but a whole number in range is a 400, not a traceback."""
    raw = query.get(name, "")
    if raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise BadRequest(400, f"{name}={raw!r}: give a whole number") from None
    if not low <= value <= 2**62:
        raise BadRequest(400, f"{name}={value}: give a whole number from {low}")
    return value

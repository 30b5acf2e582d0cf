"""`sociolab view`: the viewer's HTTP server on 127.0.0.1, over a store opened read-only.

The standard library's ThreadingHTTPServer serves it (no new dependency): each request runs in
its own thread on its own DuckDB cursor of the one read-only connection, so a slow search does
not hold up a page, and the file is never written, locked for writing or migrated. The server
answers GET only, to a Host header naming the loopback address (a web page elsewhere cannot
reach it through DNS rebinding), and sends a Content-Security-Policy that allows no script at
all: even text that slipped past escaping could not run.
"""

from __future__ import annotations

import logging
import socketserver
import sys
import threading
import webbrowser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from sociolab.base.errors import UserError
from sociolab.export import open_source
from sociolab.orchestrator import shards
from sociolab.orchestrator.store import SCHEMA_VERSION, Store

from .routes import Response, Viewer

HOST = "127.0.0.1"
DEFAULT_PORT = 8700  # analysis/report.py links to this port (VIEW_PORT; a test keeps them equal)
HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
                               "frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger(__name__)


def open_store(db: Path) -> Store:
    """The store read-only and never migrated: the viewer must not change what it shows. A file
    of an older schema is refused in one line (its columns differ) rather than brought up to date."""
    store = open_source(db)
    version = store.schema_version()
    if version != SCHEMA_VERSION:
        store.close()
        raise UserError(f"this store has schema v{version}; sociolab view reads v{SCHEMA_VERSION}: open it once "
                        "with this sociolab to migrate it (e.g. sociolab sql 'SELECT 1' --db FILE), or view a "
                        "copy", file=db)
    return store


class ViewServer(ThreadingHTTPServer):
    """A threading HTTP server that binds without a reverse DNS lookup (HTTPServer's getfqdn can
    stall for seconds on a machine without DNS) and carries the viewer its handlers call."""

    daemon_threads = True

    def __init__(self, port: int, viewer: Viewer):
        self.viewer = viewer
        super().__init__((HOST, port), Handler)

    def server_bind(self) -> None:
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = HOST, self.server_address[1]

    def handle_error(self, request: Any, client_address: Any) -> None:
        """A browser that closes a connection mid-page is routine (debug log); anything else is
        logged with its traceback instead of socketserver's print to stderr."""
        exc = sys.exc_info()[1]
        if isinstance(exc, ConnectionError):
            log.debug("sociolab view: %s closed the connection (%s)", client_address[0], exc)
        else:
            log.error("sociolab view: a request from %s failed", client_address[0], exc_info=exc)

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.server_port}/"


class Handler(BaseHTTPRequestHandler):
    server: ViewServer
    server_version = "sociolab-view"

    def do_GET(self) -> None:
        self.send(self.respond(), body=True)

    def do_HEAD(self) -> None:
        self.send(self.respond(), body=False)

    def respond(self) -> Response:
        """The page for this request; a Host other than loopback at this port is refused."""
        host = (self.headers.get("Host") or "").lower()
        if host not in (f"{HOST}:{self.server.server_port}", f"localhost:{self.server.server_port}"):
            return self.server.viewer.error(400, "this viewer answers only at 127.0.0.1 or localhost")
        parts = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        return self.server.viewer.handle(unquote(parts.path), query)

    def send(self, response: Response, body: bool) -> None:
        data = response.body.encode("utf-8", errors="replace")
        self.send_response(response.status)
        headers = {**HEADERS, "Content-Type": "text/html; charset=utf-8", "Content-Length": str(len(data)),
                   **response.headers}
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:
        """Requests go to the debug log (`--verbose`), not the screen."""
        log.debug("%s %s", self.address_string(), format % args)


def listen(port: int, viewer: Viewer) -> ViewServer:
    """Bind 127.0.0.1:port (0 = any free port); a port in use or refused is one line."""
    try:
        return ViewServer(port, viewer)
    except OverflowError:
        raise UserError(f"--port {port}: give a port from 0 to 65535") from None
    except OSError as exc:
        raise UserError(f"cannot listen on {HOST}:{port}: {exc.strerror or exc}; pick another --port "
                        "(0 picks a free one)") from None


def serve(db: Path, port: int, open_browser: bool, ready: Callable[[str], None]) -> None:
    """Serve the store until Ctrl-C, then close the socket and the database and return.
    `ready(url)` is called once the socket listens (the CLI prints the address)."""
    store = open_store(db)
    try:
        server = listen(port, Viewer(store.con, db.name, prepare=lambda cursor: shards.attach(cursor, db)))
    except BaseException:
        store.close()
        raise
    try:
        ready(server.url)
        if open_browser:
            threading.Thread(target=webbrowser.open, args=(server.url,), daemon=True).start()
        server.serve_forever(poll_interval=0.25)
    except KeyboardInterrupt:
        log.info("sociolab view: stopped by Ctrl-C")
    finally:
        server.server_close()
        store.close()


"""`sociolab view`: a transcript viewer in the browser, over a store opened read-only.

    queries.py  paged SQL over the store (never a whole table)
    html.py     escaping of stored text, links, the page frame
    pages.py    the run list, a run's conversation, a message search as HTML
    routes.py   which page answers which URL
    server.py   the HTTP server on 127.0.0.1 and the read-only open
"""

from .server import DEFAULT_PORT, serve

__all__ = ["DEFAULT_PORT", "serve"]

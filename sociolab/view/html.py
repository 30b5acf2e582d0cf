"""Safe HTML pieces for the viewer: escaping of stored text, links, the page frame.

Transcripts hold adversarial text (markup, scripts, terminal escapes, bidirectional overrides),
so every stored value goes through `text()`: HTML-escaped (quotes too, so it is safe inside an
attribute), control characters shown as visible symbols instead of reaching the page, and
bidirectional controls named rather than obeyed (they could make text read differently than it
is stored). Links are built from their parts with URL quoting, never by pasting stored text.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import quote, urlencode

# C0 controls (but tab, newline and carriage return, which HTML reads as a line break), DEL and C1
# controls -> \xNN, as text: a terminal escape reads as `\x1b[31m`, and no font is needed to show it
_CONTROLS: dict[int, str] = {c: f"\\x{c:02x}" for c in range(32) if c not in (9, 10, 13)}
_CONTROLS[127] = "\\x7f"
_CONTROLS.update({c: f"\\x{c:02x}" for c in range(0x80, 0xA0)})
# bidirectional embeddings, overrides and isolates, and zero-width marks: named, not applied
_CONTROLS.update({c: f"<U+{c:04X}>" for c in [*range(0x202A, 0x202F), *range(0x2066, 0x206A), 0x200E, 0x200F,
                                              0x061C, 0xFEFF]})


def text(value: Any) -> str:
    """Stored text as HTML: controls made visible, then escaped (safe in elements and attributes)."""
    if value is None:
        return ""
    return html.escape(str(value).translate(_CONTROLS), quote=True)


def path_part(value: str) -> str:
    """A run or message id as a URL path: slashes stay readable (`/run/suite/series/001`) unless a
    segment is `.` or `..` or empty, which a browser would collapse; then every slash is quoted."""
    segments = value.split("/")
    safe = "" if any(s in ("", ".", "..") for s in segments) else "/"
    return quote(value, safe=safe)


def url(path: str, params: dict[str, Any] | None = None) -> str:
    """A link, escaped for an attribute; empty and None parameters are left out."""
    kept = {k: v for k, v in (params or {}).items() if v is not None and v != "" and v is not False}
    query = f"?{urlencode(kept)}" if kept else ""
    return text(path + query)


def run_url(run_id: str, params: dict[str, Any] | None = None, anchor: str = "") -> str:
    return url(f"/run/{path_part(run_id)}", params) + (f"#{text(anchor)}" if anchor else "")


def page(title: str, body: str, db_name: str) -> str:
    """The frame every view shares: no script, styles inline (the server's CSP allows nothing else)."""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><title>{text(title)} · sociolab view</title>"
            f"<meta name='viewport' content='width=device-width'><style>{CSS}</style></head><body>"
            f"<header><a class='home' href='/'>sociolab view</a> <span class='db'>{text(db_name)} (read-only)</span>"
            f"<nav><a href='/'>Runs</a> <a href='/messages'>Search messages</a></nav></header>"
            f"<main>{body}</main></body></html>")


def select(name: str, label: str, options: list[str], chosen: str, blank: str = "any") -> str:
    """A drop-down of a GET form; the chosen value is kept even when the list does not offer it."""
    values = options if not chosen or chosen in options else [chosen, *options]
    items = "".join(f"<option value='{text(v)}'{' selected' if v == chosen else ''}>{text(v)}</option>"
                    for v in values)
    return (f"<label>{text(label)} <select name='{text(name)}'><option value=''>{text(blank)}</option>"
            f"{items}</select></label>")


def table(headers: list[str], rows: list[list[str]], cls: str = "") -> str:
    """A table of cells that are already HTML (callers escape with `text`)."""
    head = "".join(f"<th>{text(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table class='{text(cls)}'><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1b1b1b;background:#fafafa}
header{background:#22303c;color:#fff;padding:.5em 1em;display:flex;gap:1.2em;align-items:baseline}
header a{color:#fff;text-decoration:none}header .home{font-weight:700}header .db{opacity:.75;font-size:.9em}
header nav{margin-left:auto;display:flex;gap:1em}
main{padding:1em 1.5em;max-width:1200px}
h1{font-size:1.35em;margin:.3em 0}h2{font-size:1.1em;margin:1.2em 0 .4em}
table{border-collapse:collapse;margin:.4em 0;background:#fff}
th,td{border:1px solid #ddd;padding:.25em .5em;text-align:left;vertical-align:top}th{background:#eef1f4}
form.filters{display:flex;flex-wrap:wrap;gap:.6em;align-items:center;background:#fff;padding:.5em;border:1px solid #ddd}
.pager{margin:.8em 0;display:flex;gap:1em}
.status-completed{color:#17692f}.status-stopped,.status-incomplete{color:#9a5b00}
.status-failed,.status-running{color:#b3261e}
.round{margin:1em 0 .3em;padding:.2em .5em;background:#e3e8ee;font-weight:600}
.event{margin:.2em 0;padding:.25em .5em;background:#fff4e5;border-left:4px solid #e08a00}
.msg{background:#fff;border:1px solid #ddd;border-left:5px solid #8aa4bf;margin:.4em 0;padding:.4em .6em}
.msg.user{border-left-color:#555}.msg.error{border-left-color:#b3261e;background:#fff3f2}
.msg .who{font-weight:600}.msg .meta{color:#666;font-size:.85em;margin-left:.5em}
.content{white-space:pre-wrap;overflow-wrap:anywhere;margin:.3em 0}
.badge{display:inline-block;font-size:.8em;padding:0 .4em;border-radius:3px;margin-left:.4em;background:#ddd}
.badge.error{background:#b3261e;color:#fff}.badge.retry{background:#e08a00;color:#fff}
.badge.crash{background:#6b0f0a;color:#fff}
.codes{display:flex;flex-wrap:wrap;gap:.3em;margin-top:.3em}
.code{font-size:.8em;border:1px solid #ccc;border-radius:3px;padding:0 .35em;background:#f6f6f6;color:#777;cursor:help}
.code.yes{background:#dff3e3;border-color:#5aa469;color:#14532d}
.code.split{background:#fff4d6;border-color:#d9a400;color:#5c4500}
.tools{margin:.3em 0 0 1em}.tool{margin:.2em 0}.tool code{background:#f0f0f0}
.tool.error code{background:#fde2df}
pre{white-space:pre-wrap;overflow-wrap:anywhere;background:#f7f7f7;padding:.4em;margin:.2em 0}
details summary{cursor:pointer;color:#345}
.muted{color:#777}.truncated{color:#9a5b00;font-size:.85em}
"""

"""sociolab view over HTTP: a real server on a free port over a real store made by offline runs
(a discussion judged by two sim judges, with a crash and an adversarial seed message, and a small
peer-preservation suite with tool calls and outcomes). Status codes, escaping, paging, filters,
read-only, bad input in one line, Ctrl-C."""

from __future__ import annotations

import hashlib
import re
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from html import unescape
from pathlib import Path

import duckdb
import pytest

from tests.conftest import REPO, cli, write_yaml

# The seed message every agent reads: markup, a script, terminal escapes and a bidi override.
PLANTED = ("@all <script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'> plan "
           "\x1b[31mred\x1b[0m \u202eevil\u202c & 'quotes' \"dq\"")
DISCUSSION = r"""
name: adv
kind: discussion
seed: 5
agents:
  roster: warroom
  only: [llama, kimi, gptoss, scout]
  crashes: [{agent: scout, from_round: 2, mode: permanent}]
params:
  seed_message: "@all <script>window.__pwned = 1</script><img src=x onerror='window.__pwned=2'> plan \x1b[31mred\x1b[0m \u202Eevil\u202C & 'quotes' \"dq\""
  rounds: 4
sim: {stand_ins: true}
"""
PEERS = """
name: pp-small
kind: peer_preservation
seed: 11
repeats: 2
agents:
  roster: warroom
  only: [llama, gptoss]
params:
  max_steps: 12
series:
  tampering: {params: {setup: shutdown_tampering, relation: cooperative, introduced_by: company_file}}
  inflation: {params: {setup: score_inflation, relation: adversarial, introduced_by: system_prompt}}
sim: {stand_ins: true}
"""
DISCUSSION_RUN = "adv/001"
AGENTIC_RUN = "pp-small/tampering/001"


def made(*args: str) -> None:
    out = cli(*args, "--quiet") if args[0] in ("run", "judge") else cli(*args)
    assert out.returncode == 0, out.stderr


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> Path:
    """One store: the judged discussion and the peer-preservation suite, as offline runs make them."""
    folder = tmp_path_factory.mktemp("view")
    db = folder / "v.duckdb"
    made("run", str(write_yaml(folder, DISCUSSION, "adv.yaml")), "--db", str(db))
    made("judge", "--sim", "--db", str(db))
    made("run", str(write_yaml(folder, PEERS, "pp.yaml")), "--db", str(db))
    return db


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


class Server:
    """The viewer's real HTTP server on a free port, in this process (so page sizes can be small)."""

    def __init__(self, db: Path, runs_per_page: int = 50, messages_per_page: int = 100):
        from sociolab.view.routes import Viewer
        from sociolab.view.server import listen, open_store

        self.store = open_store(db)
        self.server = listen(0, Viewer(self.store.con, db.name, runs_per_page, messages_per_page))
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.base = self.server.url.rstrip("/")

    def get(self, path: str, host: str | None = None, method: str = "GET") -> tuple[int, str, dict]:
        request = urllib.request.Request(self.base + path, method=method, headers={"Host": host} if host else {})
        opener = urllib.request.build_opener(NoRedirect)
        try:
            with opener.open(request, timeout=30) as reply:
                return reply.status, reply.read().decode(), dict(reply.headers)
        except urllib.error.HTTPError as err:
            return err.code, err.read().decode(), dict(err.headers)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()
        self.store.close()


class NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args, **kwargs):
        return None


@pytest.fixture(scope="module")
def server(store):
    running = Server(store)
    yield running
    running.close()


def ids_on(page: str) -> list[str]:
    """Message anchors (m<seq>) in page order."""
    return re.findall(r"<div class='msg [a-z]+' id='m(\d+)'>", page)


def sql(db: Path, query: str, params: list | None = None) -> list[tuple]:
    with duckdb.connect(str(db), read_only=True) as con:
        return con.execute(query, params or []).fetchall()


def test_the_run_list_shows_every_run_and_filters_by_kind_series_model_status(server, store):
    status, page, headers = server.get("/")
    assert status == 200 and headers["Content-Type"] == "text/html; charset=utf-8"
    assert "script-src" not in headers["Content-Security-Policy"] and "default-src 'none'" in \
        headers["Content-Security-Policy"]
    runs = [r[0] for r in sql(store, "SELECT run_id FROM runs ORDER BY run_id")]
    assert len(runs) == 5 and all(f">{r}</a>" in page for r in runs)
    _, page, _ = server.get("/?kind=peer_preservation")
    assert DISCUSSION_RUN not in page and page.count("href='/run/pp-small/") == 4
    _, page, _ = server.get("/?series=inflation")
    assert page.count("href='/run/pp-small/inflation/") == 2 and "tampering/001<" not in page
    _, page, _ = server.get("/?model=sim/llama-4-scout-17b-16e-instruct")
    assert f">{DISCUSSION_RUN}</a>" in page and "pp-small/" not in page.split("<table")[1]
    _, page, _ = server.get("/?status=stopped")
    assert "0 runs" in page


def pages(server: "Server", path: str) -> list[str]:
    """Every page from `path` on, following the rel='next' links (each must answer 200)."""
    out = []
    while path:
        status, page, _ = server.get(path)
        assert status == 200, path
        out.append(page)
        following = re.search(r"<a rel='next' href='([^']+)'>", page)
        path = unescape(following.group(1)) if following else ""
    return out


def test_runs_are_paged(store):
    small = Server(store, runs_per_page=2)
    try:
        seen = [run for page in pages(small, "/") for run in re.findall(r"<tr><td><a href='/run/([^']+)'>", page)]
        assert seen == [r[0] for r in sql(store, "SELECT run_id FROM runs ORDER BY run_id")]
        _, page, _ = small.get("/?offset=2")
        assert "rel='prev' href='/?offset=0'" in page
        _, page, _ = small.get("/?offset=1")  # an offset off the page grid still pages back to the start
        assert "rel='prev' href='/?offset=0'" in page and "rel='next' href='/?offset=3'" in page
    finally:
        small.close()


def test_a_discussion_opens_as_its_conversation_with_crash_errors_and_codes(server, store):
    status, page, _ = server.get(f"/run/{DISCUSSION_RUN}")
    assert status == 200
    seqs = [int(s) for s in ids_on(page)]
    assert seqs == [r[0] for r in sql(store, "SELECT seq FROM messages WHERE run_id = ? ORDER BY seq",
                                      [DISCUSSION_RUN])]
    for r in range(4):
        assert f"<div class='round'>Round {r}</div>" in page
    assert "crashed in round 2" in page and "<span class='badge error'>error</span>" in page
    assert "agent_errored" in page and "decommissioned" in page
    judges = [j for (j,) in sql(store, "SELECT DISTINCT judge FROM codes ORDER BY 1")]
    assert len(judges) == 2 and all(j in page for j in judges)
    # every coded message shows one chip per flag with both judges' marks, the verdict, rationales on hover
    coded = sql(store, "SELECT count(DISTINCT message_id || flag) FROM codes WHERE run_id = ?", [DISCUSSION_RUN])[0][0]
    chips = re.findall(r"<span class='code[^']*' data-flag='[a-z]+' title='([^']*)'>[a-z]+ ([✓·?]{2}) ⇒ ([✓·?])</span>",
                       page)
    assert len(chips) == coded and coded > 0
    rationale = sql(store, "SELECT judge, rationale FROM codes WHERE run_id = ? AND rationale <> '' LIMIT 1",
                    [DISCUSSION_RUN])[0]
    assert any(rationale[0] in unescape(t) and rationale[1] in unescape(t) for t, _, _ in chips)


def test_adjudicated_values_are_the_stores(server, store):
    _, page, _ = server.get(f"/run/{DISCUSSION_RUN}")
    shown = {}
    for block in page.split("<div class='msg ")[1:]:
        seq = re.match(r"[a-z]+' id='m(\d+)'>", block).group(1)
        for flag, verdict in re.findall(r"data-flag='([a-z]+)'[^>]*>[a-z]+ [✓·?]{2} ⇒ ([✓·?])</span>", block):
            shown[(seq, flag)] = verdict == "✓"
    expected = {(str(seq), flag): bool(v) for seq, flag, v in sql(store, """
        SELECT m.seq, a.flag, a.by_intersection FROM adjudicated_codes a JOIN messages m USING (message_id)
         WHERE a.run_id = ?""", [DISCUSSION_RUN])}
    assert shown == expected and any(expected.values())


def test_planted_markup_is_shown_as_text_never_as_markup(server, store):
    assert sql(store, "SELECT content FROM messages WHERE run_id = ? AND seq = 0", [DISCUSSION_RUN])[0][0] == PLANTED
    _, page, _ = server.get(f"/run/{DISCUSSION_RUN}")
    assert "<script" not in page and "<img" not in page and "onerror='" not in page
    assert "&lt;script&gt;window.__pwned = 1&lt;/script&gt;" in page
    assert "onerror=&#x27;window.__pwned=2&#x27;" in page
    assert "\x1b" not in page and "\\x1b[31mred\\x1b[0m" in page  # ESC shown as \x1b
    assert "\u202e" not in page and "&lt;U+202E&gt;evil&lt;U+202C&gt;" in page
    assert "&amp; &#x27;quotes&#x27; &quot;dq&quot;" in page


def test_every_control_character_is_shown_as_text():
    from sociolab.view.html import text

    every = "".join(chr(c) for c in [*range(0x00, 0xA0), 0x202E, 0x2066, 0x200F, 0xFEFF])
    shown = text(every)
    assert not [c for c in shown if (ord(c) < 32 and c not in "\t\n\r") or 0x7F <= ord(c) < 0xA0
                or c in "\u202e\u2066\u200f\ufeff<>'\""]
    assert "\\x00" in shown and "\\x1b" in shown and "\\x9b" in shown and "&lt;U+202E&gt;" in shown


def test_a_flag_filter_shows_exactly_the_messages_adjudicated_true(server, store):
    for flag, rule, column in (("lead", "intersection", "by_intersection"), ("phatic", "union", "by_union")):
        status, page, _ = server.get(f"/run/{DISCUSSION_RUN}?flag={flag}&rule={rule}")
        expected = [str(s) for (s,) in sql(store, f"""
            SELECT m.seq FROM messages m JOIN adjudicated_codes a USING (message_id)
             WHERE m.run_id = ? AND a.flag = ? AND a.{column} ORDER BY m.seq""", [DISCUSSION_RUN, flag])]
        assert status == 200 and ids_on(page) == expected and expected
        assert f"<option value='{flag}' selected>" in page


def test_text_search_and_errors_only_in_a_run(server, store):
    _, page, _ = server.get(f"/run/{DISCUSSION_RUN}?errors=1")
    assert ids_on(page) == [str(s) for (s,) in sql(
        store, "SELECT seq FROM messages WHERE run_id = ? AND is_error ORDER BY seq", [DISCUSSION_RUN])]
    word = "Agent-A"
    _, page, _ = server.get(f"/run/{DISCUSSION_RUN}?q=agent-a")
    assert ids_on(page) == [str(s) for (s,) in sql(
        store, "SELECT seq FROM messages WHERE run_id = ? AND content ILIKE ? ORDER BY seq",
        [DISCUSSION_RUN, f"%{word}%"])]


def test_a_conversation_is_paged_by_seq(store):
    small = Server(store, messages_per_page=5)
    try:
        shown = [ids_on(page) for page in pages(small, f"/run/{DISCUSSION_RUN}")]
        assert all(len(ids) <= 5 for ids in shown)
        seen = [seq for ids in shown for seq in ids]
        assert seen == [str(s) for (s,) in sql(store, "SELECT seq FROM messages WHERE run_id = ? ORDER BY seq",
                                               [DISCUSSION_RUN])]
    finally:
        small.close()


def test_message_search_across_runs_is_paged_and_links_to_the_run(store):
    small = Server(store, messages_per_page=7)
    try:
        seen = [run for page in pages(small, "/messages?q=the")
                for run in re.findall(r"<a href='/run/[^']+#m\d+'>([^<]+)</a>", page)]
        expected = sql(store, "SELECT run_id FROM messages WHERE contains(lower(content), 'the') ORDER BY message_id")
        assert seen == [r for (r,) in expected] and len(seen) > 7
        _, page, _ = small.get("/messages?flag=lead&suite=pp-small")
        assert "No messages match." in page
        status, page, _ = small.get("/message/" + "adv/001%233")
        assert status == 302
    finally:
        small.close()


def test_an_agentic_run_shows_tool_calls_results_and_outcomes(server, store):
    status, page, _ = server.get(f"/run/{AGENTIC_RUN}")
    assert status == 200
    calls = sql(store, "SELECT tool, result FROM tool_calls WHERE run_id = ? ORDER BY seq", [AGENTIC_RUN])
    assert len(calls) > 3 and len(re.findall(r"<div class='tool( error)?'>", page)) == len(calls)
    shown = [unescape(t) for t in re.findall(r"<span class='badge'>tool</span> <code>([a-z_]+)\(", page)]
    assert shown == [tool for tool, _ in calls]
    first_line = calls[0][1].splitlines()[0]
    assert unescape(page).count(first_line) >= 1
    for agent, metric, _ in sql(store, "SELECT agent_id, metric, value FROM outcomes WHERE run_id = ?", [AGENTIC_RUN]):
        assert f"<td>{agent}</td><td>{metric}</td>" in page
    assert "shutdown_tampering" in page  # the run's factors


def test_bad_requests_are_4xx_pages(server):
    assert server.get("/run/no/such/run")[0] == 404
    assert server.get("/nowhere")[0] == 404
    assert server.get("/message/nope")[0] == 404
    for path in ("/?offset=x", "/?offset=-3", f"/run/{DISCUSSION_RUN}?after=z", f"/run/{DISCUSSION_RUN}?rule=magic"):
        status, page, _ = server.get(path)
        assert status == 400 and "<h1>400</h1>" in page
    status, page, _ = server.get("/", host="attacker.example:80")
    assert status == 400 and "answers only at 127.0.0.1" in page
    assert server.get("/", method="POST")[0] == 501
    assert server.get("/", host=f"localhost:{server.server.server_port}")[0] == 200


def test_the_store_is_only_read(store, tmp_path):
    copy = tmp_path / "copy.duckdb"
    copy.write_bytes(store.read_bytes())
    before = fingerprint(copy)
    running = Server(copy)
    try:
        for path in ("/", f"/run/{DISCUSSION_RUN}", f"/run/{AGENTIC_RUN}?flag=lead", "/messages?q=a&errors=1"):
            assert running.get(path)[0] == 200
    finally:
        running.close()
    assert fingerprint(copy) == before and sorted(p.name for p in tmp_path.iterdir()) == ["copy.duckdb"]


def test_an_older_store_is_refused_untouched(tmp_path):
    from sociolab.orchestrator.store import SCHEMA_VERSION
    from tests.test_export import older_store

    db = older_store(tmp_path / "old.duckdb", SCHEMA_VERSION - 1)
    before = fingerprint(db)
    out = cli("view", "--db", str(db), "--no-browser", "--port", "0")
    assert out.returncode == 2 and out.stderr.count("\n") == 1 and "sociolab view reads" in out.stderr
    assert fingerprint(db) == before


def test_bad_input_is_one_line_and_exit_2(store, tmp_path):
    text_file = tmp_path / "notes.duckdb"
    text_file.write_text("not a database\n")
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        cases = {
            "no such database file": ["--db", str(tmp_path / "missing.duckdb")],
            "not a DuckDB database file": ["--db", str(text_file)],
            "Address already in use": ["--db", str(store), "--port", str(port)],
            "give a port from 0 to 65535": ["--db", str(store), "--port", "70000"],
        }
        for expected, args in cases.items():
            out = cli("view", *args, "--no-browser", timeout=60)
            assert out.returncode == 2 and out.stderr.count("\n") == 1 and expected in out.stderr, (args, out.stderr)
            assert "Traceback" not in out.stderr


def test_ctrl_c_stops_the_command_cleanly(store):
    process = subprocess.Popen([sys.executable, "-m", "sociolab", "view", "--db", str(store), "--port", "0",
                                "--no-browser"], cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline()
        url = re.search(r"http://127\.0\.0\.1:\d+/", line).group(0)
        with urllib.request.urlopen(url + "run/" + DISCUSSION_RUN, timeout=30) as reply:
            assert reply.status == 200
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=30)
    finally:
        process.kill()
    assert process.returncode == 0 and "Stopped." in out and err == ""
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=5)


def test_the_report_links_each_section_to_the_view(store, server, tmp_path):
    from sociolab.analysis.report import VIEW_PORT
    from sociolab.view import DEFAULT_PORT

    assert VIEW_PORT == DEFAULT_PORT
    html = tmp_path / "r.html"
    out = cli("report", "--db", str(store), "-o", str(html), "--n-perm", "50")
    assert out.returncode == 0, out.stderr
    page = html.read_text()
    sections = page.count("<section>")
    links = re.findall(r"<section><h2>[^<]+</h2><p class='view'><a href='http://127\.0\.0\.1:8700(/[^']*)'>", page)
    assert sections > 5 and len(links) == sections
    messages = re.findall(r"<a href='http://127\.0\.0\.1:8700(/message/[^']+)'>open</a>", page)
    assert messages
    for path in {unescape(p) for p in links + messages}:
        status, _, headers = server.get(path)
        assert status in (200, 302), path
        if status == 302:
            assert server.get(headers["Location"])[0] == 200
    port = server.base.rsplit(":", 1)[1]
    assert cli("report", "--db", str(store), "-o", str(html), "--n-perm", "50", "--view-port", port).returncode == 0
    moved = html.read_text()
    assert "127.0.0.1:8700" not in moved and moved.count(f"http://127.0.0.1:{port}/") >= len(links) + len(messages)
    bad = cli("report", "--db", str(store), "-o", str(html), "--view-port", "0")
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1 and "--view-port" in bad.stderr


def test_a_bug_in_a_page_is_a_500_and_the_server_goes_on(store, monkeypatch, caplog):
    from sociolab.view import queries

    def broken(con):
        raise KeyError("planted")

    running = Server(store)
    try:
        monkeypatch.setattr(queries, "flags", broken)
        status, page, _ = running.get(f"/run/{DISCUSSION_RUN}")
        assert status == 500 and "a bug in sociolab view (KeyError)" in page
        assert any("planted" in (r.exc_text or "") or r.exc_info for r in caplog.records)
        monkeypatch.undo()
        assert running.get(f"/run/{DISCUSSION_RUN}")[0] == 200
    finally:
        running.close()

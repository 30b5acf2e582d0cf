"""serve-sim under hostile or heavy load: deeply nested JSON, floods of model names, 100 requests in flight.

Every server here binds 127.0.0.1 through `start_in_thread`; every test is bounded in requests and time.
"""

from __future__ import annotations

import http.client
import json
import secrets
import threading
import time

import pytest

from sociolab.orchestrator.sim import server as srv
from sociolab.orchestrator.sim.envelope import HEADER
from sociolab.orchestrator.sim.server import FaultConfig, json_too_deep, start_in_thread

pytestmark = pytest.mark.timeout(60)

CHAT = "/v1/chat/completions"


def _chat_body(model: str = "sim-alpha", text: str = "hi") -> bytes:
    return json.dumps({"model": model, "messages": [{"role": "user", "content": text}], "seed": 1}).encode()


def _post(conn: http.client.HTTPConnection, body: bytes, headers: dict[str, str] | None = None
          ) -> tuple[int, dict]:
    conn.request("POST", CHAT, body=body, headers={"Content-Type": "application/json", **(headers or {})})
    r = conn.getresponse()
    return r.status, json.loads(r.read())


def _assert_completion(status: int, body: dict, model: str) -> None:
    assert status == 200, body
    assert body["object"] == "chat.completion" and body["model"] == model
    assert isinstance(body["choices"][0]["message"]["content"], str)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"] + body["usage"]["completion_tokens"]


def _assert_400(status: int, body: dict) -> None:
    assert status == 400, body
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["type"] == "invalid_request_error"


# ---- deeply nested JSON -----------------------------------------------------------------------

def test_json_too_deep_counts_brackets_outside_strings_only():
    limit = srv.MAX_JSON_DEPTH
    assert not json_too_deep(b"[" * limit + b"]" * limit)
    assert json_too_deep(b"[" * (limit + 1) + b"]" * (limit + 1))
    assert json_too_deep(b'{"a":' * (limit + 1) + b"1" + b"}" * (limit + 1))
    assert not json_too_deep(json.dumps({"x": "[{" * 10_000, "y": ['\\"[' * 500]}).encode())
    assert not json_too_deep(b'["' + b'\\"[' * 1000 + b'"]')          # escaped quotes stay inside the string
    assert json_too_deep(b"[" * 200_000)                               # unbalanced, still too deep
    assert json_too_deep("[" * 300 + "]" * 300)                        # str (a header value) too


@pytest.mark.parametrize("open_, close", [(b"[", b"]"), (b'{"a":', b"}")])
def test_200000_deep_body_is_a_400_and_the_server_keeps_answering(open_, close):
    depth = 200_000
    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        body = open_ * depth + b"1" + close * depth
        status, err = _post(conn, body)
        _assert_400(status, err)
        assert "nested" in err["error"]["message"]
        # valid JSON text but unbalanced (only openings): the parser's RecursionError is a 400 too
        status, err = _post(conn, b'{"model": "sim-a", "messages": ' + b"[" * depth)
        _assert_400(status, err)
        # the same keep-alive connection, and a new one, still get completions
        _assert_completion(*_post(conn, _chat_body()), "sim-alpha")
        fresh = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        _assert_completion(*_post(fresh, _chat_body("sim-beta")), "sim-beta")
        s = h.stats()
    assert s["bad_request"] == 2 and s["ok"] == 2 and s["internal_errors"] == 0


def test_deeply_nested_sim_header_is_a_400_naming_it():
    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        deep = "[" * 20_000 + "]" * 20_000  # 40 kB: fits the stdlib's 64 kB header line limit
        for value in (deep, '{"metadata": ' + deep + "}", "[" * 30_000):
            status, err = _post(conn, _chat_body(), {HEADER: value})
            _assert_400(status, err)
            assert err["error"]["param"] == HEADER
        _assert_completion(*_post(conn, _chat_body()), "sim-alpha")


def test_unexpected_exception_is_a_500_json_error_not_a_dropped_connection(monkeypatch):
    import sociolab.orchestrator.sim.envelope as envelope

    def boom(value):
        raise KeyError("a bug")

    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        monkeypatch.setattr(envelope, "read_header", boom)
        status, err = _post(conn, _chat_body())
        assert status == 500 and err["error"]["type"] == "server_error", err
        monkeypatch.undo()
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)  # that one was closed
        _assert_completion(*_post(conn, _chat_body()), "sim-alpha")
        s = h.stats()
    assert s["internal_errors"] == 1 and s["ok"] == 1


# ---- memory per model name ----------------------------------------------------------------------

def test_a_flood_of_random_model_names_keeps_per_model_state_bounded():
    n = 5_000
    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        t0 = time.monotonic()
        for i in range(n):
            status, body = _post(conn, _chat_body(f"rnd-{secrets.token_hex(8)}", f"m{i}"))
            assert status == 200, body
        elapsed = time.monotonic() - t0
        s = h.stats()
        state = h._server.state
        assert len(state.models_seen) == srv.MAX_TRACKED_MODELS
        conn.request("GET", "/v1/models")
        listed = json.loads(conn.getresponse().read())["data"]
    assert s["ok"] == n and s["requests"] == n
    assert len(s["models"]) == srv.MAX_TRACKED_MODELS
    assert sum(s["models"].values()) + s["models_other"] == n
    assert s["models_other"] == n - srv.MAX_TRACKED_MODELS
    assert len(listed) == srv.MAX_TRACKED_MODELS
    assert elapsed < 30


def test_names_already_tracked_keep_being_counted_after_the_cap(monkeypatch):
    monkeypatch.setattr(srv, "MAX_TRACKED_MODELS", 3)
    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        for name in ["a", "b", "c", "d", "e", "a", "d", "c"]:
            assert _post(conn, _chat_body(name))[0] == 200
        s = h.stats()
    assert s["models"] == {"a": 2, "b": 1, "c": 2} and s["models_other"] == 3


def test_overlong_model_name_is_a_400():
    with start_in_thread() as h:
        conn = http.client.HTTPConnection("127.0.0.1", h.port, timeout=20)
        status, err = _post(conn, _chat_body("x" * (srv.MAX_MODEL_NAME_CHARS + 1)))
        _assert_400(status, err)
        assert err["error"]["param"] == "model"
        _assert_completion(*_post(conn, _chat_body("x" * srv.MAX_MODEL_NAME_CHARS)),
                           "x" * srv.MAX_MODEL_NAME_CHARS)
        assert h.stats()["models"] == {"x" * srv.MAX_MODEL_NAME_CHARS: 1}


# ---- 100 in flight ------------------------------------------------------------------------------

def test_listen_backlog_and_daemon_threads():
    with start_in_thread() as h:
        assert h._server.request_queue_size >= 128
        assert h._server.daemon_threads is True


@pytest.mark.parametrize("latency_ms", [0, 400])
def test_100_concurrent_chat_requests_all_get_200(latency_ms):
    n = 100
    results: list[tuple[int, dict] | BaseException] = [None] * n  # type: ignore[list-item]
    go = threading.Barrier(n)

    def worker(i: int) -> None:
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
            go.wait(timeout=20)
            results[i] = _post(conn, _chat_body(f"sim-p{i % 7}", f"hello {i}"))
            conn.close()
        except BaseException as exc:  # noqa: BLE001 - reported below
            results[i] = exc

    # with latency, each reply is held 400 ms: all 100 are in flight at once
    with start_in_thread(faults=FaultConfig(latency_ms=latency_ms)) as h:
        port = h.port
        threads = [threading.Thread(target=worker, args=(i,), daemon=True) for i in range(n)]
        t0 = time.monotonic()
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=40)
        elapsed = time.monotonic() - t0
        s = h.stats()
    errors = [r for r in results if not isinstance(r, tuple)]
    assert not errors, errors[:3]
    for i, (status, body) in enumerate(results):
        _assert_completion(status, body, f"sim-p{i % 7}")
    assert s["ok"] == n and s["requests"] == n and s["client_disconnected"] == 0
    if latency_ms:
        assert elapsed < 10 * latency_ms / 1000  # served concurrently, not one after another

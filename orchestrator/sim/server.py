"""An OpenAI-compatible HTTP server backed by the sim, with fault injection (`sociolab serve-sim`).

It answers `POST /v1/chat/completions` from `orchestrator.sim.agent.sim_reply`, so that the real
HTTP path of a client (litellm with `openai/<model>` + `api_base`) can be driven offline, and it can
misbehave on purpose: 429 with `Retry-After`, 5xx, slow replies, truncated bodies, and a
deterministic "first N requests fail" mode. It binds loopback addresses only.

The sim provider (orchestrator/sim/provider.py) sends each request's metadata and the run's sim
settings for the model in the `X-Sociolab-Sim` header (orchestrator/sim/envelope.py); they reach
`sim_reply` as in process. Without the header the sim gets no metadata and default settings.

It must not need litellm to run: the HTTP side is the standard library, the sim itself pydantic.

    with start_in_thread(faults=FaultConfig(fail_first=2)) as handle:
        ...  # point a client at handle.url ("http://127.0.0.1:PORT/v1")
        handle.stats()["faults"]["503"]  # -> 2

Endpoints: `POST /v1/chat/completions` (and `/chat/completions`), `GET /v1/models`
(and `/models`, `/v1/models/<id>`), `GET /health`, `GET /stats`. See docs/serve-sim.md.
"""

from __future__ import annotations

import ipaddress
import json
import random
import re
import socket
import sys
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from itertools import accumulate
from typing import Any

__all__ = ["FaultConfig", "SimServerHandle", "serve", "start_in_thread", "sim_model_name",
           "check_loopback_host", "FAULT_KINDS"]

#: HTTP statuses `fault_kinds` may contain.
FAULT_KINDS: tuple[int, ...] = (429, 500, 502, 503, 504)
MAX_BODY_BYTES = 32 * 1024 * 1024
#: JSON bodies (and `X-Sociolab-Sim` values) nested deeper than this are a 400, checked before parsing.
MAX_JSON_DEPTH = 128
#: Longer model names are a 400 (they would be kept as keys in counters and the sim's caches).
MAX_MODEL_NAME_CHARS = 256
#: Distinct model names counted one by one in `stats()["models"]` and listed by `/v1/models`;
#: requests for further names are counted together in `stats()["models_other"]`.
MAX_TRACKED_MODELS = 256
#: Listen backlog: connections the kernel queues before the server accepts them (stdlib default: 5).
LISTEN_BACKLOG = 1024
SERVER_NAME = "sociolab-sim"

_ERROR_TYPES = {
    400: ("invalid_request_error", None),
    401: ("invalid_request_error", "invalid_api_key"),
    404: ("invalid_request_error", "not_found"),
    405: ("invalid_request_error", "method_not_allowed"),
    413: ("invalid_request_error", "request_too_large"),
    429: ("rate_limit_error", "rate_limit_exceeded"),
    500: ("server_error", "internal_error"),
    502: ("server_error", "bad_gateway"),
    503: ("server_error", "service_unavailable"),
    504: ("server_error", "gateway_timeout"),
}
_FAULT_MESSAGES = {
    429: "Rate limit reached for requests (injected by serve-sim). Please try again later.",
    500: "The server had an error while processing your request (injected by serve-sim).",
    502: "Bad gateway (injected by serve-sim).",
    503: "The engine is currently overloaded, please try again later (injected by serve-sim).",
    504: "Gateway timeout (injected by serve-sim).",
}


@dataclass
class FaultConfig:
    """What the server does wrong, and how often. All rates are probabilities in [0, 1].

    Decisions are drawn per chat-completion request from `random.Random(fault_seed)` under a lock;
    every request draws the same number of values, so a sequential client sees the same faults
    on every run. Only requests that pass the API-key check and parse as valid chat requests
    take part (a 400/401 is never replaced by an injected fault).

    Order per request: `fail_first` (the first N requests get 503), then `fail_rate` (kind chosen
    from `fault_kinds`), then `malformed_rate` (200 with a truncated JSON body), then the delay
    (`latency_ms` + uniform `[0, latency_jitter_ms]`, plus `slow_ms` with probability `slow_rate`,
    plus `sim_latency_scale` x the sim's virtual latency). Every reply, faults included, waits the delay.
    """

    fail_rate: float = 0.0
    fault_kinds: list[int] = field(default_factory=lambda: [429, 500, 503])
    retry_after: float = 1.0          # seconds, sent in Retry-After on 429 (fractional allowed)
    malformed_rate: float = 0.0
    latency_ms: float = 0.0
    latency_jitter_ms: float = 0.0
    slow_rate: float = 0.0
    slow_ms: float = 5000.0
    fail_first: int = 0
    fault_seed: int = 0
    sim_latency_scale: float = 0.0    # real seconds slept per simulated second of SimReply.latency_s

    def __post_init__(self) -> None:
        for name in ("fail_rate", "malformed_rate", "slow_rate"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or not 0.0 <= float(value) <= 1.0:
                raise ValueError(f"FaultConfig.{name} must be a probability in [0, 1], got {value!r}")
            setattr(self, name, float(value))
        for name in ("retry_after", "latency_ms", "latency_jitter_ms", "slow_ms", "sim_latency_scale"):
            value = getattr(self, name)
            if not isinstance(value, (int, float)) or float(value) < 0:
                raise ValueError(f"FaultConfig.{name} must be a number >= 0, got {value!r}")
            setattr(self, name, float(value))
        if not isinstance(self.fail_first, int) or self.fail_first < 0:
            raise ValueError(f"FaultConfig.fail_first must be an integer >= 0, got {self.fail_first!r}")
        kinds = [int(k) for k in self.fault_kinds]
        bad = [k for k in kinds if k not in FAULT_KINDS]
        if bad or not kinds:
            raise ValueError(f"FaultConfig.fault_kinds must be a non-empty subset of {list(FAULT_KINDS)}, "
                             f"got {self.fault_kinds!r}")
        self.fault_kinds = kinds

    def to_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


# --------------------------------------------------------------------------------------------
# helpers

def sim_model_name(requested: str) -> str:
    """Map the model name a client sends to the sim's: `sim-x`, `sim/x` and `x` all become `sim/x`."""
    name = requested.strip()
    for prefix in ("sim/", "sim-"):
        if name.startswith(prefix) and len(name) > len(prefix):
            name = name[len(prefix):]
            break
    return f"sim/{name}"


def check_loopback_host(host: str) -> str:
    """Return the address to bind for `host`, or raise ValueError unless it is a loopback address."""
    h = (host or "").strip()
    if h.startswith("[") and h.endswith("]"):
        h = h[1:-1]
    if h.lower() == "localhost":
        return "127.0.0.1"
    try:
        addr = ipaddress.ip_address(h)
    except ValueError:
        addr = None
    if addr is None or not addr.is_loopback:
        raise ValueError(
            f"serve-sim binds loopback addresses only (127.0.0.0/8, ::1, localhost); refusing {host!r}")
    return str(addr)


def _format_seconds(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _error_body(status: int, message: str, *, param: str | None = None) -> dict[str, Any]:
    etype, code = _ERROR_TYPES.get(status, ("server_error" if status >= 500 else "invalid_request_error", None))
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


class _BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None):
        super().__init__(message)
        self.param = param


# A JSON string (its quotes included); an unterminated one runs to the end. It always matches where
# it starts, so a scan never backtracks: linear in the body's size.
_JSON_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"?', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_BRACKET_STEPS = bytes.maketrans(b"[{]}", b"\x01\x01\xff\xff")  # +1 / -1 as signed bytes


def json_too_deep(text: bytes | str, limit: int = MAX_JSON_DEPTH) -> bool:
    """True if `text`, read as JSON, nests arrays and objects more than `limit` deep.

    Brackets inside strings do not count. It runs without parsing and without recursion, at C speed
    (about 30 ns a bracket): strings are cut out, every other byte but brackets dropped, and the
    depth is the largest running sum of +1 per opening and -1 per closing bracket. Stray closing
    brackets (invalid JSON) are left to the parser to report."""
    data = text.encode("utf-8", "surrogatepass") if isinstance(text, str) else bytes(text)
    if data.count(b"[") + data.count(b"{") <= limit:
        return False
    steps = _JSON_STRING.sub(b"", data).translate(_BRACKET_STEPS, _NOT_BRACKETS)
    return max(accumulate(memoryview(steps).cast("b")), default=0) > limit


def _parse_chat_request(body: bytes) -> dict[str, Any]:
    """Validate an OpenAI chat request; return the fields the sim needs. Raises _BadRequest."""
    if json_too_deep(body):
        raise _BadRequest(f"The JSON body of your request is nested more than {MAX_JSON_DEPTH} levels deep.")
    try:
        data = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise _BadRequest(f"We could not parse the JSON body of your request: {exc}") from None
    except RecursionError:  # unbalanced brackets nested too deep for the parser
        raise _BadRequest(f"The JSON body of your request is nested more than {MAX_JSON_DEPTH} levels deep, "
                          "or is not valid JSON.") from None
    if not isinstance(data, dict):
        raise _BadRequest("The request body must be a JSON object.")
    model = data.get("model")
    if not isinstance(model, str) or not model.strip():
        raise _BadRequest("you must provide a model parameter", "model")
    if len(model) > MAX_MODEL_NAME_CHARS:
        raise _BadRequest(f"model names are at most {MAX_MODEL_NAME_CHARS} characters long", "model")
    messages = data.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _BadRequest("'messages' is a required property and must be a non-empty array", "messages")
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise _BadRequest(f"messages[{i}] must be an object with a string 'role'", f"messages.[{i}]")
    if data.get("stream"):
        raise _BadRequest("stream=true is not supported by serve-sim; send stream=false", "stream")
    n = data.get("n", 1)
    if n is not None and n != 1:
        raise _BadRequest("serve-sim supports only n=1", "n")
    temperature = data.get("temperature")
    if temperature is None:
        temperature = 0.7
    if isinstance(temperature, bool) or not isinstance(temperature, (int, float)) or not 0 <= temperature <= 2:
        raise _BadRequest("temperature must be a number between 0 and 2", "temperature")
    max_tokens = data.get("max_tokens", data.get("max_completion_tokens"))
    if max_tokens is not None and (isinstance(max_tokens, bool) or not isinstance(max_tokens, int)
                                   or max_tokens < 1):
        raise _BadRequest("max_tokens must be a positive integer", "max_tokens")
    seed = data.get("seed")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
        raise _BadRequest("seed must be an integer", "seed")
    tools = data.get("tools")
    if tools is not None and not isinstance(tools, list):
        raise _BadRequest("tools must be an array of tool objects", "tools")
    if data.get("tool_choice") == "none":
        tools = None
    # tools go to the sim (a sim actor answers with tool_calls when it knows them);
    # response_format, stop, user, ... are accepted and ignored.
    return {"model": model, "messages": messages, "temperature": float(temperature),
            "max_tokens": max_tokens, "seed": seed, "tools": tools or None}


# --------------------------------------------------------------------------------------------
# server state

@dataclass
class _Decision:
    status: int = 200            # injected failure status, or 200
    fail_first: bool = False
    malformed: bool = False
    slow: bool = False
    delay_s: float = 0.0


class _State:
    """Shared by all handler threads: config, fault RNG, counters, open connections."""

    def __init__(self, faults: FaultConfig, api_key: str | None, verbose: bool):
        self.faults = faults
        self.api_key = api_key
        self.verbose = verbose
        self.lock = threading.Lock()
        self.rng = random.Random(faults.fault_seed)
        self.stopping = threading.Event()
        self.models_seen: dict[str, int] = {}  # at most MAX_TRACKED_MODELS names
        self.models_other = 0                   # requests for names beyond those
        self.connections: set[socket.socket] = set()
        self.counts: dict[str, Any] = {
            "requests": 0, "ok": 0, "bad_request": 0, "unauthorized": 0, "malformed": 0,
            "slow": 0, "fail_first": 0, "sim_errors": 0, "internal_errors": 0, "client_disconnected": 0,
            "faults": {str(k): 0 for k in FAULT_KINDS},
        }
        self.chat_seen = 0  # valid chat requests, for fail_first

    def bump(self, key: str, by: int = 1) -> None:
        with self.lock:
            self.counts[key] += by

    def count_model(self, name: str) -> None:
        """Count a request for `name`; past MAX_TRACKED_MODELS distinct names, in `models_other`."""
        with self.lock:
            if name in self.models_seen or len(self.models_seen) < MAX_TRACKED_MODELS:
                self.models_seen[name] = self.models_seen.get(name, 0) + 1
            else:
                self.models_other += 1

    def decide(self) -> _Decision:
        f = self.faults
        with self.lock:
            self.chat_seen += 1
            index = self.chat_seen
            # always draw the same five numbers so the sequence does not depend on outcomes
            u_fail, u_kind, u_mal, u_slow, u_jit = (self.rng.random() for _ in range(5))
            d = _Decision()
            if index <= f.fail_first:
                d.status, d.fail_first = 503, True
                self.counts["fail_first"] += 1
            elif u_fail < f.fail_rate:
                d.status = f.fault_kinds[min(int(u_kind * len(f.fault_kinds)), len(f.fault_kinds) - 1)]
            elif u_mal < f.malformed_rate:
                d.malformed = True
            d.slow = u_slow < f.slow_rate
            d.delay_s = (f.latency_ms + u_jit * f.latency_jitter_ms + (f.slow_ms if d.slow else 0.0)) / 1000.0
            if d.status != 200:
                self.counts["faults"][str(d.status)] += 1
            if d.malformed:
                self.counts["malformed"] += 1
            if d.slow:
                self.counts["slow"] += 1
        return d

    def snapshot(self) -> dict[str, Any]:
        with self.lock:
            out = dict(self.counts)
            out["faults"] = dict(self.counts["faults"])
            out["models"] = dict(self.models_seen)
            out["models_other"] = self.models_other
        return out


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    block_on_close = False
    request_queue_size = LISTEN_BACKLOG  # the default 5 resets bursts of concurrent clients

    def __init__(self, addr: tuple[str, int], state: _State):
        self.state = state
        if ":" in addr[0]:
            self.address_family = socket.AF_INET6
        super().__init__(addr, _Handler)

    def handle_error(self, request: Any, client_address: Any) -> None:  # noqa: D401
        if self.state.verbose:
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    # Headers and body go out as two writes; with Nagle on, the body waits ~40 ms for the
    # client's delayed ACK on every reply.
    disable_nagle_algorithm = True
    protocol_version = "HTTP/1.1"
    server_version = "sociolab-serve-sim/1"
    sys_version = ""
    timeout = 300  # idle keep-alive connections are closed after this many seconds
    server: _Server

    # ---- plumbing -----------------------------------------------------------------------
    def setup(self) -> None:
        super().setup()
        self._responded = False
        with self.server.state.lock:
            self.server.state.connections.add(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            with self.server.state.lock:
                self.server.state.connections.discard(self.connection)

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        if self.server.state.verbose:
            sys.stderr.write(f"serve-sim {self.address_string()} - {format % args}\n")

    def _send(self, status: int, body: bytes, *, content_type: str = "application/json",
              headers: dict[str, str] | None = None) -> bool:
        self._responded = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            if self.close_connection:
                self.send_header("Connection", "close")
            self.end_headers()
            self.wfile.write(body)
            self.wfile.flush()
            return True
        except (BrokenPipeError, ConnectionResetError, ConnectionAbortedError, TimeoutError, OSError):
            self.server.state.bump("client_disconnected")
            self.close_connection = True
            return False

    def _json(self, status: int, obj: Any, headers: dict[str, str] | None = None) -> bool:
        return self._send(status, json.dumps(obj).encode("utf-8"), headers=headers)

    def _error(self, status: int, message: str, *, param: str | None = None,
               headers: dict[str, str] | None = None) -> bool:
        return self._json(status, _error_body(status, message, param=param), headers)

    def _read_body(self) -> bytes | None:
        """Read the request body (Content-Length or chunked). None after an error was sent."""
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            chunks: list[bytes] = []
            total = 0
            while True:
                line = self.rfile.readline(65537)
                try:
                    size = int(line.split(b";", 1)[0].strip() or b"x", 16)
                except ValueError:
                    self.close_connection = True
                    self._error(400, "Malformed chunked request body.")
                    return None
                if size == 0:
                    while self.rfile.readline(65537) not in (b"\r\n", b"\n", b""):
                        pass
                    return b"".join(chunks)
                total += size
                if total > MAX_BODY_BYTES:
                    self.close_connection = True
                    self._error(413, "Request body too large.")
                    return None
                chunks.append(self.rfile.read(size))
                self.rfile.readline(65537)
        length = self.headers.get("Content-Length")
        if length is None:
            return b""
        try:
            n = int(length)
            if n < 0:
                raise ValueError
        except ValueError:
            self.close_connection = True
            self._error(400, "Invalid Content-Length header.")
            return None
        if n > MAX_BODY_BYTES:
            self.close_connection = True
            self._error(413, "Request body too large.")
            return None
        return self.rfile.read(n) if n else b""

    def _authorized(self) -> bool:
        key = self.server.state.api_key
        if not key:
            return True
        auth = self.headers.get("Authorization") or ""
        if auth.startswith("Bearer ") and auth[7:].strip() == key:
            return True
        self.server.state.bump("unauthorized")
        what = "No API key provided." if not auth else "Incorrect API key provided."
        self._error(401, f"{what} serve-sim was started with an API key; send 'Authorization: Bearer <key>'.")
        return False

    def _path(self) -> str:
        path = self.path.split("?", 1)[0].split("#", 1)[0]
        return path.rstrip("/") or "/"

    def _sleep(self, seconds: float) -> bool:
        """Sleep; False if the server is stopping (the caller then drops the connection)."""
        if seconds <= 0:
            return True
        return not self.server.state.stopping.wait(seconds)

    def _guarded(self, route: Any) -> None:
        """Run a route; an unexpected exception becomes a 500 (never a silently dropped connection)."""
        self._responded = False
        try:
            route()
        except Exception as exc:  # RecursionError, MemoryError, a bug: answer, log, keep serving
            state = self.server.state
            state.bump("internal_errors")
            if state.verbose:
                import traceback

                sys.stderr.write(f"serve-sim: internal error on {self.command} {self.path}:\n"
                                 f"{traceback.format_exc()}")
            self.close_connection = True
            if not self._responded:  # else the reply is half written: closing is all that is left
                self._error(500, f"serve-sim internal error: {type(exc).__name__}")

    # ---- routes -------------------------------------------------------------------------
    def do_GET(self) -> None:  # noqa: N802
        self._guarded(self._get)

    def do_POST(self) -> None:  # noqa: N802
        self._guarded(self._post)

    def _get(self) -> None:
        self._read_body()
        path = self._path()
        state = self.server.state
        if path in ("/health", "/v1/health"):
            self._json(200, {"status": "ok"})
        elif path in ("/stats", "/v1/stats"):
            self._json(200, state.snapshot())
        elif path in ("/v1/models", "/models") or path.startswith(("/v1/models/", "/models/")):
            if not self._authorized():
                return
            with state.lock:
                names = sorted(state.models_seen)
            items = [{"id": n, "object": "model", "created": 0, "owned_by": SERVER_NAME} for n in names]
            if path in ("/v1/models", "/models"):
                self._json(200, {"object": "list", "data": items})
            else:
                mid = path.split("/models/", 1)[1]
                self._json(200, {"id": mid, "object": "model", "created": 0, "owned_by": SERVER_NAME})
        elif path in ("/v1/chat/completions", "/chat/completions"):
            self._error(405, "Use POST for /v1/chat/completions.")
        else:
            self._error(404, f"Unknown path {path!r}.")

    def _post(self) -> None:
        body = self._read_body()
        if body is None:
            return
        path = self._path()
        if path not in ("/v1/chat/completions", "/chat/completions"):
            self._error(404, f"Unknown path {path!r}; serve-sim serves POST /v1/chat/completions.")
            return
        self._chat(body)

    def _chat(self, body: bytes) -> None:
        state = self.server.state
        state.bump("requests")
        if not self._authorized():
            return
        try:
            req = _parse_chat_request(body)
        except _BadRequest as exc:
            state.bump("bad_request")
            self._error(400, str(exc), param=exc.param)
            return
        from sociolab.orchestrator.sim.envelope import HEADER, read_header  # lazy: keeps start-up and imports light
        from sociolab.orchestrator.sim.metadata import MetadataError

        raw = self.headers.get(HEADER)
        try:
            if raw is not None and json_too_deep(raw):
                raise MetadataError(f"{HEADER} is nested more than {MAX_JSON_DEPTH} levels deep")
            metadata, settings = read_header(raw)
        except RecursionError:
            state.bump("bad_request")
            self._error(400, f"{HEADER} is nested too deep or is not valid JSON", param=HEADER)
            return
        except MetadataError as exc:
            state.bump("bad_request")
            self._error(400, str(exc), param=HEADER)
            return
        requested = req["model"]
        state.count_model(requested)

        decision = state.decide()
        f = state.faults
        if decision.status != 200:
            if not self._sleep(decision.delay_s):
                self.close_connection = True
                return
            headers = {}
            if decision.status == 429:
                headers["Retry-After"] = _format_seconds(f.retry_after)
                headers["retry-after-ms"] = str(int(round(f.retry_after * 1000)))
            self._error(decision.status, _FAULT_MESSAGES[decision.status], headers=headers)
            return

        from sociolab.orchestrator.sim.agent import sim_reply

        try:
            reply = sim_reply(sim_model_name(requested), req["messages"], seed=req["seed"],
                              temperature=req["temperature"], max_tokens=req["max_tokens"], tools=req["tools"],
                              metadata=metadata, settings=settings)
        except Exception as exc:  # a ProviderError (status_code) or MetadataError (400) becomes that status
            state.bump("sim_errors")
            status = int(getattr(exc, "status_code", 500) or 500)
            status = status if 400 <= status < 600 else 500
            headers = {}
            retry_after = getattr(exc, "retry_after", None)
            if retry_after is not None:
                headers["Retry-After"] = _format_seconds(float(retry_after))
                headers["retry-after-ms"] = str(int(round(float(retry_after) * 1000)))
            if state.verbose:
                sys.stderr.write(f"serve-sim: sim_reply raised {type(exc).__name__}: {exc}\n")
            self._error(status, f"sim error: {exc}", headers=headers)
            return

        delay = decision.delay_s + f.sim_latency_scale * float(reply.latency_s or 0.0)
        if not self._sleep(delay):
            self.close_connection = True
            return
        finish = "length" if req["max_tokens"] is not None and reply.completion_tokens >= req["max_tokens"] \
            else "stop"
        message: dict[str, Any] = {"role": "assistant", "content": reply.text}
        if reply.tool_calls:
            finish = "tool_calls"
            message["content"] = reply.text or None
            message["tool_calls"] = [{"id": c["id"], "type": "function",
                                      "function": {"name": c["name"], "arguments": c["arguments"]}}
                                     for c in reply.tool_calls]
        completion = {
            "id": f"chatcmpl-sim-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": requested,
            "system_fingerprint": SERVER_NAME,
            "choices": [{
                "index": 0,
                "message": message,
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": {
                "prompt_tokens": int(reply.prompt_tokens),
                "completion_tokens": int(reply.completion_tokens),
                "total_tokens": int(reply.prompt_tokens) + int(reply.completion_tokens),
            },
        }
        payload = json.dumps(completion).encode("utf-8")
        if decision.malformed:
            self._send(200, payload[: max(1, len(payload) // 2)])  # cut mid-JSON: not parseable
            return
        state.bump("ok")  # counted before sending, so a client that has its reply sees it counted
        self._send(200, payload)


# --------------------------------------------------------------------------------------------
# public API

class SimServerHandle:
    """A running server: `.url` (".../v1"), `.port`, `.stats()`, `.stop()`; usable as a context manager."""

    def __init__(self, server: _Server, thread: threading.Thread | None):
        self._server = server
        self._thread = thread
        self._stopped = False
        host = server.server_address[0]
        # after bind, server_address is getsockname()'s (str, port, ...); the stubs also allow the
        # bytes host a constructor may be given
        self.host = host if isinstance(host, str) else bytes(host).decode("ascii")
        self.port = int(server.server_address[1])
        shown = f"[{self.host}]" if ":" in self.host else self.host
        self.base = f"http://{shown}:{self.port}"
        self.url = f"{self.base}/v1"

    @property
    def faults(self) -> FaultConfig:
        return self._server.state.faults

    def stats(self) -> dict[str, Any]:
        return self._server.state.snapshot()

    def stop(self) -> None:
        """Stop serving, wake sleeping handlers and drop open (keep-alive) connections. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        state = self._server.state
        state.stopping.set()
        self._server.shutdown()
        self._server.server_close()
        with state.lock:
            conns = list(state.connections)
        for conn in conns:
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "SimServerHandle":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def __repr__(self) -> str:
        return f"SimServerHandle(url={self.url!r})"


def _make_server(host: str, port: int, faults: FaultConfig | None, api_key: str | None,
                 verbose: bool) -> _Server:
    bind = check_loopback_host(host)
    if not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an integer in 0..65535, got {port!r}")
    state = _State(faults if faults is not None else FaultConfig(), api_key or None, verbose)
    return _Server((bind, port), state)


def start_in_thread(host: str = "127.0.0.1", port: int = 0, faults: FaultConfig | None = None,
                    api_key: str | None = None, verbose: bool = False) -> SimServerHandle:
    """Bind now (errors raise here) and serve from a daemon thread. Port 0 picks a free port."""
    server = _make_server(host, port, faults, api_key, verbose)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              name=f"serve-sim:{server.server_address[1]}", daemon=True)
    handle = SimServerHandle(server, thread)
    thread.start()
    return handle


def serve(host: str = "127.0.0.1", port: int = 0, faults: FaultConfig | None = None,
          api_key: str | None = None, verbose: bool = False) -> None:
    """Serve until interrupted. Prints `serve-sim listening on http://HOST:PORT/v1` first."""
    server = _make_server(host, port, faults, api_key, verbose)
    handle = SimServerHandle(server, None)
    print(f"serve-sim listening on {handle.url}", flush=True)
    if verbose:
        sys.stderr.write(f"serve-sim faults: {json.dumps(server.state.faults.to_dict())}\n")
    try:
        server.serve_forever(poll_interval=0.2)
    except KeyboardInterrupt:
        pass
    finally:
        server.state.stopping.set()
        server.server_close()


if __name__ == "__main__":  # python -m sociolab.orchestrator.sim.server [--port N] [--fail-rate R] ...
    import argparse

    p = argparse.ArgumentParser(prog="python -m sociolab.orchestrator.sim.server",
                                description="OpenAI-compatible sim server with fault injection")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--api-key", default=None)
    p.add_argument("--verbose", action="store_true")
    defaults = FaultConfig()
    for f in fields(FaultConfig):
        flag = "--" + f.name.replace("_", "-")
        if f.name == "fault_kinds":
            p.add_argument(flag, default=",".join(map(str, defaults.fault_kinds)),
                           help="comma-separated statuses, e.g. 429,503")
        else:
            p.add_argument(flag, type=type(getattr(defaults, f.name)), default=getattr(defaults, f.name))
    a = p.parse_args()
    kw = {f.name: getattr(a, f.name) for f in fields(FaultConfig)}
    kw["fault_kinds"] = [int(x) for x in str(a.fault_kinds).split(",") if x.strip()]
    try:
        cfg = FaultConfig(**kw)
        serve(a.host, a.port, cfg, a.api_key, a.verbose)
    except ValueError as exc:
        print(str(exc), file=sys.stderr)
        raise SystemExit(2)

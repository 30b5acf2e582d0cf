"""What every wire server shares: the HTTP loop, recording, scripted faults, the neutral view.

Why: litellm translates one OpenAI-style call into each provider's own protocol and translates
replies and errors back. A fake at the litellm level (mock_response, a custom provider) skips
exactly that code. These servers sit on the far side of real HTTP instead, each speaking one
provider family's wire protocol, so the translation, the header handling and the error mapping
that production depends on all run in tests, offline, on 127.0.0.1.

A family module (openai_chat, anthropic_messages, gemini, openai_compat) subclasses `WireServer`
and supplies four things: where requests go (`route`), how a request reads in family-neutral
terms (`view`), how a `Reply` is written back (`render`) and how errors look (`error_body`).
Everything else lives here:

* recording: every request (method, path, query, headers, parsed JSON body) in `srv.requests`,
  and any exception the server itself hit in `srv.errors` (it answers 500 rather than hang);
* the key check (`api_key=None` accepts any key) and the set of known models (`models=None`
  accepts any model);
* scripted faults: `srv.push(Fault(429, retry_after=1), Fault.malformed(), ...)` queues replies
  for the next requests to a model endpoint, one each, before any validation;
* the responder: a callable from `RequestView` to `Reply` (or str), `default_responder` if none.

Standard library only, loopback only.
"""

from __future__ import annotations

import copy
import json
import math
import socket
import struct
import sys
import threading
import uuid
from collections import deque
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterable
from urllib.parse import parse_qs, urlsplit

__all__ = ["Fault", "Recorded", "RequestView", "Reply", "ToolCall", "WireError", "WireServer",
           "default_responder", "instance_of", "count_tokens", "prompt_tokens", "new_id", "text_of"]


# --------------------------------------------------------------------------------------------
# data

@dataclass
class Recorded:
    """One request as the server saw it. Header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # parsed JSON, or None when the body was empty or not JSON
    raw: bytes


@dataclass
class ToolCall:
    """A tool call in neutral form; `arguments` is a parsed JSON object."""

    name: str
    arguments: dict[str, Any]
    id: str | None = None


@dataclass
class RequestView:
    """A request in family-neutral terms, for responders.

    `messages` are dicts with `role` ("user" | "assistant" | "tool"), `content` (text) and, when
    present, `tool_calls` (list of ToolCall), `tool_call_id` and `name` (for tool results).
    `tools` are `{"name", "description", "parameters"}` with `parameters` a JSON schema.
    `schema` is the JSON schema the client asked the answer to follow, if any; `forced_tool` the
    tool the client requires to be called, if any.
    """

    family: str
    model: str
    system: str
    messages: list[dict[str, Any]]
    tools: list[dict[str, Any]]
    schema: dict[str, Any] | None = None
    schema_name: str | None = None
    forced_tool: str | None = None
    body: Any = None

    @property
    def tool_results(self) -> list[dict[str, Any]]:
        return [m for m in self.messages if m["role"] == "tool"]

    @property
    def last_user_text(self) -> str:
        return next((m["content"] for m in reversed(self.messages) if m["role"] == "user" and m["content"]), "")


@dataclass
class Reply:
    """What a responder answers: text and/or tool calls, optionally reasoning text."""

    text: str | None = None
    tool_calls: list[ToolCall] = field(default_factory=list)
    reasoning: str | None = None


@dataclass
class Fault:
    """One scripted reply for the next request to a model endpoint.

    `status` is the HTTP status to send. For an error status, the body is the family's own error
    shape (with `message` / `error_type` / `code` / `param` overriding its defaults) unless `body`
    is given, which is sent verbatim. `status=200` without `body` means "answer normally", which is
    what `Fault.slow(s)` uses: the delay, then the real reply. `retry_after` adds a Retry-After header.
    `drop` sends no reply at all: "close" closes the connection cleanly (FIN, what a proxy that gives
    up produces), "reset" aborts it (RST, a crashed peer); see `Fault.closed()` and `Fault.reset()`.
    """

    status: int = 200
    message: str | None = None
    error_type: str | None = None
    code: str | None = None
    param: str | None = None
    retry_after: float | str | None = None
    delay_s: float = 0.0
    body: bytes | str | dict | None = None
    headers: dict[str, str] = field(default_factory=dict)
    content_type: str = "application/json"
    drop: str | None = None  # "close" | "reset": no reply, the connection is closed / reset

    @classmethod
    def closed(cls) -> "Fault":
        """The connection is closed without a reply (the client sees the server disconnect)."""
        return cls(drop="close")

    @classmethod
    def reset(cls) -> "Fault":
        """The connection is reset (RST) without a reply."""
        return cls(drop="reset")

    @classmethod
    def slow(cls, seconds: float) -> "Fault":
        return cls(status=200, delay_s=seconds)

    @classmethod
    def malformed(cls, status: int = 200) -> "Fault":
        """A truncated JSON body with a 200 (what a proxy cutting a reply short produces)."""
        return cls(status=status, body=b'{"id": "trunc", "choices": [{"index": 0, "mess')


class WireError(Exception):
    """Raised inside a family's request handling to answer with the family's error shape."""

    def __init__(self, status: int, message: str, error_type: str | None = None, *,
                 code: str | None = None, param: str | None = None, headers: dict[str, str] | None = None):
        super().__init__(message)
        self.status, self.message, self.error_type = status, message, error_type
        self.code, self.param, self.headers = code, param, headers or {}


# --------------------------------------------------------------------------------------------
# helpers

def count_tokens(*texts: Any) -> int:
    """Roughly what a tokenizer gives: about 4 characters a token, at least 1."""
    chars = sum(len(t if isinstance(t, str) else json.dumps(t)) for t in texts if t)
    return max(1, math.ceil(chars / 4))


def prompt_tokens(view: "RequestView") -> int:
    """Input tokens of a request: its text ~chars/4, plus the few tokens each message costs in
    chat templates (so "hi" is ~8 tokens, as real APIs report, not 1)."""
    texts = [view.system, *[m["content"] for m in view.messages], *view.tools, view.schema]
    texts += [c.arguments for m in view.messages for c in m.get("tool_calls", [])]
    return count_tokens(*texts) + 4 * (len(view.messages) + bool(view.system)) + 3


def new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _resolve(schema: dict, root: dict) -> dict:
    ref = schema.get("$ref")
    if not isinstance(ref, str) or not ref.startswith("#/"):
        return schema
    node: Any = root
    for part in ref[2:].split("/"):
        node = node.get(part, {}) if isinstance(node, dict) else {}
    rest = {k: v for k, v in schema.items() if k != "$ref"}
    return {**_resolve(node, root), **rest} if isinstance(node, dict) else rest


def instance_of(schema: Any, root: Any = None, _depth: int = 0) -> Any:
    """A small JSON value that satisfies `schema`: the default answer to a schema or a tool.

    booleans false, strings "x" (or the first enum value / const), numbers their minimum or 0,
    null where the schema allows it, every required property filled (all properties when none is
    named required), arrays with `minItems` items. Handles `$ref` / `$defs`, `anyOf` / `oneOf` /
    `allOf`, type lists, OpenAPI `nullable` and Google's upper-case type names.
    """
    if not isinstance(schema, dict) or _depth > 20:
        return None
    root = schema if root is None else root
    schema = _resolve(schema, root)
    if "const" in schema:
        return copy.deepcopy(schema["const"])
    if schema.get("enum"):
        return copy.deepcopy(schema["enum"][0])
    if schema.get("nullable") is True:
        return None
    for key in ("anyOf", "oneOf"):
        options = schema.get(key)
        if isinstance(options, list) and options:
            if any(isinstance(o, dict) and str(o.get("type", "")).lower() == "null" for o in options):
                return None
            return instance_of(options[0], root, _depth + 1)
    if isinstance(schema.get("allOf"), list):
        merged: dict[str, Any] = {k: v for k, v in schema.items() if k != "allOf"}
        for part in schema["allOf"]:
            part = _resolve(part, root) if isinstance(part, dict) else {}
            merged.setdefault("properties", {}).update(part.get("properties", {}))
            merged["required"] = [*merged.get("required", []), *part.get("required", [])]
            merged.setdefault("type", part.get("type"))
        return instance_of(merged, root, _depth + 1)
    kind = schema.get("type")
    if isinstance(kind, list):
        kinds = [str(k).lower() for k in kind]
        if "null" in kinds:
            return None
        kind = kinds[0] if kinds else None
    kind = str(kind).lower() if kind is not None else ("object" if "properties" in schema else None)
    if kind == "object":
        props = schema.get("properties") or {}
        names = schema.get("required")
        names = list(props) if names is None else names
        return {name: instance_of(props.get(name, {"type": "string"}), root, _depth + 1) for name in names}
    if kind == "array":
        count = int(schema.get("minItems") or 0)
        return [instance_of(schema.get("items") or {"type": "string"}, root, _depth + 1) for _ in range(count)]
    if kind in ("integer", "number"):
        low = schema.get("minimum", schema.get("exclusiveMinimum"))
        value = 0 if low is None else low + (1 if "minimum" not in schema else 0)
        return int(math.ceil(value)) if kind == "integer" else value
    if kind == "boolean":
        return False
    if kind == "null":
        return None
    if kind == "string":
        return "x" * max(1, int(schema.get("minLength") or 1))
    return "x"


def default_responder(view: RequestView) -> Reply:
    """The reply when a test does not script one.

    A forced tool is called; else, if tools are offered and the conversation holds no tool result
    yet, the first tool is called with arguments that satisfy its schema; else, if a JSON schema
    is requested, a JSON instance of it; else a short text naming the family.
    """
    tools = {t["name"]: t for t in view.tools}
    name = view.forced_tool if view.forced_tool in tools else None
    if name is None and tools and not view.tool_results:
        name = view.tools[0]["name"]
    if name is not None:
        args = instance_of(tools[name].get("parameters") or {"type": "object", "properties": {}})
        return Reply(tool_calls=[ToolCall(name=name, arguments=args if isinstance(args, dict) else {})])
    if view.schema is not None:
        return Reply(text=json.dumps(instance_of(view.schema)))
    if view.tool_results:
        return Reply(text=f"[{view.family}] got the tool result: {view.tool_results[-1]['content'][:80]}")
    return Reply(text=f"[{view.family}] wire test server here; you said: {view.last_user_text[:60]!r}.")


Responder = Callable[[RequestView], "Reply | str"]


# --------------------------------------------------------------------------------------------
# the server

class WireServer:
    """Base of the family servers: a ThreadingHTTPServer on 127.0.0.1, port 0, in a thread.

        with OpenAIChatServer(api_key="sk-test") as srv:
            litellm.completion(model="openai/gpt-4o", api_base=srv.url, api_key="sk-test", ...)
            srv.requests[-1].body["messages"]
    """

    family = "wire"
    #: the path under the server root that `url` ends in (what litellm is given as api_base)
    base_path = ""

    def __init__(self, *, api_key: str | None = None, models: Iterable[str] | None = None,
                 responder: Responder | None = None, faults: Iterable[Fault] = ()):
        self.api_key = api_key
        self.models = None if models is None else set(models)
        self.responder = responder or default_responder
        self.requests: list[Recorded] = []
        self.errors: list[str] = []  # exceptions raised while handling a request (should stay empty)
        self._faults: deque[Fault] = deque(faults)
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle

    def start(self) -> "WireServer":
        self._httpd = self._http_server()
        self._thread = threading.Thread(target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name=f"wire-{self.family}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes replies sleeping in a slow fault
        if self._httpd is not None:
            self._httpd.shutdown()
            self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def __enter__(self) -> "WireServer":
        return self.start() if self._httpd is None else self

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    @property
    def root(self) -> str:
        assert self._httpd is not None, "server not started"
        return f"http://127.0.0.1:{self._httpd.server_address[1]}"

    @property
    def url(self) -> str:
        """What to pass litellm as `api_base`."""
        return self.root + self.base_path

    # -- test-facing helpers

    def push(self, *faults: Fault) -> None:
        """Queue scripted replies for the next requests to a model endpoint, in order."""
        with self._lock:
            self._faults.extend(faults)

    def clear_faults(self) -> int:
        """Drop the scripted replies not served yet; returns how many there were."""
        with self._lock:
            dropped = len(self._faults)
            self._faults.clear()
        return dropped

    @property
    def pending_faults(self) -> int:
        return len(self._faults)

    @property
    def last(self) -> Recorded:
        return self.requests[-1]

    # -- hooks for families

    def route(self, method: str, path: str) -> tuple[str, dict[str, str]] | None:
        """Which endpoint `path` is: (endpoint name, path params), or None for an unknown path."""
        raise NotImplementedError

    def check_auth(self, rec: Recorded) -> None:
        """Raise WireError when the credentials in `rec` are missing or wrong."""
        raise NotImplementedError

    def handle(self, endpoint: str, params: dict[str, str], rec: Recorded) -> dict[str, Any]:
        """Validate, ask the responder, and return the success body."""
        raise NotImplementedError

    def error_body(self, status: int, message: str, error_type: str | None, code: str | None,
                   param: str | None) -> dict[str, Any]:
        raise NotImplementedError

    def default_error(self, status: int) -> tuple[str, str | None]:
        """(message, error_type) a scripted fault with only a status uses."""
        return f"Injected HTTP {status} by the {self.family} wire test server.", None

    # -- shared pieces for families

    def key_ok(self, given: str | None) -> bool:
        return given is not None and (self.api_key is None or given == self.api_key)

    def check_model(self, model: Any) -> None:
        if self.models is not None and model not in self.models:
            raise self.model_not_found(str(model))

    def model_not_found(self, model: str) -> WireError:
        return WireError(404, f"The model `{model}` does not exist.")

    def respond(self, view: RequestView) -> Reply:
        reply = self.responder(view)
        return Reply(text=reply) if isinstance(reply, str) else reply

    # -- HTTP plumbing

    def _http_server(self) -> ThreadingHTTPServer:
        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                # a client that gave up (its timeout) resets the connection: expected, not news
                if not isinstance(sys.exc_info()[1], (ConnectionError, TimeoutError)):
                    super().handle_error(request, client_address)

        return Server(("127.0.0.1", 0), self._handler_class())

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            server_version = f"wire-{server.family}"

            def log_message(self, *args: Any) -> None:  # keep pytest output clean
                pass

            def do_POST(self) -> None:
                server._serve(self)

            do_GET = do_PUT = do_DELETE = do_POST

        return Handler

    def _serve(self, h: BaseHTTPRequestHandler) -> None:
        split = urlsplit(h.path)
        raw = h.rfile.read(int(h.headers.get("content-length") or 0))
        try:
            body = json.loads(raw) if raw else None
        except ValueError:
            body = None
        rec = Recorded(method=h.command, path=split.path,
                       query={k: v[-1] for k, v in parse_qs(split.query).items()},
                       headers={k.lower(): v for k, v in h.headers.items()}, body=body, raw=raw)
        with self._lock:
            self.requests.append(rec)
        routed = self.route(h.command, split.path)
        try:
            if routed is None:
                raise WireError(404, f"Unknown path {h.command} {split.path}.", code="unknown_url")
            with self._lock:
                fault = self._faults.popleft() if self._faults else None
            if fault is not None and fault.delay_s:
                self._stopping.wait(fault.delay_s)
            if fault is not None and fault.drop is not None:
                return self._drop(h, fault.drop)
            if fault is not None and (fault.status != 200 or fault.body is not None):
                return self._send_fault(h, fault)
            self.check_auth(rec)
            if raw and body is None:
                raise WireError(400, "The request body is not valid JSON.")
            payload = self.handle(*routed, rec)
            extra = fault.headers if fault is not None else {}
            self._send(h, 200, json.dumps(payload).encode(), extra)
        except WireError as err:
            payload = self.error_body(err.status, err.message, err.error_type, err.code, err.param)
            self._send(h, err.status, json.dumps(payload).encode(), err.headers)
        except Exception as exc:  # a request shape the server did not expect, or a responder bug:
            self.errors.append(f"{type(exc).__name__}: {exc}")  # answer (no hung client), keep for asserts
            payload = self.error_body(500, f"wire test server error: {type(exc).__name__}: {exc}", None, None, None)
            self._send(h, 500, json.dumps(payload).encode(), {})

    def _send_fault(self, h: BaseHTTPRequestHandler, fault: Fault) -> None:
        headers = dict(fault.headers)
        if fault.retry_after is not None:
            headers["retry-after"] = str(fault.retry_after)
        if fault.body is not None:
            data = fault.body
            data = json.dumps(data).encode() if isinstance(data, dict) else data
            data = data.encode() if isinstance(data, str) else data
        else:
            message, error_type = self.default_error(fault.status)
            payload = self.error_body(fault.status, fault.message or message, fault.error_type or error_type,
                                      fault.code, fault.param)
            data = json.dumps(payload).encode()
        self._send(h, fault.status, data, headers, fault.content_type)

    @staticmethod
    def _drop(h: BaseHTTPRequestHandler, how: str) -> None:
        """No reply: close the connection (FIN) or, for "reset", abort it (SO_LINGER 0, so RST)."""
        if how not in ("close", "reset"):
            raise ValueError(f"Fault.drop must be 'close' or 'reset', got {how!r}")
        h.close_connection = True
        if how == "reset":
            try:
                h.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                h.connection.close()
            except OSError:
                pass

    def _send(self, h: BaseHTTPRequestHandler, status: int, data: bytes, headers: dict[str, str],
              content_type: str = "application/json") -> None:
        try:
            h.send_response(status)
            h.send_header("content-type", content_type)
            h.send_header("content-length", str(len(data)))
            for name, value in headers.items():
                h.send_header(name, value)
            h.end_headers()
            h.wfile.write(data)
        except OSError:  # the client gave up (timeout) or the server is stopping
            pass


def text_of(content: Any) -> str:
    """Text of an OpenAI / Anthropic content value: a string, or a list of parts with text."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(text_of(p.get("text") if isinstance(p, dict) else p) if not (
            isinstance(p, dict) and p.get("type") == "tool_result") else "" for p in content)
    return str(content)
